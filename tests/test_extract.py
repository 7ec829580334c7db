"""``vcp extract``: three-scale equality with the original loop, HDF5 schema, API, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from backbones import IMAGENET, get_backbone
from backbones.spec import InputSpec
from bench.reference import original_multiscale_features
from vcp import EnhancedFeatureExtractor
from vcp.cli import app
from vcp.stages.encoder import FrameEncoder, video_features
from vcp.stages.extract import extract
from vcp.stages.multiscale import combine_scales, output_rows, scale_indices
from vcp.stages.settings import ExtractConfig
from vcp.stages.tensorize import TensorizeConfig, tensorize
from vcp.store.contract import PT_NAME

runner = CliRunner()
FAST = ["--backbone", "efficientnet_v2_s", "--weights", "none", "--device", "cpu", "--batch-size", "16"]


@pytest.fixture(scope="session")
def processed(tmp_path_factory, videos):
    root = tmp_path_factory.mktemp("extract")
    raw = root / "raw"
    videos.copy_to(raw / "train/zebra/a/one.mp4", codec="h264", num_frames=30)
    videos.copy_to(raw / "train/zebra/a/two.webm", codec="vp9", num_frames=20)
    videos.copy_to(raw / "train/apple/three.avi", codec="mjpeg", num_frames=12)
    videos.copy_to(raw / "val/apple/four.mp4", codec="h264", num_frames=25)
    out = root / "processed"
    tensorize(raw, out, TensorizeConfig.from_options(frames=10, size=32, mode="cpu"), console=Console(quiet=True))
    return out


def test_scale_lengths_match_the_contract():
    assert [len(scale_indices(64, s)) for s in (1.0, 0.85, 1.15)] == [64, 54, 73]
    assert output_rows(64, (1.0, 0.85, 1.15)) == 73
    assert len(scale_indices(4, 0.85)) == 5  # never fewer than 5
    np.testing.assert_array_equal(scale_indices(64, 0.85), np.linspace(0, 63, 54).astype(int))


def test_combine_scales_is_the_definition():
    feats = torch.randn(64, 6)
    expected = torch.zeros(3, 73, 6)
    for k, s in enumerate((1.0, 0.85, 1.15)):
        idx = np.arange(64) if s == 1.0 else np.linspace(0, 63, max(int(64 * s), 5)).astype(int)
        expected[k, : len(idx)] = feats[idx]
    torch.testing.assert_close(combine_scales(feats, (1.0, 0.85, 1.15)), expected.mean(0))


def test_combine_scales_after_inference_mode_still_has_gradients():
    """The scale indices are made once per (T, scales, device) and kept; made first under
    inference mode (as extract does), they must still serve a caller that trains."""
    with torch.inference_mode():
        combine_scales(torch.randn(64, 6), (1.0, 0.85, 1.15))
    feats = torch.randn(64, 6, requires_grad=True)
    combine_scales(feats, (1.0, 0.85, 1.15)).sum().backward()
    # frame i's gradient: how many scales pick it, over 3
    picks = sum(np.bincount(scale_indices(64, s), minlength=64) for s in (1.0, 0.85, 1.15))
    torch.testing.assert_close(feats.grad[:, 0], torch.from_numpy(picks).float() / 3)


@pytest.mark.parametrize("frames", [64, 7])
def test_fast_path_equals_seed_loop_fp32(frames):
    torch.manual_seed(0)
    model = get_backbone("efficientnet_v2_s", weights=None)
    video = torch.randn(frames, 3, 48, 48)
    seed = original_multiscale_features(model, video, batch_size=24)
    fast = video_features(FrameEncoder(model, ExtractConfig(device="cpu", batch_size=24)), video, ExtractConfig())
    assert fast.shape == seed.shape == (output_rows(frames, (1.0, 0.85, 1.15)), 1280)
    rel = (fast - seed).abs().max() / seed.abs().max()
    assert rel <= 1e-5, rel


class Counting(torch.nn.Module):
    """Per-frame channel means; records the batch size of every forward in ``seen``."""

    feature_dim = 3

    def __init__(self):
        super().__init__()
        self.seen: list[int] = []

    def forward(self, x):
        self.seen.append(x.shape[0])
        return x.mean(dim=(2, 3))


def test_each_frame_goes_through_the_backbone_once():
    """T=64: 64 frames through the backbone, not 64 + 54 + 73 = 191 as in the original loop."""
    model = Counting()
    seen = model.seen
    video = torch.randn(64, 3, 8, 8)
    cfg = ExtractConfig(batch_size=24, fuse_conv_bn=False)
    fast = video_features(FrameEncoder(model, cfg), video, cfg)
    assert sum(seen) == 64 and seen == [24, 24, 16]
    seen.clear()
    seed = original_multiscale_features(model, video, batch_size=24)
    assert sum(seen) == 191
    torch.testing.assert_close(fast, seed)


def test_default_forward_batch_is_8_on_cpu_256_on_cuda_and_does_not_change_features():
    model = Counting()
    FrameEncoder(model, ExtractConfig(fuse_conv_bn=False))(torch.randn(20, 3, 4, 4))
    assert model.seen == [8, 8, 4]
    assert ExtractConfig(device="cuda:1").forward_batch == 256
    assert ExtractConfig(device="cpu", batch_size=5).forward_batch == 5

    torch.manual_seed(0)
    model = get_backbone("efficientnet_v2_s", weights=None)
    video = torch.randn(20, 3, 32, 32)
    auto = FrameEncoder(model, ExtractConfig())(video)
    wide = FrameEncoder(model, ExtractConfig(batch_size=24))(video)
    rel = (auto - wide).abs().max() / wide.abs().max()
    assert rel <= 1e-5, rel


def test_frames_of_several_videos_are_packed_into_each_forward_and_rows_match_per_video():
    """--batch-size frames per forward across video boundaries; every video's rows equal a
    per-video pass, in input order; a NaN clip comes back as None without stopping the rest."""
    from vcp.stages.multiscale import combine_scales
    from vcp.stages.packing import PackedEncoder

    torch.manual_seed(0)
    counting = Counting()
    cfg = ExtractConfig(fuse_conv_bn=False, batch_size=16)
    videos = [torch.randn(t, 3, 8, 8) for t in (10, 7, 30, 3, 12)]
    videos[3][1, 0, 0, 0] = float("nan")
    packer = PackedEncoder(FrameEncoder(counting, cfg), 16, lambda f: combine_scales(f, (1.0, 0.85, 1.15)))
    got = []
    for i, v in enumerate(videos):
        got += packer.put(i, v, IMAGENET)
    got += packer.finish()
    assert counting.seen == [16, 16, 16, 14]  # 62 frames, each once, in full batches but the last
    assert [k for k, _ in got] == [0, 1, 2, 3, 4] and got[3][1] is None
    torch.manual_seed(0)
    model = get_backbone("efficientnet_v2_s", weights=None)
    cfg = ExtractConfig(batch_size=16)
    enc = FrameEncoder(model, cfg)
    packer = PackedEncoder(enc, 16, lambda f: combine_scales(f, cfg.scales))
    videos[3][1, 0, 0, 0] = 0.0
    packed = [rows for v in videos for _, rows in packer.put(None, v, IMAGENET)] + [rows for _, rows in packer.finish()]
    for v, rows in zip(videos, packed, strict=True):
        per_video = video_features(enc, v, cfg).numpy()
        np.testing.assert_allclose(rows, per_video, rtol=1e-5, atol=1e-5)


class Watching(torch.nn.Module):
    """Records, for every forward, its input (a copy), its storage address and layout."""

    feature_dim = 3

    def __init__(self):
        super().__init__()
        self.inputs, self.ptrs, self.channels_last = [], [], []

    def forward(self, x):
        self.inputs.append(x.clone())
        self.ptrs.append(x.data_ptr())
        self.channels_last.append(x.is_contiguous(memory_format=torch.channels_last))
        return x.mean(dim=(2, 3))


@pytest.mark.parametrize("channels_last", [True, False])
def test_packed_batches_hold_each_videos_frames_in_order_in_the_networks_layout(channels_last):
    """Frames are copied into the batch being filled (in the network's memory format) and a
    whole batch of one video in that format is handed over as it is, without a copy; a
    padded batch (as on CUDA) has zeros past its frames, which no video gets back."""
    from vcp.stages.packing import PackedEncoder

    torch.manual_seed(0)
    videos = [torch.randn(t, 3, 4, 4) for t in (40, 5, 11)]  # 56 frames, batches of 16
    net = Watching()
    cfg = ExtractConfig(fuse_conv_bn=False, batch_size=16, channels_last=channels_last)
    packer = PackedEncoder(FrameEncoder(net, cfg), 16, lambda f: f)
    packer.pad = True
    got = [r for i, v in enumerate(videos) for r in packer.put(i, v, IMAGENET)] + packer.finish()
    frames = torch.cat(videos)
    assert [x.shape[0] for x in net.inputs] == [16, 16, 16, 16]
    for k, x in enumerate(net.inputs):
        real = frames[16 * k : 16 * (k + 1)]
        assert torch.equal(x[: len(real)], real) and not x[len(real) :].any()
    assert all(net.channels_last) if channels_last else not any(net.channels_last[2:])
    # the first two batches lie wholly in video 0: as they are where its layout is the network's
    direct = [net.ptrs[0] == videos[0].data_ptr(), net.ptrs[1] == videos[0][16].data_ptr()]
    assert direct == ([False, False] if channels_last else [True, True])
    assert [k for k, _ in got] == [0, 1, 2]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for (_, rows), v in zip(got, videos, strict=True):  # the means of each video's own frames
        np.testing.assert_allclose(rows, v.contiguous(memory_format=fmt).mean(dim=(2, 3)).numpy(), rtol=1e-6, atol=1e-7)


def test_frames_of_another_size_start_a_batch_of_their_own():
    from vcp.stages.packing import PackedEncoder

    counting = Counting()
    packer = PackedEncoder(FrameEncoder(counting, ExtractConfig(fuse_conv_bn=False, batch_size=16)), 16, lambda f: f)
    videos = [torch.randn(10, 3, 8, 8), torch.randn(10, 3, 6, 6), torch.randn(10, 3, 6, 6)]
    got = [r for i, v in enumerate(videos) for r in packer.put(i, v, IMAGENET)] + packer.finish()
    assert counting.seen == [10, 16, 4]
    for (_, rows), v in zip(got, videos, strict=True):
        np.testing.assert_allclose(rows, v.contiguous(memory_format=torch.channels_last).mean(dim=(2, 3)).numpy(),
                                   rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="no frames"):
        packer.put(3, torch.zeros(0, 3, 6, 6), IMAGENET)


def test_weights_autocast_would_cast_at_every_forward_are_cast_once_with_the_same_bits(monkeypatch):
    """bf16: the folded network's convolutions hold bf16 weights (autocast casts nothing
    per forward for them) and the features are bit-for-bit those of casting each forward;
    the caller's model is untouched; fp32 casts nothing."""
    import vcp.stages.encoder as encoder_module

    torch.manual_seed(0)
    model = get_backbone("efficientnet_v2_s", weights=None)
    frames = torch.randn(3, 3, 32, 32)
    cfg = ExtractConfig(precision="bf16")
    once = FrameEncoder(model, cfg)
    assert once.weights_cast == 170  # every convolution of efficientnet_v2_s, conv+BN folded
    convs = [m for m in once.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 170 and all(m.weight.dtype == torch.bfloat16 == m.bias.dtype for m in convs)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    monkeypatch.setattr(encoder_module, "cast_weights_once", lambda net, dtype: 0)
    every = FrameEncoder(model, cfg)
    assert every.weights_cast == 0 and all(p.dtype == torch.float32 for p in every.net.parameters())
    assert torch.equal(once(frames), every(frames))
    monkeypatch.undo()
    assert FrameEncoder(model, ExtractConfig(precision="fp32")).weights_cast == 0
    assert FrameEncoder(model, ExtractConfig(precision="bf16", fuse_conv_bn=False)).weights_cast == 0  # the caller's own


def test_a_layer_with_a_hook_keeps_its_parameters():
    """A hook may read the layer's weight (here: to scale its input) or make it (as
    weight_norm's does): a layer with one is left as it is; the plain one is cast."""

    def scale_input(module, args):
        return (args[0] * module.weight.abs().mean() * 3.7,)

    class Hooked(torch.nn.Module):
        feature_dim = 4

        def __init__(self):
            super().__init__()
            self.conv, self.head = torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 1)
            self.conv.register_forward_pre_hook(scale_input)

        def forward(self, x):
            return self.head(self.conv(x)).mean(dim=(2, 3))

    torch.manual_seed(0)
    net = Hooked()
    enc = FrameEncoder(net, ExtractConfig(precision="bf16"))
    folded = dict(enc.net.named_modules())
    assert enc.weights_cast == 1 and folded["net.head"].weight.dtype == torch.bfloat16
    assert folded["net.conv"].weight.dtype == torch.float32
    frames = torch.randn(2, 3, 8, 8)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = net(frames.contiguous(memory_format=torch.channels_last)).float()
    assert torch.equal(enc(frames), expected)


