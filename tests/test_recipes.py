"""Each model's own input recipe: the geometry pixel for pixel against timm's and torchvision's
eval transforms, and, per family, the network's inputs and features against the model's own
pipeline (PIL) applied to the same frames, from videos and from stored ``.pt`` frames."""

from __future__ import annotations

import functools
import json

import h5py
import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from dali_pipes import Geometry
from dali_pipes._geometry import stored_window
from vcp.cli import app
from vcp.inputs.synth import write_video
from vcp.stages.encoder import load_backbone
from vcp.stages.extract import extract
from vcp.stages.settings import ClipSettings, DecodeSettings, ExtractConfig, TensorizeConfig
from vcp.stages.stream import extract_from_videos
from vcp.stages.tensorize import tensorize

QUIET = Console(quiet=True)
runner = CliRunner()


# -- geometry: the crop box of timm's / torchvision's eval transform, exactly -------------------
@pytest.mark.parametrize("h, w", [(240, 320), (320, 240), (256, 256), (63, 97), (97, 64), (230, 231)])
@pytest.mark.parametrize("size, crop_pct, mode", [
    (224, 0.875, "center"), (224, 0.9, "center"), (518, 1.0, "center"), (224, 0.95, "squash"), (224, 0.9, "border"),
    ((192, 224), 0.9, "center"),
])
def test_geometry_is_the_eval_transforms(h, w, size, crop_pct, mode):
    from timm.data import create_transform

    hw = size if isinstance(size, tuple) else (size, size)
    tfm = create_transform(input_size=(3, *hw), crop_pct=crop_pct, crop_mode=mode, interpolation="bilinear",
                           is_training=False)
    resize, crop = tfm.transforms[0], tfm.transforms[1]
    if mode == "border":  # its CenterCropOrPad, filled with 0 (a tensor takes no per-channel fill)
        from timm.data.transforms import center_crop_or_pad

        crop = functools.partial(center_crop_or_pad, output_size=list(hw), fill=0)
    geometry = Geometry(size=hw, scale=tuple(int(x / crop_pct) for x in hw), mode=mode)
    rh, rw = resize(torch.zeros(1, h, w)).shape[-2:]
    assert geometry.resized(h, w) == (rh, rw)
    coords = (torch.arange(rh, dtype=torch.float64)[:, None] * 10_000 + torch.arange(rw)[None, :] + 1)[None]
    out = crop(coords)[0]
    assert tuple(out.shape) == hw
    y, x = (int(v) for v in torch.nonzero(out)[0])  # the first pixel taken from the frame (not padding)
    value = int(out[y, x]) - 1
    assert geometry.window(rh, rw) == (value // 10_000 - y, value % 10_000 - x)


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("top, left", [(0, 0), (3, 5), (7, 1)])
def test_a_crop_of_the_shown_frame_is_a_crop_of_the_stored_one(k, top, left):
    stored = torch.arange(12 * 17).view(12, 17)
    shown = torch.rot90(stored, k)
    c = 5
    st, sl = stored_window(top, left, (c, c), tuple(shown.shape), k * 90)
    assert torch.equal(torch.rot90(stored[st:st + c, sl:sl + c], k), shown[top:top + c, left:left + c])


@pytest.mark.parametrize("h, w", [(360, 640), (640, 360), (333, 517), (248, 248)])
@pytest.mark.parametrize("size, crop_pct, mode, interpolation, antialias", [
    (224, 0.9, "center", "bicubic", True), (224, 0.875, "center", "bilinear", True), ((192, 224), 0.9, "center", "bicubic", True),
    (224, 0.95, "squash", "bilinear", True), (112, 0.875, "center", "bilinear", False),  # torchvision's video presets
])
def test_the_crop_box_resized_alone_is_the_whole_frame_resized_then_cropped(h, w, size, crop_pct, mode, interpolation,
                                                                           antialias, monkeypatch):
    """On the CPU the graph resizes only a recipe's crop box: the same pixels (to float rounding)
    as the whole frame resized, then cropped."""
    import dali_pipes._graph as graph

    hw = size if isinstance(size, tuple) else (size, size)
    geometry = Geometry(size=hw, scale=tuple(int(x / crop_pct) for x in hw), mode=mode, interpolation=interpolation,
                        antialias=antialias)
    assert geometry.crop_inside()
    frames = [np.random.default_rng(i).integers(0, 256, (3, h, w, 3), dtype=np.uint8) for i in range(2)]
    resize_to = geometry.resized(h, w)
    placed = [(resize_to, geometry.window(*resize_to)), (resize_to, (0, 0))]  # the centre crop, and a box at the corner
    outputs = []
    for roi in (True, False):
        monkeypatch.setattr(graph, "roi_resize", lambda g, device, roi=roi: roi)
        pipe = graph.build_pipeline("pyav", device="cpu", batch_size=2, size=hw[0], mean=(0.5,) * 3, std=(0.25,) * 3,
                                    geometry=geometry)
        pipe.feed_input("frames", frames, layout="FHWC")
        pipe.feed_input("flip", [np.int32(0)] * 2)
        graph.feed_geometry(pipe, geometry, "cpu", placed)
        (out,) = pipe.run()
        outputs.append([np.array(out[i]) for i in range(2)])
    for alone, whole in zip(*outputs, strict=True):
        assert alone.shape == whole.shape == (3, 3, *hw)
        assert np.abs(alone - whole).max() < 4e-4  # 0.025 on 0-255, float rounding of the filter's weights
    with pytest.raises(ValueError, match="not inside"):
        geometry.roi(resize_to, (-1, 0))
    assert not Geometry(size=hw, scale=hw, mode="border").crop_inside()
    assert not Geometry(size=hw, scale=tuple(int(x / 1.2) for x in hw)).crop_inside()  # crop_pct > 1: padded
    assert not Geometry(size=hw, scale=tuple(int(x / crop_pct) for x in hw), views=3).crop_inside()


# -- per family: vcp's network inputs and features against the model's own transform ------------
FAMILIES = [  # backbone, --input-size
    ("timm/vit_small_patch16_224", None),  # crop_pct 0.9, bicubic, mean/std 0.5
    ("timm/vit_base_patch16_clip_224.openai", None),  # OpenAI CLIP statistics
    ("timm/vit_small_patch14_dinov2.lvd142m", 224),  # built for 224 instead of 518
    ("timm/vit_base_patch16_siglip_224", None),
    ("timm/convnext_tiny", None),  # crop_pct 0.95
    ("resnet50", None),  # torchvision's preset: 232 -> 224, bilinear (with --recipe model)
]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """A landscape video and a phone's portrait one (stored landscape, rotated 90 degrees)."""
    root = tmp_path_factory.mktemp("recipes") / "raw"
    write_video(root / "train/a/land.mp4", num_frames=24, width=320, height=240)
    write_video(root / "train/b/phone.mp4", num_frames=24, width=320, height=240, rotation=90)
    return root


@functools.cache
def _model(name: str, input_size: int | None):
    config = ExtractConfig(backbone=name, weights=None, device="cpu", multi_scale=False, recipe="model",
                           input_size=input_size, batch_size=3, fuse_conv_bn=False)  # (its inputs are seen by a hook)
    return config, load_backbone(config)


def _reference(name: str, model, input_size):
    """The model's own eval transform (PIL in, normalized tensor out)."""
    if name.startswith("timm/"):
        from timm.data import create_transform, resolve_model_data_config

        cfg = resolve_model_data_config(model.net)
        if input_size:
            cfg["input_size"] = (3, input_size, input_size)
        return create_transform(**cfg, is_training=False)
    import torchvision

    return torchvision.models.get_model_weights(name)["IMAGENET1K_V2"].transforms()


def _decoded(path, indices, rotation):
    import av

    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return [np.ascontiguousarray(np.rot90(frames[i], rotation // 90)) for i in indices]


def _from_videos(raw, features, reference) -> torch.Tensor:
    """The model's own transform of the decoded frames each features row names (as shown: rotated)."""
    from PIL import Image

    with h5py.File(features) as h5:
        indices, names = h5["frame_indices"][:], [n.decode() for n in h5["filenames"][:]]
    return torch.stack([reference(Image.fromarray(f)) for n, idx in zip(names, indices, strict=True)
                        for f in _decoded(raw / "train" / n.split("/", 2)[0] / n.rsplit("/", 1)[1], idx,
                                          90 if "phone" in n else 0)])


def _captured(model):
    seen = []
    handle = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().float().clone()))
    return seen, handle


def _compare(model, got: torch.Tensor, want: torch.Tensor, rows: np.ndarray):
    assert got.shape == want.shape  # the exact input size
    # PIL's resampling vs the device's: measured 0.0002-0.003; the crop box one pixel off gives 0.011-0.028
    assert (got - want).abs().mean() < 0.006, (got - want).abs().mean()
    with torch.no_grad():
        expected = model(want.contiguous()).numpy()
    cos = (rows * expected).sum(1) / np.linalg.norm(rows, axis=1) / np.linalg.norm(expected, axis=1)
    assert cos.min() >= 0.999, cos


@pytest.mark.parametrize("name, input_size", FAMILIES)
def test_recipe_equals_the_models_own_pipeline(name, input_size, raw, tmp_path):
    from PIL import Image

    config, model = _model(name, input_size)
    reference = _reference(name, model, input_size)
    clip = ClipSettings(frames=3, size=256)
    seen, handle = _captured(model)
    try:
        extract_from_videos(raw, tmp_path / "f", config, clip, DecodeSettings(), model=model, console=QUIET)
    finally:
        handle.remove()
    with h5py.File(tmp_path / "f/train_features.h5") as h5:
        assert h5.attrs["recipe"] == "model" and h5.attrs["interpolation"] in ("bicubic", "bilinear")
        rows = h5["features"][:].reshape(-1, h5.attrs["feature_dim"])
    want = _from_videos(raw, tmp_path / "f/train_features.h5", reference)
    _compare(model, torch.cat(seen), want, rows)

    # from .pt frames stored at 256x256 (uint8: the stored pixels are exact): the stored frames through the pipeline
    tensorize(raw, tmp_path / "p", TensorizeConfig.from_options(frames=3, size=256, storage="uint8"), console=QUIET)
    seen, handle = _captured(model)
    try:
        extract(tmp_path / "p", tmp_path / "g", config, model=model, console=QUIET)
    finally:
        handle.remove()
    with h5py.File(tmp_path / "g/train_features.h5") as h5:
        rows = h5["features"][:].reshape(-1, h5.attrs["feature_dim"])
    stored = [torch.load(tmp_path / "p/train" / g / "processed_data.pt", weights_only=True)["videos"][0]
              for g in ("a/a", "b/b")]
    want = torch.stack([reference(Image.fromarray(f.permute(1, 2, 0).numpy())) for clip_ in stored for f in clip_])
    _compare(model, torch.cat(seen), want, rows)


def test_recipe_choice_and_bad_input_size(raw, tmp_path):
    r = runner.invoke(app, ["extract", "--from-videos", str(raw), str(tmp_path / "f"), "--backbone",
                            "timm/vit_small_patch16_224", "--weights", "none", "--input-size", "200", "--device", "cpu"])
    assert r.exit_code == 2 and "not a multiple of timm/vit_small_patch16_224's 16-pixel patch: use 192 or 208" in r.output
    r = runner.invoke(app, ["extract", "--from-videos", str(raw), str(tmp_path / "f"), "--recipe", "stored",
                            "--input-size", "224", "--device", "cpu", "--weights", "none"])
    assert r.exit_code == 2 and "goes with --recipe model" in r.output


@pytest.mark.parametrize("mode, crop_pct", [("squash", 0.9), ("border", 1.0), ("center", 1.2)])
def test_every_resize_mode_from_videos_and_from_pt(mode, crop_pct, raw, tmp_path):
    """squash, border (padded with the mean) and a crop larger than the resized frame (padded
    black) through the DALI graph and the stored-frame path, against timm's transform."""
    from PIL import Image
    from timm.data import create_transform

    from backbones import Backbone, InputSpec
    from tests.plugins import Tiny

    spec = InputSpec(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), size=(64, 64), resize_mode=mode, crop_pct=crop_pct,
                     interpolation="bilinear")
    model = Backbone(Tiny(), feature_dim=7, input_spec=spec)
    reference = create_transform(input_size=(3, 64, 64), crop_pct=crop_pct, crop_mode=mode, interpolation="bilinear",
                                 mean=spec.mean, std=spec.std, is_training=False)
    config = ExtractConfig(backbone="own", weights=None, device="cpu", multi_scale=False, recipe="model", fuse_conv_bn=False)
    seen, handle = _captured(model)
    extract_from_videos(raw, tmp_path / "f", config, ClipSettings(frames=2, size=256), DecodeSettings(), model=model,
                        console=QUIET)
    handle.remove()
    want = _from_videos(raw, tmp_path / "f/train_features.h5", reference)
    got = torch.cat(seen)
    assert got.shape == want.shape and (got - want).abs().mean() < 0.006, (got - want).abs().mean()
    tensorize(raw, tmp_path / "p", TensorizeConfig.from_options(frames=2, size=96, storage="uint8"), console=QUIET)
    seen, handle = _captured(model)
    extract(tmp_path / "p", tmp_path / "g", config, model=model, console=QUIET)
    handle.remove()
    stored = [torch.load(tmp_path / "p/train" / g / "processed_data.pt", weights_only=True)["videos"][0] for g in ("a/a", "b/b")]
    want = torch.stack([reference(Image.fromarray(f.permute(1, 2, 0).numpy())) for clip_ in stored for f in clip_])
    got = torch.cat(seen)
    assert got.shape == want.shape and (got - want).abs().mean() < 0.006, (got - want).abs().mean()


@pytest.mark.needs_cuda
def test_the_recipe_on_the_card_equals_the_models_own_pipeline(raw, tmp_path):
    """NVDEC + the GPU graph (per-video resize, exact slice, rotation) against timm's transform."""
    from timm.data import create_transform

    from backbones import Backbone, InputSpec
    from tests.plugins import Tiny

    spec = InputSpec(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), size=(224, 224), crop_pct=0.9, interpolation="bicubic")
    model = Backbone(Tiny(), feature_dim=7, input_spec=spec)
    reference = create_transform(input_size=(3, 224, 224), crop_pct=0.9, crop_mode="center", interpolation="bicubic",
                                 mean=spec.mean, std=spec.std, is_training=False)
    config = ExtractConfig(backbone="own", weights=None, device="cuda", multi_scale=False, recipe="model", fuse_conv_bn=False)
    seen, handle = _captured(model)
    extract_from_videos(raw, tmp_path / "f", config, ClipSettings(frames=3, size=256), DecodeSettings(mode="gpu"),
                        model=model, console=QUIET)
    handle.remove()
    want = _from_videos(raw, tmp_path / "f/train_features.h5", reference)
    got = torch.cat(seen).cpu()
    assert got.shape == want.shape and (got - want).abs().mean() < 0.01, (got - want).abs().mean()  # NVDEC's own decode


