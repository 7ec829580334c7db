"""Clip backbones: torchvision's video models with their release's temporal and spatial
recipe, windows planned as torchvision's ``VideoClips`` plans them, window records in the
HDF5, clip plugins, and the refusals."""

from __future__ import annotations

from fractions import Fraction
from importlib.metadata import EntryPoint

import h5py
import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from backbones import Registry
from backbones.video_models import VIDEO_BUILTINS
from dali_pipes import WindowReader, plan_video, plan_windows, probe, resample
from vcp.cli import app
from vcp.stages.encoder import load_backbone
from vcp.stages.recipe import geometry_of
from vcp.stages.settings import ClipSettings, DecodeSettings, ExtractConfig
from vcp.stages.stream import extract_from_videos

QUIET = Console(quiet=True)
runner = CliRunner()
RATES = [25, Fraction(30000, 1001), 30, 60]


def _unfold(seq: np.ndarray, size: int, step: int) -> np.ndarray:
    """torchvision's ``datasets.video_utils.unfold`` on an index sequence."""
    from torchvision.datasets.video_utils import unfold

    return unfold(torch.as_tensor(seq), size, step).numpy()


def _videoclips_indices(n: int, fps: float, rate: float | None) -> np.ndarray:
    """The frames torchvision's ``VideoClips`` keeps of ``n`` frames at ``fps`` for ``rate``."""
    from torchvision.datasets.video_utils import VideoClips

    if rate is None:
        return np.arange(n)
    idx = VideoClips._resample_video_idx(int(np.floor(n * rate / fps)), fps, rate)
    return np.arange(n)[idx] if isinstance(idx, slice) else idx.numpy()


@pytest.mark.parametrize("fps", [*RATES, 24, 7.5, 12.5, Fraction(60000, 1001)])
@pytest.mark.parametrize("rate", [15.0, 7.5, 30.0, None])
def test_windows_are_torchvisions_videoclips(fps, rate):
    for n in (1, 5, 16, 17, 31, 64, 100, 601, 1799):
        seq = _videoclips_indices(n, float(fps), rate)
        np.testing.assert_array_equal(resample(n, float(fps), rate), seq)
        for window, stride in ((16, 16), (4, 2), (8, 3)):
            frames, short = plan_windows(n, float(fps), window=window, stride=stride, frame_rate=rate)
            if len(seq) >= window:  # every full window, a partial last one dropped
                assert not short
                np.testing.assert_array_equal(frames, _unfold(seq, window, stride))
            else:  # one window, its last frame repeated
                assert short and frames.shape == (1, window)
                want = np.concatenate([seq, np.full(window - len(seq), seq[-1])]) if len(seq) else np.zeros(window)
                np.testing.assert_array_equal(frames[0], want)


def test_worked_example_and_a_short_video():
    np.testing.assert_array_equal(resample(10, 25, 15), [0, 1, 3, 5, 6, 8])
    frames, short = plan_windows(10, 25, window=4, stride=2, frame_rate=15)
    assert frames.tolist() == [[0, 1, 3, 5], [3, 5, 6, 8]] and not short
    frames, short = plan_windows(3, 30, window=4, stride=4, frame_rate=15)
    assert frames.tolist() == [[0, 2, 2, 2]] and short


def test_each_release_states_its_recipe():
    from backbones import default_registry

    specs = default_registry().specs()
    want = {"r2plus1d_18": (16, 15.0, (112, 112), (128, 171), "squash"), "mvit_v2_s": (16, 7.5, (224, 224), (256, 256), "center"),
            "swin3d_t": (32, 15.0, (224, 224), (256, 256), "center"), "s3d": (128, 15.0, (224, 224), (256, 256), "squash")}
    for name, (window, rate, size, scale, mode) in want.items():
        spec = specs[name]
        assert (spec.kind, spec.window, spec.frame_rate) == ("clip", window, rate)
        assert (spec.input.size, spec.input.scale, spec.input.resize_mode, spec.input.antialias) == (size, scale, mode, False)
    assert specs["mvit_v1_b"].fixed_window and not specs["swin3d_t"].fixed_window
    assert specs["mvit_v2_s"].input.mean == (0.45, 0.45, 0.45) and specs["resnet50"].kind == "frame"