def test_a_layer_whose_weights_are_tied_to_another_keeps_them():
    """A linear layer sharing its weight with an embedding (not cast by autocast) stays
    float32, or the embedding's output would change; the untied one is cast."""

    class Tied(torch.nn.Module):
        feature_dim = 4

        def __init__(self):
            super().__init__()
            self.conv, self.head, self.table = torch.nn.Conv2d(3, 4, 1), torch.nn.Linear(4, 4), torch.nn.Embedding(4, 4)
            self.table.weight = self.head.weight

        def forward(self, x):
            pooled = self.conv(x).mean(dim=(2, 3))
            return self.head(pooled) + self.table(torch.arange(4)).sum(dim=0)

    torch.manual_seed(0)
    net = Tied()
    enc = FrameEncoder(net, ExtractConfig(precision="bf16"))
    folded = dict(enc.net.named_modules())
    assert enc.weights_cast == 1 and folded["net.conv"].weight.dtype == torch.bfloat16
    assert folded["net.head"].weight.dtype == torch.float32 and folded["net.table"].weight is folded["net.head"].weight
    frames = torch.randn(2, 3, 8, 8)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = net(frames.contiguous(memory_format=torch.channels_last)).float()
    assert torch.equal(enc(frames), expected)


def test_a_layer_whose_weights_the_graph_reads_directly_keeps_them():
    """A convolution whose weight the network also reads outside it (here: to scale its
    output) stays float32, or that statistic would change; the plain one after it is cast."""

    class Scaled(torch.nn.Module):
        feature_dim = 4

        def __init__(self):
            super().__init__()
            self.conv, self.head = torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 1)

        def forward(self, x):
            scale = self.conv.weight.abs().mean() * 3.7
            return self.head(self.conv(x) * scale).mean(dim=(2, 3))

    torch.manual_seed(0)
    net = Scaled()
    enc = FrameEncoder(net, ExtractConfig(precision="bf16"))
    assert enc.weights_cast == 1
    folded = dict(enc.net.named_modules())
    assert folded["net.conv"].weight.dtype == torch.float32 and folded["net.head"].weight.dtype == torch.bfloat16
    frames = torch.randn(2, 3, 8, 8)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = net(frames.contiguous(memory_format=torch.channels_last)).float()
    assert torch.equal(enc(frames), expected)