def test_two_stage_features_match_streaming_ones_with_the_options_vcp_backbones_prints(tmp_path, videos):
    """A 640x272 video: tensorize with the options `vcp backbones NAME` prints, then extract,
    gives the features of `extract --from-videos` (squashing, the default, does not)."""
    import shlex

    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/walk/wide.mp4", codec="h264", num_frames=12, width=640, height=272)
    shown = runner.invoke(app, ["backbones", "timm/resnet18"])
    assert shown.exit_code == 0, shown.output
    line = next(x for x in shown.output.splitlines() if x.strip().startswith("vcp tensorize"))
    options = shlex.split(line.split("   (")[0])[4:]  # vcp tensorize RAW OUT <options>
    assert options == ["--fit", "center", "--size", "235", "--interpolation", "bicubic"]
    common = ["--backbone", "timm/resnet18", "--weights", "none", "--device", "cpu", "--no-multi-scale"]
    out = {}
    for name, tz in (("fitted", options), ("squashed", [])):
        assert runner.invoke(app, ["tensorize", str(raw), str(tmp_path / name), "-T", "3", *tz]).exit_code == 0
        assert runner.invoke(app, ["extract", str(tmp_path / name), str(tmp_path / f"{name}_f"), *common]).exit_code == 0
        with h5py.File(tmp_path / f"{name}_f/train_features.h5") as h5:
            out[name] = h5["features"][:]
    assert runner.invoke(app, ["extract", "--from-videos", str(raw), str(tmp_path / "s"), "-T", "3", *common]).exit_code == 0
    with h5py.File(tmp_path / "s/train_features.h5") as h5:
        streamed = h5["features"][:]
    rel = lambda a: float(np.abs(a - streamed).max() / np.abs(streamed).max())  # noqa: E731
    assert rel(out["fitted"]) < 1e-2 and rel(out["squashed"]) > 5e-2, (rel(out["fitted"]), rel(out["squashed"]))
    meta = json.loads((tmp_path / "fitted/train/walk/walk/metadata.json").read_text())
    assert (meta["fit"], meta["interpolation"], meta["image_size"]) == ("center", "bicubic", 235)