# -- the spatial recipe: vcp's network inputs against torchvision's own preset -----------------
SMALL_WINDOW = {"s3d": 16, "mvit_v1_b": 16, "mvit_v2_s": 16}  # the smallest each allows (others: 4)


def _preset_windows(name: str, path, frames: np.ndarray) -> torch.Tensor:
    """torchvision's ``weights.transforms()`` on the frames at ``frames`` [W, window],
    decoded independently with PyAV."""
    import av
    import torchvision

    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    clip = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2)  # [n, 3, H, W] uint8
    preset = torchvision.models.get_model_weights(name).DEFAULT.transforms()
    return torch.stack([preset(clip[torch.as_tensor(w)]) for w in frames])  # [W, 3, T, h, w]


@pytest.mark.parametrize("name", list(VIDEO_BUILTINS))
def test_inputs_equal_torchvisions_preset_and_features_agree(name, videos):
    path = videos("h264", 40, width=160, height=90, fps=30)  # not square: the resize and crop matter
    config = ExtractConfig(backbone=name, weights=None, device="cpu", multi_scale=False, window=SMALL_WINDOW.get(name, 4))
    model = load_backbone(config)
    t = config.temporal
    plan = plan_video(probe(path), geometry_of(model.input_spec), window=t.window, stride=t.stride, frame_rate=t.frame_rate)
    reader = WindowReader(geometry=geometry_of(model.input_spec), mean=model.input_spec.mean, std=model.input_spec.std)
    got = torch.cat(list(reader.windows(plan, per_chunk=2)))
    want = _preset_windows(name, path, plan.frames)
    assert got.shape == want.shape
    # DALI's float resample against the preset's uint8 one (rounded): measured 0.001-0.004
    assert (got - want).abs().mean() < 0.006, (got - want).abs().mean()
    with torch.no_grad():  # every window's features
        a, b = model(got), model(want)
    assert torch.nn.functional.cosine_similarity(a, b).min() >= 0.999


# -- window records in the HDF5 ---------------------------------------------------------------
@pytest.fixture
def tiny3d(monkeypatch):
    """A registry of the clip plugin ``tiny3d`` and three built-ins, as the default one."""
    import backbones._registry as registry_module
    from vcp.stages import settings

    registry = Registry([EntryPoint(name="tiny3d", value="tests.plugins:tiny3d", group="vcp.backbones"),
                         EntryPoint(name="r2plus1d_18", value="backbones.video_models:r2plus1d_18", group="vcp.backbones"),
                         EntryPoint(name="mvit_v1_b", value="backbones.video_models:mvit_v1_b", group="vcp.backbones"),
                         EntryPoint(name="resnet50", value="backbones.torchvision_models:resnet50", group="vcp.backbones")])
    monkeypatch.setattr(registry_module, "_default", registry)
    settings._spec_of.cache_clear()
    yield registry
    settings._spec_of.cache_clear()


def _extract(raw, out, **options) -> h5py.File:
    config = ExtractConfig(backbone="tiny3d", weights=None, device="cpu", **{"multi_scale": False, **options})
    extract_from_videos(raw, out, config, ClipSettings(), DecodeSettings(), console=QUIET)
    return h5py.File(out / ("train_features.h5" if not config.multi_scale else "train_features_multiscale.h5"))