def test_renormalizes_for_backbones_with_other_statistics():
    torch.manual_seed(0)
    model = get_backbone("efficientnet_v2_s", weights=None)
    other = InputSpec(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    pixels = torch.rand(4, 3, 32, 32)
    stored = (pixels - torch.tensor(IMAGENET.mean).view(3, 1, 1)) / torch.tensor(IMAGENET.std).view(3, 1, 1)
    model.input_spec = other
    got = FrameEncoder(model, ExtractConfig(device="cpu"))(stored, IMAGENET)
    with torch.no_grad():
        want = model((pixels - 0.5) / 0.5)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_hdf5_schema_and_contents(processed, tmp_path):
    features = tmp_path / "features"
    result = runner.invoke(app, ["extract", str(processed), str(features), *FAST])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in features.iterdir()) == ["train_features_multiscale.h5", "val_features_multiscale.h5"]
    with h5py.File(features / "train_features_multiscale.h5", "r") as h5:
        f = h5["features"]
        assert f.dtype == np.float32 and f.shape == (3, 11, 1280)  # T=10 -> 10, 8, 11 rows
        assert f.compression == "gzip" and f.compression_opts == 4 and f.chunks == (1, 11, 1280)
        assert h5["labels"].dtype == np.int64 and h5["num_frames"].dtype == np.int32
        assert h5["num_frames"][:].tolist() == [11, 11, 11]
        names = [n.decode() if isinstance(n, bytes) else n for n in h5["filenames"][:]]
        assert names == ["apple/apple/three.avi", "zebra/a/one.mp4", "zebra/a/two.webm"]
        assert h5["labels"][:].tolist() == [0, 1, 1]
        attrs = dict(h5.attrs)
        assert (attrs["num_videos"], attrs["max_frames"], attrs["feature_dim"]) == (3, 11, 1280)
        assert json.loads(attrs["category_mapping"]) == {"apple": 0, "zebra": 1}
        assert bool(attrs["multi_scale"]) is True
        assert attrs["backbone"] == "efficientnet_v2_s" and attrs["weights"] == "random init"
        assert json.loads(attrs["scales"]) == [1.0, 0.85, 1.15] and attrs["precision"] == "fp32"
        assert "torch" in json.loads(attrs["versions"])
        assert "weights_cast_once" not in attrs  # fp32: autocast is off, nothing to cast
        assert not np.any(np.all(f[1] == 0, axis=1))  # every row of a full-length video is real
    with h5py.File(features / "val_features_multiscale.h5", "r") as h5:
        assert h5["features"].shape == (1, 11, 1280) and h5["labels"][:].tolist() == [0]


