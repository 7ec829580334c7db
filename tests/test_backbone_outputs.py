"""What a backbone returns is checked before it is written: a wrong shape is refused in one
line naming the backbone and the contract, and a video whose features are not finite is
that video's error (the others are written)."""

from __future__ import annotations

import h5py
import pytest
import torch
from rich.console import Console
from torch import nn

from backbones import BackboneError
from vcp.stages.extract import extract
from vcp.stages.settings import ExtractConfig, TensorizeConfig
from vcp.stages.tensorize import tensorize


@pytest.fixture(scope="module")
def processed(tmp_path_factory, videos):
    root = tmp_path_factory.mktemp("outputs")
    for name in ("a", "b", "c"):
        videos.copy_to(root / f"raw/train/cat/{name}.mp4", codec="mjpeg", num_frames=8)
    tensorize(root / "raw", root / "p", TensorizeConfig.from_options(frames=4, size=16, mode="cpu"), console=Console(quiet=True))
    return root / "p"


class Net(nn.Module):
    feature_dim = 5

    def __init__(self, shape=None, nan_call=None):
        super().__init__()
        self.proj, self.shape, self.nan_call, self.calls = nn.Linear(3, 5), shape, nan_call, 0

    def forward(self, x):
        out = self.proj(x.mean(dim=(2, 3)))
        self.calls += 1
        if self.nan_call == self.calls:
            out = out * float("inf") * 0  # NaN: an fp16 overflow, a broken plugin
        if self.shape == "one row":
            return out[:1]
        if self.shape == "wider":
            return torch.cat([out, out[:, :1]], 1)
        if self.shape == "rank 3":
            return out[..., None]
        return out


def _config(**kw):
    return ExtractConfig(device="cpu", batch_size=4, multi_scale=False, fuse_conv_bn=False, **kw)


@pytest.mark.parametrize("shape, said", [("one row", "(1, 5)"), ("wider", "(4, 6)"), ("rank 3", "(4, 5, 1)")])
def test_a_wrong_output_shape_is_refused_before_anything_is_written(processed, tmp_path, shape, said):
    with pytest.raises(BackboneError) as err:
        extract(processed, tmp_path / "f", _config(), model=Net(shape), console=Console(quiet=True))
    message = str(err.value)
    assert f"returned {said} for a batch of 4 frames" in message and "[B, feature_dim] = [4, 5]" in message
    assert "docs/plugins.md" in message and "\n" not in message
    assert not list((tmp_path / "f").glob("*.h5"))


def test_features_that_are_not_finite_are_that_videos_error(processed, tmp_path):
    result = extract(processed, tmp_path / "f", _config(), model=Net(nan_call=2), console=Console(quiet=True))
    (split,) = result
    assert split.videos == 2 and len(split.failures) == 1  # 4 frames a forward: call 2 is video b
    where, why = split.failures[0]
    assert where == "train/cat/b.mp4"
    assert why == "its features from backbone efficientnet_v2_s at fp32 hold NaN or Inf values; not written"
    with h5py.File(tmp_path / "f/train_features.h5") as h5:
        assert [p.decode() for p in h5["paths"][:]] == ["train/cat/a.mp4", "train/cat/c.mp4"]
        assert torch.isfinite(torch.from_numpy(h5["features"][:])).all()


def test_a_std_that_cannot_normalise_is_refused():
    from backbones import InputSpec

    assert "std must be >= 1e-06" in InputSpec(mean=(0.5,) * 3, std=(1e-300, 1.0, 1.0)).problem()
    assert InputSpec(mean=(0.5,) * 3, std=(1e-3, 1.0, 1.0)).problem() is None


def test_input_size_is_never_silently_ignored():
    from vcp.common.errors import UsageError

    with pytest.raises(UsageError, match="resnet50 takes the frames as stored by default .*add --recipe model"):
        ExtractConfig(backbone="resnet50", input_size=224)
    with pytest.raises(UsageError, match="goes with --recipe model, not stored"):
        ExtractConfig(backbone="timm/resnet18", recipe="stored", input_size=224)
    assert ExtractConfig(backbone="resnet50", recipe="model", input_size=224).uses_model_recipe
    assert ExtractConfig(backbone="timm/resnet18", input_size=160).uses_model_recipe  # auto: the model's own