def test_a_clip_plugin_runs_and_window_records_follow_the_rule(tiny3d, tmp_path, videos):
    """25, 29.97, 30 and 60 fps and a variable-rate phone video: each window's frames are
    the resampling rule's, its times the decoded frames' own."""
    from tests.test_outputs import VFR_MS, write_vfr

    raw = tmp_path / "raw"
    for fps in RATES:
        videos.copy_to(raw / f"train/walk/v{float(fps):05.2f}.mp4", codec="h264", num_frames=45, fps=fps)
    write_vfr(raw / "train/walk/phone.mp4")
    with _extract(raw, tmp_path / "f") as h5:
        assert (h5.attrs["kind"], h5.attrs["window"], h5.attrs["stride"], h5.attrs["frame_rate"]) == ("clip", 4, 4, 10.0)
        assert h5.attrs["input_size"] == "[32, 32]" and h5.attrs["recipe"] == "model"
        names = [n.decode() for n in h5["filenames"][:]]
        for row, name in enumerate(names):
            path = raw / "train/walk" / name.rsplit("/", 1)[1]
            info = probe(path)
            want, short = plan_windows(info.num_frames, info.fps, window=4, stride=4, frame_rate=10.0)
            count = int(h5["num_windows"][row])
            assert count == len(want) == int(h5["num_frames"][row]) and bool(h5["window_padded"][row]) == short
            np.testing.assert_array_equal(h5["window_frames"][row, :count], want)
            assert (h5["window_frames"][row, count:] == -1).all()
            times = h5["window_times"][row, :count]
            np.testing.assert_allclose(times[:, 0], info.times_of(want[:, 0]), atol=1e-6)
            np.testing.assert_allclose(times[:, 1], np.asarray(info.times_of(want[:, -1])) + 0.1, atol=1e-6)
            assert np.abs(h5["features"][row, :count]).sum() > 0 and not h5["features"][row, count:].any()
        (phone,) = [i for i, n in enumerate(names) if n.endswith("/phone.mp4")]
        first = h5["window_times"][phone, 0]
        assert first[0] == 0.0 and first[1] == pytest.approx(VFR_MS[h5["window_frames"][phone, 0, -1]] / 1000 + 0.1)


def test_window_chunks_give_the_rows_of_one_pass(tiny3d, tmp_path, videos):
    """A long video's windows come a chunk at a time (memory holds one chunk): the rows equal
    those of a pass with every window in one forward."""
    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/walk/long.mp4", codec="h264", num_frames=90, fps=30)
    videos.copy_to(raw / "train/walk/short.mp4", codec="h264", num_frames=7, fps=30)
    with _extract(raw, tmp_path / "a", batch_size=2, stride=2) as a, _extract(raw, tmp_path / "b", batch_size=64, stride=2) as b:
        assert a["features"].shape == b["features"].shape == (2, 14, 16)
        np.testing.assert_allclose(a["features"][:], b["features"][:], rtol=1e-5, atol=1e-6)
        assert a["num_windows"][:].tolist() == [14, 1] and a["window_padded"][:].tolist() == [False, True]


def test_three_scales_apply_to_the_windows_and_a_segment_is_resampled(tiny3d, tmp_path, videos):
    from vcp.stages.multiscale import combine_scales

    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/walk/v.mp4", codec="h264", num_frames=90, fps=30)
    with _extract(raw, tmp_path / "one") as one, _extract(raw, tmp_path / "ms", multi_scale=True) as ms:
        rows = torch.from_numpy(one["features"][0])
        np.testing.assert_allclose(ms["features"][0], combine_scales(rows, (1.0, 0.85, 1.15)).numpy(), rtol=1e-5, atol=1e-6)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"split,path,label,start,end\ntrain,{raw}/train/walk/v.mp4,walk,1.0,2.0\n")
    out = tmp_path / "seg"
    r = runner.invoke(app, ["extract", "--from-videos", "--manifest", str(manifest), str(out), "--backbone", "tiny3d",
                            "--weights", "none", "--device", "cpu", "--no-multi-scale"])
    assert r.exit_code == 0, r.output
    with h5py.File(out / "train_features.h5") as h5:
        # frames 30..59 are shown in [1, 2): 30 frames at 30 fps -> 10 at 10 fps -> two windows of 4
        assert h5["window_frames"][0].tolist() == [[30, 33, 36, 39], [42, 45, 48, 51]]
        np.testing.assert_allclose(h5["segments"][0], [1.0, 2.0])


@pytest.mark.parametrize("args, message", [
    (["--window", "0"], "--window"),
    (["--stride", "0"], "--stride"),
    (["--backbone", "mvit_v1_b", "--window", "8"], "takes windows of 16 frames only"),
    (["--backbone", "resnet50", "--window", "8"], "resnet50 is a frame backbone"),
])
def test_bad_window_options_are_refused_before_any_work(tiny3d, tmp_path, videos, args, message):
    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/walk/v.mp4", codec="h264", num_frames=8)
    r = runner.invoke(app, ["extract", "--from-videos", str(raw), str(tmp_path / "f"), "--backbone", "tiny3d",
                            "--weights", "none", "--device", "cpu", *args])
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (tmp_path / "f").exists()