def test_group_with_other_frame_count_is_rejected_and_single_scale_file(processed, tmp_path):
    """A group whose T differs from the rest of its split is rejected (one line, exit 3);
    the rest is written, single-scale: num_frames = T rows."""
    tree = tmp_path / "p"
    shutil.copytree(processed, tree)
    d = torch.load(tree / "train/apple/apple" / PT_NAME, weights_only=True)
    d["videos"] = d["videos"][:, :6].clone()
    torch.save(d, tree / "train/apple/apple" / PT_NAME)
    features = tmp_path / "f"
    result = runner.invoke(app, ["extract", str(tree), str(features), *FAST, "--no-multi-scale", "--splits", "train"])
    assert result.exit_code == 3, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("vcp: error:")]
    assert len(errors) == 1 and "train/apple/apple/processed_data.pt: clips are T=6, 32x32 but the split's other groups are T=10" in errors[0]
    with h5py.File(features / "train_features.h5", "r") as h5:
        assert h5["features"].shape == (2, 10, 1280) and not bool(h5.attrs["multi_scale"])
        assert h5["num_frames"][:].tolist() == [10, 10] and h5["labels"][:].tolist() == [1, 1]
        failed = json.loads(h5.attrs["failed_files"])
        assert [Path(p).parent.name for p, _ in failed] == ["apple"]


