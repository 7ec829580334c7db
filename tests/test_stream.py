"""Streaming (`--from-videos`) and uint8/float16 storage equal the float32 two-stage path."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vcp.cli import app
from vcp.stages.tensorize import TensorizeConfig
from vcp.store.contract import PT_NAME

runner = CliRunner()
SAMPLING = ["--frames", "8", "--size", "32", "--strategy", "segment", "--strategy-for", "a=center", "--clip-duration", "1"]
BACKBONE = ["--backbone", "timm/resnet18", "--weights", "none", "--device", "cpu", "--batch-size", "5", "--recipe", "stored"]


@pytest.fixture
def raw(tmp_path, videos):
    r = tmp_path / "raw"
    videos.copy_to(r / "train/zebra/a/one.mp4", codec="h264", num_frames=60)
    videos.copy_to(r / "train/zebra/a/two.webm", codec="vp9", num_frames=30)
    videos.copy_to(r / "train/zebra/a/bad.mp4", codec="h264", num_frames=5)
    (r / "train/zebra/a/bad.mp4").write_bytes(b"\x00" * 100)
    videos.copy_to(r / "train/apple/three.avi", codec="mjpeg", num_frames=12)
    videos.copy_to(r / "val/apple/four.mkv", codec="hevc", num_frames=25)
    return r


def read(path):
    with h5py.File(path, "r") as h5:
        return {k: h5[k][:] for k in h5} | {"attrs": dict(h5.attrs)}


def two_stage(raw, tmp_path, storage="float32"):
    processed, features = tmp_path / f"p_{storage}", tmp_path / f"f_{storage}"
    r = runner.invoke(app, ["tensorize", str(raw), str(processed), *SAMPLING, "--mode", "cpu", "--storage", storage])
    assert r.exit_code == 3, r.output
    torch.manual_seed(0)
    r = runner.invoke(app, ["extract", str(processed), str(features), *BACKBONE])
    assert r.exit_code == 0, r.output
    return processed, features


@pytest.mark.parametrize("prefetch", [[], ["--prefetch", "2"]], ids=["in-line", "prefetch-thread"])
def test_streaming_equals_tensorize_then_extract(raw, tmp_path, prefetch):
    _, features = two_stage(raw, tmp_path)
    torch.manual_seed(0)  # same random-init weights
    streamed = tmp_path / "s"
    r = runner.invoke(app, ["extract", "--from-videos", str(raw), str(streamed), *BACKBONE, *SAMPLING, *prefetch])
    assert r.exit_code == 3, r.output  # bad.mp4 reported, the rest written
    assert "train/zebra/a/bad.mp4: " in r.stderr
    for split in ("train", "val"):
        a = read(features / f"{split}_features_multiscale.h5")
        b = read(streamed / f"{split}_features_multiscale.h5")
        for key in ("labels", "num_frames", "filenames"):
            assert np.array_equal(a[key], b[key]), key
        assert a["features"].shape == b["features"].shape
        rel = np.abs(a["features"] - b["features"]).max() / np.abs(a["features"]).max()
        assert rel <= 1e-5, rel
        assert a["attrs"]["category_mapping"] == b["attrs"]["category_mapping"]
    assert "bad.mp4" in read(streamed / "train_features_multiscale.h5")["attrs"]["failed_files"]


@pytest.mark.parametrize("storage", ["uint8", "float16"])
def test_compact_storage_gives_the_same_features(raw, tmp_path, storage):
    p32, f32 = two_stage(raw, tmp_path)
    p, f = two_stage(raw, tmp_path, storage)
    small = torch.load(p / "train/zebra/a" / PT_NAME, weights_only=True)["videos"]
    full = torch.load(p32 / "train/zebra/a" / PT_NAME, weights_only=True)["videos"]
    assert small.dtype == getattr(torch, storage) and small.shape == full.shape
    assert (p / "train/zebra/a" / PT_NAME).stat().st_size < (p32 / "train/zebra/a" / PT_NAME).stat().st_size / (3.5 if storage == "uint8" else 1.8)
    a, b = read(f32 / "train_features_multiscale.h5"), read(f / "train_features_multiscale.h5")
    assert np.array_equal(a["filenames"], b["filenames"])
    rel = np.linalg.norm(a["features"] - b["features"]) / np.linalg.norm(a["features"])
    assert rel < 5e-3, rel  # uint8 rounding of pixels (<= 0.5/255) and fp16 rounding only


def test_prefetch_depth_defaults_and_override(raw, tmp_path, monkeypatch):
    """In line on the CPU (decode and backbone would share the cores), a thread on CUDA,
    1 ahead in tensorize; --prefetch N wins everywhere."""
    from dali_pipes import ClipLoader

    depths = []
    real = ClipLoader.load

    def recording(self, items, spec, *, ahead=0):
        depths.append(ahead)
        return real(self, items, spec, ahead=ahead)

    monkeypatch.setattr(ClipLoader, "load", recording)
    cases = [
        (["extract", "--from-videos", str(raw), str(tmp_path / "s0"), *BACKBONE, *SAMPLING], 0),
        (["extract", "--from-videos", str(raw), str(tmp_path / "s3"), *BACKBONE, *SAMPLING, "--prefetch", "3"], 3),
        (["tensorize", str(raw), str(tmp_path / "p1"), *SAMPLING, "--mode", "cpu"], 1),
        (["tensorize", str(raw), str(tmp_path / "p0"), *SAMPLING, "--mode", "cpu", "--prefetch", "0"], 0),
    ]
    for args, expected in cases:
        depths.clear()
        r = runner.invoke(app, args)
        assert r.exit_code == 3, r.output
        assert depths and set(depths) == {expected}, (args, depths)
    assert TensorizeConfig().decode.prefetch_depth(default=2) == 2 and TensorizeConfig.from_options(prefetch=0).decode.prefetch_depth(default=2) == 0


def test_probe_processes_hold_no_output_once_a_run_returns(raw, tmp_path, monkeypatch):
    """On a GPU files are probed in forked processes, and a forked child keeps the files
    open in the parent at the time, flock locks included. They were forked at the first
    batch, with the HDF5 (or .pt) being written and the output lock held: after the run,
    opening the features in the same process failed ("unable to lock file", seen on an
    H100) until the loader was garbage collected. Forced here on the CPU."""
    import multiprocessing

    from rich.console import Console

    from dali_pipes import ClipLoader
    from vcp.stages.settings import ExtractConfig
    from vcp.stages.stream import extract_from_videos
    from vcp.stages.tensorize import tensorize

    real_init = ClipLoader.__init__

    def with_probe_processes(self, *args, **kwargs):
        real_init(self, *args, **{**kwargs, "probe_workers": 2})

    monkeypatch.setattr(ClipLoader, "__init__", with_probe_processes)
    quiet = Console(quiet=True)
    config = TensorizeConfig.from_options(frames=8, size=32, mode="cpu")
    extract_config = ExtractConfig(backbone="timm/resnet18", weights=None, device="cpu", batch_size=5, recipe="stored")
    for run in range(2):  # the second run takes the same output lock again
        tensorize(raw, tmp_path / "p", config, console=quiet)
        assert not multiprocessing.active_children()
        assert torch.load(tmp_path / "p/val/apple/apple" / PT_NAME, weights_only=True)["videos"].shape[0] == 1
        extract_from_videos(raw, tmp_path / "f", extract_config, config.clip, config.decode, console=quiet)
        assert not multiprocessing.active_children()
        with h5py.File(tmp_path / "f/train_features_multiscale.h5", "r") as h5:  # raised BlockingIOError
            assert h5["features"].shape[0] == 3, run