def test_a_clip_backbone_on_pt_files_names_from_videos(tiny3d, tmp_path, videos):
    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/walk/v.mp4", codec="h264", num_frames=8)
    assert runner.invoke(app, ["tensorize", str(raw), str(tmp_path / "p"), "-T", "4", "--size", "32"]).exit_code == 0
    r = runner.invoke(app, ["extract", str(tmp_path / "p"), str(tmp_path / "f"), "--backbone", "tiny3d", "--weights", "none",
                            "--device", "cpu"])
    assert r.exit_code == 2 and "tiny3d is a clip backbone" in r.output and "--from-videos" in r.output, r.output
    assert not (tmp_path / "f").exists()
    from vcp.common.errors import UsageError
    from vcp.stages.extract import extract

    with pytest.raises(UsageError, match="clip backbone"):  # the Python API too
        extract(tmp_path / "p", tmp_path / "g", ExtractConfig(backbone="tiny3d", weights=None, device="cpu"), console=QUIET)


def test_a_video_that_fails_part_way_gives_no_row_and_the_rest_go_on(tiny3d, tmp_path, videos, monkeypatch):
    from dali_pipes import VideoError, WindowReader

    raw = tmp_path / "raw"
    for name in ("a", "b", "c"):
        videos.copy_to(raw / f"train/walk/{name}.mp4", codec="h264", num_frames=60, fps=30)
    real = WindowReader.windows

    def failing(self, plan, per_chunk):
        for k, chunk in enumerate(real(self, plan, per_chunk)):
            if plan.info.path.endswith("b.mp4") and k == 1:
                raise VideoError(plan.info.path, "corrupt stream: decoding failed at frame 20")
            yield chunk

    monkeypatch.setattr(WindowReader, "windows", failing)
    with _extract(raw, tmp_path / "f", batch_size=2) as h5:
        assert [n.decode().rsplit("/", 1)[1] for n in h5["filenames"][:]] == ["a.mp4", "c.mp4"]
        assert "corrupt stream" in h5.attrs["failed_files"]


# -- clip features through the rest of vcp: shards, resume, loaders, export, the dry run ----------
CLIP_BB = ["--backbone", "tiny3d", "--weights", "none", "--device", "cpu", "--batch-size", "2"]
WINDOW_DATASETS = ("features", "labels", "num_frames", "filenames", "paths", "segments", "num_windows", "window_frames",
                   "window_times", "window_padded")


@pytest.fixture
def clip_raw(tmp_path, videos):
    raw = tmp_path / "raw"
    for k, n in enumerate((90, 12, 45, 3, 60)):  # lengths differ: so do the rows of each rank's longest video
        videos.copy_to(raw / f"train/walk/w{k}.mp4", codec="h264", num_frames=n, fps=30)
        videos.copy_to(raw / f"train/run [fast]/r{k}.mp4", codec="h264", num_frames=n + 9, fps=25)
    (raw / "train/walk/broken.mp4").write_bytes(b"not a video" * 50)
    return raw


def _same(a, b, datasets=WINDOW_DATASETS) -> None:
    with h5py.File(a) as x, h5py.File(b) as y:
        for name in datasets:
            if name == "features":  # batched with other videos: float rounding
                np.testing.assert_allclose(x[name][:], y[name][:], rtol=1e-5, atol=1e-6)
            else:
                assert np.array_equal(x[name][:], y[name][:], equal_nan=x[name].dtype.kind == "f"), name
        assert x.attrs["failed_files"] == y.attrs["failed_files"] and x.attrs["max_frames"] == y.attrs["max_frames"]