def test_api_end_to_end_matches_cli_and_seed(processed, tmp_path):
    torch.manual_seed(1)
    fx = EnhancedFeatureExtractor(processed, tmp_path / "api", backbone="efficientnet_v2_s", device="cpu", multi_scale=True, weights=None, quiet=True)
    with pytest.warns(UserWarning, match="no processed data for split 'test'"):
        outputs = fx.extract_all_splits(batch_size=8)
    assert sorted(outputs) == ["train", "val"]
    clip = torch.load(processed / "val/apple/apple" / PT_NAME, weights_only=True)["videos"][0]
    seed = original_multiscale_features(fx.model, clip, batch_size=24)
    with h5py.File(outputs["val"], "r") as h5:
        got = torch.from_numpy(h5["features"][0])
    assert ((got - seed).abs().max() / seed.abs().max()) <= 1e-5


def test_resume_and_overwrite(processed, tmp_path):
    features = tmp_path / "f"
    assert runner.invoke(app, ["extract", str(processed), str(features), *FAST]).exit_code == 0
    target = features / "train_features_multiscale.h5"
    before = target.stat().st_mtime_ns
    again = runner.invoke(app, ["extract", str(processed), str(features), *FAST])
    assert again.exit_code == 0 and target.stat().st_mtime_ns == before and "up to date" in again.stderr
    forced = runner.invoke(app, ["extract", str(processed), str(features), *FAST, "--overwrite"])
    assert forced.exit_code == 0 and target.stat().st_mtime_ns != before
    assert not list(features.glob(".*tmp"))


