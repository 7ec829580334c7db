"""Views: three-crop (mmaction2's ThreeCrop) and ten-crop (torchvision's TenCrop) of the
recipe's resized frames, for an image backbone and a clip backbone, in order; their mean;
the refusals."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F
from rich.console import Console
from typer.testing import CliRunner

from dali_pipes import VIEW_NAMES, Geometry, WindowReader, plan_video, probe
from vcp.cli import app
from vcp.stages.encoder import load_backbone
from vcp.stages.recipe import geometry_of
from vcp.stages.settings import ClipSettings, DecodeSettings, ExtractConfig
from vcp.stages.stream import extract_from_videos

QUIET = Console(quiet=True)
runner = CliRunner()


def _frames(path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _three_crop(img: torch.Tensor, size: int) -> list[torch.Tensor]:
    """mmaction2's ThreeCrop offsets along the longer side (left, right, middle), centred across."""
    h, w = img.shape[-2:]
    if w >= h:
        step, top = (w - size) // 2, int(round((h - size) / 2.0))
        return [img[..., top:top + size, x:x + size] for x in (0, 2 * step, step)]
    step, left = (h - size) // 2, int(round((w - size) / 2.0))
    return [img[..., y:y + size, left:left + size] for y in (0, 2 * step, step)]


def _crops(img: torch.Tensor, size: int, views: int) -> list[torch.Tensor]:
    return list(F.ten_crop(img, [size, size])) if views == 10 else _three_crop(img, size)


def _assert_views(got: torch.Tensor, want: torch.Tensor) -> None:
    """``[V, ...]`` each view within the recipes' bound of its reference, and nearer to it
    than to any other view (the order is the reference's)."""
    for v in range(len(want)):
        errors = [(got[v] - want[u]).abs().mean().item() for u in range(len(want))]
        assert errors[v] < 0.006, (v, errors)
        assert errors[v] == min(errors), (v, errors)


def test_view_boxes_are_torchvisions_tencrop_and_mmactions_threecrop():
    for h, w in [(256, 341), (256, 340), (300, 256), (224, 224), (257, 300)]:
        img = torch.arange(h * w, dtype=torch.float32).view(1, h, w)
        for views, want in ((10, F.ten_crop(img, [224, 224])), (3, _three_crop(img, 224))):
            g = Geometry(size=(224, 224), scale=(256, 256), views=views)
            got = [img[..., t:t + 224, x:x + 224] for t, x in g.boxes(h, w)]
            got = [c.flip(-1) if v in g.flipped() else c for v, c in enumerate(got)]
            assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True)), (h, w, views)
    assert VIEW_NAMES[3] == ["start", "end", "centre"] and VIEW_NAMES[10][5] == "flipped_top_left"


@pytest.mark.parametrize("views", [3, 10])
def test_clip_backbone_views_equal_the_presets_resize_then_the_crops(videos, views):
    import torchvision

    path = videos("h264", 30, width=160, height=90, fps=30)
    config = ExtractConfig(backbone="r2plus1d_18", weights=None, device="cpu", window=4, views=views)
    model = load_backbone(config)
    geometry = geometry_of(model.input_spec, views)
    plan = plan_video(probe(path), geometry, window=4, stride=4, frame_rate=15.0)
    reader = WindowReader(geometry=geometry, mean=model.input_spec.mean, std=model.input_spec.std)
    got = torch.cat(list(reader.windows(plan, per_chunk=2)))  # [W * V, 3, T, h, w]: window after window
    preset = torchvision.models.get_model_weights("r2plus1d_18").DEFAULT.transforms()
    frames = torch.from_numpy(np.stack(_frames(path))).permute(0, 3, 1, 2)
    for w, window in enumerate(plan.frames):
        resized = F.resize(frames[torch.as_tensor(window)], preset.resize_size, antialias=False)  # [T, 3, 128, 171] uint8
        want = torch.stack([F.normalize(c.float() / 255, preset.mean, preset.std).transpose(0, 1)
                            for c in _crops(resized, 112, views)])  # [V, 3, T, 112, 112]
        _assert_views(got[w * views:(w + 1) * views], want)