def test_shards_merge_into_the_single_process_file(tiny3d, clip_raw, tmp_path):
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    assert runner.invoke(app, ["extract", "--from-videos", str(clip_raw), str(single), *CLIP_BB]).exit_code == 3
    for i in range(2):
        r = runner.invoke(app, ["extract", "--from-videos", str(clip_raw), str(sharded), *CLIP_BB, "--shard", f"{i}/2"])
        assert r.exit_code in (0, 3), r.output
    assert runner.invoke(app, ["merge", str(sharded)]).exit_code == 0
    _same(single / "train_features_multiscale.h5", sharded / "train_features_multiscale.h5")


def test_a_stopped_clip_run_resumes_and_equals_an_uninterrupted_one(tiny3d, clip_raw, tmp_path, monkeypatch):
    from tests.test_resume import stop_at

    reference, resumed = tmp_path / "ref", tmp_path / "res"
    args = ["extract", "--from-videos", str(clip_raw), *CLIP_BB, "--no-multi-scale"]
    assert runner.invoke(app, [*args[:2], str(clip_raw), str(reference), *args[3:]]).exit_code == 3
    with pytest.MonkeyPatch.context() as stopping:
        stop_at(stopping, 4)
        assert runner.invoke(app, [*args[:3], str(resumed), *args[3:]]).exit_code == 143
    assert list((resumed / ".resume").glob("*.seg-*.h5"))
    r = runner.invoke(app, [*args[:3], str(resumed), *args[3:]])
    assert r.exit_code == 3 and "resuming train: 4 of 11 videos already written" in r.stderr, r.stderr
    _same(reference / "train_features.h5", resumed / "train_features.h5")


def test_loaders_export_and_the_dry_run_read_clip_features(tiny3d, clip_raw, tmp_path):
    from vcp import FeatureDataset
    from vcp.common.progress import human_bytes

    feats = tmp_path / "f"
    plan = runner.invoke(app, ["extract", "--from-videos", str(clip_raw), str(feats), *CLIP_BB, "--no-multi-scale", "--dry-run"])
    assert plan.exit_code == 0, plan.output
    assert runner.invoke(app, ["extract", "--from-videos", str(clip_raw), str(feats), *CLIP_BB, "--no-multi-scale"]).exit_code == 3
    data = FeatureDataset(feats / "train_features.h5")
    with h5py.File(feats / "train_features.h5") as h5:
        size = (feats / "train_features.h5").stat().st_size
        windows = h5["num_windows"][:]
        assert data.kind == "clip" and data.window_times.shape == (10, max(windows), 2) == h5["window_times"].shape
    # the dry run's estimate: [videos found, max windows, D] float32 before compression (the broken one counted)
    estimate = human_bytes(11 * max(windows) * 16 * 4)
    assert f"(train {estimate})" in " ".join(plan.output.split()) and size < 11 * max(windows) * 16 * 4 + 65536
    features, mask, label, name = data[0]
    assert features.shape == (max(windows), 16) and int(mask.sum()) == windows[0]
    np.testing.assert_allclose(data.window_times[0, : windows[0], 0], np.arange(windows[0]) * 4 / 10, atol=1e-6)  # 10 fps, 4 a window
    r = runner.invoke(app, ["export", str(feats), str(tmp_path / "npy")])
    assert r.exit_code == 0, r.output
    exported = np.load(tmp_path / "npy/train" / f"{data.filenames[0]}.npy")
    assert exported.shape == (windows[0], 16) and np.array_equal(exported, features[: windows[0]].numpy())


@pytest.mark.needs_cuda
@pytest.mark.parametrize("views", [1, 10])
def test_windows_on_the_card_equal_the_cpus(videos, views):
    """The GPU graph (the frames decoded by PyAV, resized, cropped into views and normalized
    on the card) against the CPU graph, window for window."""
    path = videos("h264", 40, width=160, height=90, fps=30)
    config = ExtractConfig(backbone="r2plus1d_18", weights=None, window=4, views=views)
    spec = load_backbone(config).input_spec
    geometry = geometry_of(spec, views)
    plan = plan_video(probe(path), geometry, window=4, stride=4, frame_rate=15.0)
    cpu = torch.cat(list(WindowReader(geometry=geometry, mean=spec.mean, std=spec.std).windows(plan, per_chunk=2)))
    gpu = torch.cat(list(WindowReader(geometry=geometry, mean=spec.mean, std=spec.std, device="gpu").windows(plan, per_chunk=2)))
    assert gpu.is_cuda and gpu.shape == cpu.shape
    assert (gpu.cpu() - cpu).abs().mean() < 0.002