def test_bad_pt_files_exit_3_others_processed(processed, tmp_path):
    tree = tmp_path / "p"
    shutil.copytree(processed, tree)
    (tree / "train/zebra/broken").mkdir()
    (tree / "train/zebra/broken" / PT_NAME).write_bytes(b"garbage")
    (tree / "train/zebra/schema").mkdir()
    torch.save({"videos": torch.zeros(2, 3, 4)}, tree / "train/zebra/schema" / PT_NAME)
    features = tmp_path / "f"
    result = runner.invoke(app, ["extract", str(tree), str(features), *FAST])
    assert result.exit_code == 3, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("vcp: error:")]
    assert len(errors) == 2
    assert any("broken/processed_data.pt: not a loadable" in e for e in errors)
    assert any("schema/processed_data.pt: missing keys: labels, filenames, category_mapping" in e for e in errors)
    with h5py.File(features / "train_features_multiscale.h5", "r") as h5:
        assert h5.attrs["num_videos"] == 3


def test_cli_usage_errors(processed, tmp_path):
    r = runner.invoke(app, ["extract", str(tmp_path / "missing"), str(tmp_path / "f"), *FAST])
    assert r.exit_code == 2 and "run `vcp tensorize" in r.stderr
    r = runner.invoke(app, ["extract", str(processed), str(tmp_path / "f"), *FAST, "--backbone", "nope"])
    assert r.exit_code == 2 and "Available: " in r.stderr and "resnet50" in r.stderr
    r = runner.invoke(app, ["extract", str(processed), str(tmp_path / "f"), *FAST, "--precision", "fp8"])
    assert r.exit_code == 2 and "'fp8' is not one of 'fp32', 'bf16', 'fp16'" in " ".join(r.stderr.replace("│", " ").split())
    if not torch.cuda.is_available():
        r = runner.invoke(app, ["extract", str(processed), str(tmp_path / "f"), "--weights", "none", "--device", "cuda"])
        assert r.exit_code == 2 and "no CUDA device" in r.stderr
    assert "Traceback" not in r.output


def test_bf16_close_to_fp32(processed):
    torch.manual_seed(0)
    model = get_backbone("efficientnet_v2_s", weights=None)
    clip = torch.load(processed / "val/apple/apple" / PT_NAME, weights_only=True)["videos"][0]
    fp32 = video_features(FrameEncoder(model, ExtractConfig()), clip, ExtractConfig())
    bf16 = video_features(FrameEncoder(model, ExtractConfig(precision="bf16")), clip, ExtractConfig())
    assert bf16.dtype == torch.float32
    rel = (bf16 - fp32).norm() / fp32.norm()
    assert 1e-5 < rel < 0.1, rel  # autocast really ran in bf16, and stayed close


@pytest.mark.needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_matches_cpu(processed, precision):
    torch.manual_seed(0)
    model = get_backbone("efficientnet_v2_s", weights=None)
    clip = torch.load(processed / "val/apple/apple" / PT_NAME, weights_only=True)["videos"][0]
    cpu = original_multiscale_features(model, clip)
    cfg = ExtractConfig(device="cuda", precision=precision)
    gpu = video_features(FrameEncoder(model, cfg), clip, cfg).cpu()
    # fp32: cuDNN runs fp32 convolutions in TF32 on Ampere and newer (PyTorch's default):
    # 1.05e-3 measured on an H200, so 1e-3 is too tight; an error (wrong frames, wrong
    # normalization) is orders of magnitude larger
    tol = 3e-3 if precision == "fp32" else 0.1
    assert ((gpu - cpu).norm() / cpu.norm()) < tol


@pytest.mark.needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_graph_gives_the_eager_features(processed, tmp_path, precision):
    """4 frames per forward over 10-frame clips: videos straddle forwards, so a graph output
    buffer overwritten by the next replay before its rows were taken would show here."""
    torch.manual_seed(0)
    model = get_backbone("efficientnet_v2_s", weights=None)
    got = {}
    for graph in (False, True):
        cfg = ExtractConfig(device="cuda", precision=precision, batch_size=4, weights=None, cuda_graph=graph)
        extract(processed, tmp_path / str(graph), cfg, model=model, console=Console(quiet=True))
        with h5py.File(tmp_path / str(graph) / "train_features_multiscale.h5") as h5:
            got[graph] = (h5["features"][()], bool(h5.attrs["cuda_graph"]))
    assert got[True][1] and not got[False][1]
    eager, graphed = torch.from_numpy(got[False][0]), torch.from_numpy(got[True][0])
    assert eager.abs().sum() > 0
    assert ((graphed - eager).norm() / eager.norm()) < 1e-5