@pytest.mark.parametrize("views", [3, 10])
def test_image_backbone_views_through_extract_in_order(videos, tmp_path, views):
    """timm's own resize of each frame, then the crops: what the network is given, view by view."""
    from PIL import Image
    from timm.data import create_transform, resolve_model_data_config

    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/walk/v.mp4", codec="h264", num_frames=6, width=400, height=240)  # shrunk, as most are
    config = ExtractConfig(backbone="timm/resnet18", weights=None, device="cpu", multi_scale=False, views=views,
                           batch_size=4, fuse_conv_bn=False)
    model = load_backbone(config)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    extract_from_videos(raw, tmp_path / "f", config, ClipSettings(frames=2), DecodeSettings(), model=model, console=QUIET)
    with h5py.File(tmp_path / "f/train_features.h5") as h5:
        indices, stored = h5["frame_indices"][0], h5["features"][0]
        assert h5["features"].shape == (1, 2, views, 512) and h5.attrs["views"] == f"{VIEW_NAMES[views]}".replace("'", '"')
    transform = create_transform(**resolve_model_data_config(model.net), is_training=False)
    resize, crop, to_tensor, normalize = transform.transforms
    got = torch.cat(seen)  # [T * V, 3, 224, 224]: frame after frame, its views in order
    decoded = _frames(raw / "train/walk/v.mp4")
    for t, index in enumerate(indices):
        crops = _crops(to_tensor(resize(Image.fromarray(decoded[index]))), crop.size[0], views)
        _assert_views(got[t * views:(t + 1) * views], torch.stack([normalize(c) for c in crops]))
    with torch.no_grad():
        again = model(got).view(2, views, 512).numpy()
    np.testing.assert_allclose(stored, again, rtol=1e-4, atol=1e-4)


def test_views_reduce_mean_stores_the_views_mean(videos, tmp_path):
    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/walk/v.mp4", codec="h264", num_frames=6, width=160, height=90)
    base = ["extract", "--from-videos", str(raw), "--backbone", "timm/resnet18", "--weights", "none", "--device", "cpu",
            "-T", "3", "--views", "10"]
    assert runner.invoke(app, [*base[:3], str(tmp_path / "all"), *base[3:]]).exit_code == 0
    assert runner.invoke(app, [*base[:3], str(tmp_path / "mean"), *base[3:], "--views-reduce", "mean"]).exit_code == 0
    with h5py.File(tmp_path / "all/train_features_multiscale.h5") as a, h5py.File(tmp_path / "mean/train_features_multiscale.h5") as m:
        assert a["features"].shape == (1, 5, 10, 512) and m["features"].shape == (1, 5, 512)  # T=3: rows max(3, 5)
        np.testing.assert_allclose(m["features"][:], a["features"][:].mean(axis=2), rtol=1e-5, atol=1e-6)
        assert m.attrs["views_reduce"] == "mean" and a.attrs["fingerprint"] != m.attrs["fingerprint"]


@pytest.mark.parametrize("args, message", [
    (["--views", "7"], "--views must be 1, 3 or 10, got 7"),
    (["--views", "3", "--backbone", "resnet50"], "add --recipe model"),
    (["--views", "3", "--views-reduce", "max"], "--views-reduce must be mean"),
])
def test_bad_views_are_refused_before_any_work(videos, tmp_path, args, message):
    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/walk/v.mp4", codec="h264", num_frames=6)
    r = runner.invoke(app, ["extract", "--from-videos", str(raw), str(tmp_path / "f"), "--backbone", "timm/resnet18",
                            "--weights", "none", "--device", "cpu", *args])
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (tmp_path / "f").exists()


def test_views_from_pt_files_crop_the_stored_frames_as_the_recipe_says(videos, tmp_path):
    from vcp.outputs.loaders import FeatureDataset

    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/walk/v.mp4", codec="h264", num_frames=6, width=160, height=90)
    assert runner.invoke(app, ["tensorize", str(raw), str(tmp_path / "p"), "-T", "2", "--size", "256"]).exit_code == 0
    r = runner.invoke(app, ["extract", str(tmp_path / "p"), str(tmp_path / "f"), "--backbone", "timm/resnet18", "--weights",
                            "none", "--device", "cpu", "--views", "3", "--no-multi-scale"])
    assert r.exit_code == 0, r.output
    data = FeatureDataset(tmp_path / "f/train_features.h5")
    features, mask, _, _ = data[0]
    assert features.shape == (2, 3, 512) and data.views == VIEW_NAMES[3] and mask.all()
    assert not torch.allclose(features[:, 0], features[:, 1])  # the start and end crops see different pixels
