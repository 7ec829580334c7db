import numpy as np
import pytest

from dali_pipes import SamplingSpec
from dali_pipes import _samplers as samplers


def test_uniform_worked_examples():
    assert samplers.uniform(10, 4).tolist() == [0, 3, 6, 9]
    assert samplers.uniform(3, 5).tolist() == [0, 0, 1, 1, 2]
    assert samplers.uniform(1, 3).tolist() == [0, 0, 0]
    np.testing.assert_array_equal(samplers.uniform(300, 64), np.linspace(0, 299, 64).astype(int))


def test_center_worked_examples():
    # n=300 at 25 fps, 4 s window: w=100, start=100
    assert samplers.center(300, 25, 3, 4).tolist() == [100, 149, 199]
    # window longer than the video: w = n, start = 0 -> same as uniform
    assert samplers.center(40, 25, 8, 10).tolist() == samplers.uniform(40, 8).tolist()
    # 29.97 fps: w = round(10 * 29.97) = 300 of 1000 frames, start = 350
    idx = samplers.center(1000, 30000 / 1001, 64, 10)
    assert idx[0] == 350 and idx[-1] == 649
    np.testing.assert_array_equal(idx, 350 + np.linspace(0, 299, 64).astype(int))


def test_random_window_is_inside_and_seeded():
    rng = np.random.default_rng(7)
    expected_start = int(np.random.default_rng(7).integers(0, 1000 - 250 + 1))
    idx = samplers.random_window(1000, 25, 16, 10, rng)
    np.testing.assert_array_equal(idx, expected_start + np.linspace(0, 249, 16).astype(int))
    assert idx.min() >= 0 and idx.max() < 1000


def test_segment_middles_and_jitter():
    assert samplers.segment(10, 4).tolist() == [1, 3, 6, 8]
    assert samplers.segment(3, 6).tolist() == [0, 0, 1, 1, 2, 2]  # short video repeats
    rng = np.random.default_rng(0)
    jit = samplers.segment(100, 10, rng)
    assert [i // 10 for i in jit.tolist()] == list(range(10))  # one frame per segment
    assert not np.array_equal(jit, samplers.segment(100, 10))


@pytest.mark.parametrize("strategy", samplers.STRATEGIES)
@pytest.mark.parametrize("n", [1, 5, 63, 64, 65, 1000])
def test_every_strategy_returns_T_valid_sorted_indices(strategy, n):
    spec = SamplingSpec(strategy=strategy, frames=64, clip_duration=2.0, augment=True)
    idx, _ = spec.plan(n, 25.0, "a/b/c.mp4")
    assert idx.shape == (64,) and idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < n
    assert np.all(np.diff(idx) >= 0)


def test_plan_is_reproducible_and_depends_on_path_and_seed():
    spec = SamplingSpec(strategy="random", frames=8, clip_duration=1.0, seed=3, augment=True)
    a = spec.plan(500, 25, "train/x/a.mp4")
    assert np.array_equal(a[0], spec.plan(500, 25, "train/x/a.mp4")[0])
    starts = {int(spec.plan(500, 25, f"train/x/{i}.mp4")[0][0]) for i in range(20)}
    assert len(starts) > 5
    other_seed = SamplingSpec(strategy="random", frames=8, clip_duration=1.0, seed=4, augment=True)
    assert any(
        other_seed.plan(500, 25, f"v{i}")[0][0] != spec.plan(500, 25, f"v{i}")[0][0] for i in range(10)
    )


def test_flip_only_with_augment_and_about_half():
    plain = SamplingSpec(strategy="uniform", frames=4)
    assert not any(plain.plan(50, 25, f"v{i}.mp4")[1] for i in range(50))
    aug = SamplingSpec(strategy="uniform", frames=4, augment=True)
    flips = [aug.plan(50, 25, f"v{i}.mp4")[1] for i in range(200)]
    assert 60 < sum(flips) < 140


def test_invalid_strategy_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Supported values are: uniform, center, random, segment"):
        SamplingSpec(strategy="nope")