def test_cuda_graph_is_a_no_op_off_cuda(processed, tmp_path):
    torch.manual_seed(0)
    model = get_backbone("efficientnet_v2_s", weights=None)
    got = []
    for graph in (False, True):
        cfg = ExtractConfig(device="cpu", batch_size=4, weights=None, cuda_graph=graph, splits=("val",))
        extract(processed, tmp_path / str(graph), cfg, model=model, console=Console(quiet=True))
        with h5py.File(tmp_path / str(graph) / "val_features_multiscale.h5") as h5:
            got.append((h5["features"][()], h5.attrs["cuda_graph"]))
    assert not got[1][1] and not got[0][1]
    np.testing.assert_array_equal(got[0][0], got[1][0])


def test_bf16_features_record_the_layers_cast_once(processed, tmp_path):
    torch.manual_seed(0)
    cfg = ExtractConfig(device="cpu", precision="bf16", weights=None, splits=("val",))
    extract(processed, tmp_path / "f", cfg, model=get_backbone("efficientnet_v2_s", weights=None), console=Console(quiet=True))
    with h5py.File(tmp_path / "f" / "val_features_multiscale.h5") as h5:
        assert h5.attrs["precision"] == "bf16" and h5.attrs["weights_cast_once"] == 170


def test_reduced_precision_warns_only_without_native_cpu_support(tmp_path):
    from vcp.common.devices import cpu_flags, slow_precision_warning

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(str(info)) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) is None

    assert slow_precision_warning("bf16", "cpu", {"avx2", "avx512f"}).startswith("--precision bf16 on a CPU without avx512_bf16/amx_bf16")
    assert slow_precision_warning("bf16", "cpu", {"avx512f", "avx512_bf16"}) is None
    assert slow_precision_warning("bf16", "cpu", {"amx_bf16"}) is None
    assert slow_precision_warning("fp16", "cpu", {"avx512_bf16"}) is not None
    assert slow_precision_warning("fp32", "cpu", set()) is None
    assert slow_precision_warning("bf16", "cuda:0", set()) is None


@pytest.mark.parametrize("storage", ["float32", "uint8"])
def test_clip_reader_reads_each_clip_from_its_place_in_the_archive(tmp_path, videos, storage):
    """The CUDA read path (pread into pinned memory; plain memory without CUDA) gives the
    exact bytes of the memory-mapped clips, in any order."""
    from vcp.store.pt_reader import ClipReader, open_tensor_file

    raw = tmp_path / "raw"
    for i, n in enumerate((12, 30, 7)):
        videos.copy_to(raw / f"train/c/s/v{i}.mp4", codec="h264", num_frames=n)
    out = tmp_path / "out"
    tensorize(raw, out, TensorizeConfig.from_options(frames=6, size=16, storage=storage), console=Console(quiet=True))
    tf = open_tensor_file(out / "train/c/s" / PT_NAME)
    with ClipReader(True) as reader:
        got = {i: reader.submit(tf, i).result() for i in (2, 0, 1)}
    for i, clip in got.items():
        assert clip.dtype == tf.data["videos"].dtype and torch.equal(clip, tf.data["videos"][i])
    with ClipReader(False) as reader:  # the CPU path: the memory-mapped view itself
        assert torch.equal(reader.submit(tf, 1), tf.data["videos"][1])