# -- weights, as for the other built-ins -----------------------------------------------------
def test_clip_weights_a_local_file_a_release_from_the_cache_and_offline_defaults(tmp_path, monkeypatch):
    import urllib.error

    import torchvision

    from backbones import WeightsError, get_backbone

    full = torchvision.models.get_model("r2plus1d_18", weights=None)
    path = tmp_path / "r2plus1d.pth"
    torch.save(full.state_dict(), path)  # as published: fc.* keys included
    model = get_backbone("r2plus1d_18", str(path))
    x = torch.randn(1, 3, 4, 32, 32)
    full.fc = torch.nn.Identity()
    torch.testing.assert_close(model(x), full.eval()(x))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as info:
        get_backbone("r2plus1d_18", "DEFAULT")
    cached = tmp_path / "hub" / "checkpoints" / "r2plus1d_18-91a641e6.pth"
    assert str(cached) in str(info.value) and "--weights PATH" in str(info.value)
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.get_model("r2plus1d_18", weights=None).state_dict(), cached)
    assert "KINETICS400_V1" in get_backbone("r2plus1d_18", "KINETICS400_V1").weights_source
    with pytest.raises(WeightsError, match="KINETICS400_IMAGENET22K_V1"):  # a release swin3d_b has, listed
        get_backbone("swin3d_b", "KINETICS999")


@pytest.fixture
def installed_clip_plugin(tmp_path, monkeypatch):
    """A real distribution (dist-info + entry_points.txt) on sys.path registering a clip backbone."""
    import sys
    import textwrap

    import backbones._registry as reg
    from vcp.stages import settings

    site = tmp_path / "site"
    (site / "clipvcpplugin").mkdir(parents=True)
    (site / "clipvcpplugin" / "__init__.py").write_text("from tests.plugins import tiny3d\n")
    info = site / "clipvcpplugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: clipvcpplugin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("[vcp.backbones]\nsmall3d = clipvcpplugin:tiny3d\n"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(reg, "_default", None)
    settings._spec_of.cache_clear()
    yield
    settings._spec_of.cache_clear()
    sys.modules.pop("clipvcpplugin", None)


def test_an_installed_clip_plugin_is_listed_and_extracts(installed_clip_plugin, tmp_path, videos):
    r = runner.invoke(app, ["backbones"])
    line = next(line for line in r.output.splitlines() if "small3d" in line)
    assert "clip 4@10fps" in line and "clipvcpplugin 0.1.0" in line and "ok" in line
    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/walk/v.mp4", codec="h264", num_frames=30, fps=30)
    r = runner.invoke(app, ["extract", "--from-videos", str(raw), str(tmp_path / "f"), "--backbone", "small3d", "--weights",
                            "none", "--device", "cpu", "--no-multi-scale"])
    assert r.exit_code == 0, r.output
    with h5py.File(tmp_path / "f/train_features.h5") as h5:
        assert h5["features"].shape == (1, 2, 16) and h5.attrs["kind"] == "clip"  # 30 frames at 30 fps: 10 at 10 fps


def test_the_written_down_presets_are_the_releases_own():
    """Listing the built-ins reads their presets from the code (no torchvision import): they
    must be what each release's weights.transforms() and metadata say."""
    from backbones import torchvision_models, video_models

    for arch in video_models.VIDEO_BUILTINS:
        assert video_models.preset(arch) == video_models.recipe(arch), arch
        assert video_models.PRESETS[arch][4:] == video_models.temporal_recipe(arch), arch
    for arch in torchvision_models.BUILTINS:
        assert torchvision_models.preset(arch) == torchvision_models.recipe(arch), arch


def test_a_clip_backbone_takes_only_its_own_input(tiny3d):
    from vcp.common.errors import UsageError

    with pytest.raises(UsageError, match="--recipe stored: tiny3d is a clip backbone"):
        ExtractConfig(backbone="tiny3d", weights=None, recipe="stored")