def test_host_stays_a_bounded_number_of_forwards_ahead_of_the_card():
    """On CUDA each forward's end is marked and the host waits for the forward
    ``queued_forwards`` back before going on, so clips in flight are bounded whatever the
    network. Watched on the CPU with stand-in events that log what is waited for."""
    from vcp.stages.packing import PackedEncoder

    log = []

    class Marker:
        made = 0

        def __init__(self):
            self.id, Marker.made = Marker.made, Marker.made + 1

        def record(self):
            log.append(("record", self.id))

        def synchronize(self):
            log.append(("wait", self.id))

    class Logged(torch.nn.Module):
        feature_dim = 4

        def forward(self, x):
            log.append(("forward", x.shape[0]))
            return x.mean(dim=(2, 3)).repeat(1, 2)[:, :4]

    cfg = ExtractConfig(fuse_conv_bn=False, batch_size=8)
    packer = PackedEncoder(FrameEncoder(Logged(), cfg), 8, lambda f: f, queued_forwards=2, event=Marker)
    videos = [torch.randn(12, 3, 4, 4) for _ in range(4)]  # 48 frames: 6 forwards of 8
    got = [k for i, v in enumerate(videos) for k, _ in packer.put(i, v, IMAGENET)]
    got += [k for k, _ in packer.finish()]
    assert got == [0, 1, 2, 3]
    assert log == [
        ("forward", 8), ("record", 0), ("forward", 8), ("record", 1), ("forward", 8), ("record", 2), ("wait", 0),
        ("forward", 8), ("record", 3), ("wait", 1), ("forward", 8), ("record", 4), ("wait", 2),
        ("forward", 8), ("record", 5), ("wait", 3),
    ]


def test_the_network_is_traced_only_where_it_pays():
    """conv+BN folding needs BatchNorm; bf16/fp16 weights cast once need the traced copy; a ViT
    in fp32 has neither and runs as built (tracing it was start-up for nothing)."""
    from backbones import get_backbone

    vit = get_backbone("timm/vit_tiny_patch16_224", weights=None)
    resnet = get_backbone("timm/resnet18", weights=None)
    assert FrameEncoder(vit, ExtractConfig(backbone="timm/vit_tiny_patch16_224")).net is vit
    assert isinstance(FrameEncoder(vit, ExtractConfig(backbone="timm/vit_tiny_patch16_224", precision="bf16")).net,
                      torch.fx.GraphModule)
    folded = FrameEncoder(resnet, ExtractConfig(backbone="timm/resnet18")).net
    assert isinstance(folded, torch.fx.GraphModule) and not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())


def test_bf16_is_suggested_in_one_line_only_where_it_was_measured_to_pay():
    from backbones import get_backbone
    from vcp.common.precision import MEASURED, bf16_hint, family_of

    resnet, vit = get_backbone("timm/resnet18", weights=None), get_backbone("timm/vit_tiny_patch16_224", weights=None)
    effnet = get_backbone("timm/efficientnet_b0", weights=None)
    assert [family_of(m) for m in (effnet, resnet, vit)] == ["depthwise CNN", "ResNet", "ViT"]
    amx = {"avx512f", "avx512_bf16", "amx_bf16"}
    hint = bf16_hint("fp32", "cpu", resnet, flags=amx)
    (low, high), diff = MEASURED["ResNet"]
    assert hint.count("\n") == 0 and f"{low:.2f}-{high:.2f}x" in hint and f"{diff:.0e}" in hint and "--precision bf16" in hint
    assert bf16_hint("bf16", "cpu", resnet, flags=amx) is None  # already asked for
    assert bf16_hint("fp32", "cpu", resnet, flags={"avx512f"}) is None  # emulated here: slower
    assert bf16_hint("fp32", "cpu", resnet, flags={"avx512_bf16"}) is None  # native, but not measured without AMX
    assert bf16_hint("fp32", "cpu", torch.nn.Linear(3, 3), flags=amx) is None  # no family measured


def test_a_model_vcp_owns_lets_its_unfolded_weights_go_and_one_it_was_given_is_left_alone():
    import gc
    import weakref

    from backbones import get_backbone

    given = get_backbone("timm/resnet18", weights=None)
    conv = given.net.conv1
    FrameEncoder(given, ExtractConfig(backbone="timm/resnet18"))
    assert given.net.conv1 is conv  # the caller's model: unchanged
    owned = get_backbone("timm/resnet18", weights=None)
    owned.load_state_dict(given.state_dict())  # the same weights
    gone = weakref.ref(owned.net.conv1)
    enc = FrameEncoder(owned, ExtractConfig(backbone="timm/resnet18"), owned=True)
    gc.collect()
    assert gone() is None and owned.net is enc.net  # the unfolded convolution is freed; the wrapper runs the folded copy
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(enc.forward(x), given(x), rtol=1e-4, atol=1e-4)  # the same network, folded
