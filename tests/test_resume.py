"""A long job stopped part way (SIGTERM at Slurm's time limit, Ctrl-C, kill -9) resumes
where it stopped, and its outputs equal an uninterrupted run's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vcp.cli import app
from vcp.stages import features as features_module
from vcp.stages import interrupt
from vcp.store.contract import PT_NAME

runner = CliRunner()
TZ = ["--frames", "8", "--size", "32", "--mode", "cpu"]
BB = ["--backbone", "timm/resnet18", "--weights", "none", "--device", "cpu", "--recipe", "stored"]
DATASETS = ("features", "labels", "num_frames", "filenames", "fps", "frame_indices", "frame_times")


def same_features(a: Path, b: Path, datasets=DATASETS) -> None:
    with h5py.File(a) as x, h5py.File(b) as y:
        for name in datasets:
            assert name in x and name in y, name
            assert np.array_equal(x[name][:], y[name][:], equal_nan=x[name].dtype.kind == "f"), name
        assert x.attrs["failed_files"] == y.attrs["failed_files"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory, videos):
    raw = tmp_path_factory.mktemp("resume") / "raw"
    for k in range(5):
        videos.copy_to(raw / f"train/apple/a{k}.mp4", codec="h264", num_frames=12 + k)
        videos.copy_to(raw / f"train/zebra/z{k}.webm", codec="vp9", num_frames=12 + k)
    (raw / "train/apple/a2_broken.mp4").write_bytes(b"not a video at all" * 100)
    return raw


@pytest.fixture(scope="module")
def processed(raw):
    out = raw.parent / "processed"
    assert runner.invoke(app, ["tensorize", str(raw), str(out), *TZ]).exit_code == 3  # one broken video
    return out


def stop_on_call(monkeypatch, module, call: int) -> None:
    """Ask the run to stop (as SIGTERM would) when ``module`` looks for the ``call``-th time."""
    count = {"n": 0}
    real = interrupt.stop_requested

    def looking():
        count["n"] += 1
        if count["n"] == call:
            interrupt.request_stop(signal.SIGTERM)
        return real()

    monkeypatch.setattr(module, "stop_requested", looking)


def stop_at(monkeypatch, call: int) -> None:
    """Ask extract to stop when its sink looks for the ``call``-th time."""
    stop_on_call(monkeypatch, features_module, call)


@pytest.mark.parametrize("source", ["pt", "videos"])
def test_a_stopped_extract_resumes_and_equals_an_uninterrupted_run(raw, processed, tmp_path, monkeypatch, source):
    args = ["--from-videos", str(raw)] if source == "videos" else [str(processed)]
    reference, resumed = tmp_path / "ref", tmp_path / "res"
    expected = 3 if source == "videos" else 0  # the broken video fails here (pt: it failed in tensorize)
    assert runner.invoke(app, ["extract", *args, str(reference), *BB, *TZ[:4]]).exit_code == expected
    stop_at(monkeypatch, 4)
    r = runner.invoke(app, ["extract", *args, str(resumed), *BB, *TZ[:4]])
    assert r.exit_code == 143, r.output
    assert "stopped by SIGTERM" in r.stderr and not (resumed / "train_features_multiscale.h5").exists()
    assert list((resumed / ".resume").glob("*.seg-*.h5"))
    monkeypatch.undo()
    r = runner.invoke(app, ["extract", *args, str(resumed), *BB, *TZ[:4]])
    assert r.exit_code == expected, r.output
    # the videos' order holds the broken file (its 3rd input): a failure, no row
    done, total = (4, 10) if source == "pt" else (3, 11)
    assert f"resuming train: {done} of {total} videos already written" in r.stderr, r.stderr
    same_features(reference / "train_features_multiscale.h5", resumed / "train_features_multiscale.h5")
    assert not (resumed / ".resume").exists()


def test_a_rejected_group_and_a_sharded_rank_resume_too(processed, tmp_path, monkeypatch):
    tree = tmp_path / "p"
    shutil.copytree(processed, tree)
    data = torch.load(tree / "train/apple/apple" / PT_NAME, weights_only=True)
    data["videos"][3, 0, 0, 0, 0] = float("nan")  # the 4th clip of the first group: the group is taken back
    torch.save(data, tree / "train/apple/apple" / PT_NAME)
    (tree / "train/apple/apple/metadata.json").unlink()
    reference, resumed = tmp_path / "ref", tmp_path / "res"
    assert runner.invoke(app, ["extract", str(tree), str(reference), *BB]).exit_code == 3
    stop_at(monkeypatch, 6)  # after the group was rejected
    assert runner.invoke(app, ["extract", str(tree), str(resumed), *BB]).exit_code == 143
    monkeypatch.undo()
    r = runner.invoke(app, ["extract", str(tree), str(resumed), *BB])
    assert r.exit_code == 3 and "resuming train: 1 of 10 videos" in r.stderr, r.output
    same_features(reference / "train_features_multiscale.h5", resumed / "train_features_multiscale.h5")
    # each rank of a sharded run resumes its own part
    sharded = tmp_path / "sharded"
    stop_at(monkeypatch, 2)
    assert runner.invoke(app, ["extract", str(tree), str(sharded), *BB, "--shard", "0/2"]).exit_code == 143
    monkeypatch.undo()
    r = runner.invoke(app, ["extract", str(tree), str(sharded), *BB, "--shard", "0/2"])
    assert r.exit_code == 3 and "resuming train [shard 0/2]: 2 of 5" in r.stderr, r.output  # its group holds the NaN clip
    assert runner.invoke(app, ["extract", str(tree), str(sharded), *BB, "--shard", "1/2"]).exit_code == 0
    assert runner.invoke(app, ["merge", str(sharded)]).exit_code == 0
    same_features(reference / "train_features_multiscale.h5", sharded / "train_features_multiscale.h5")


def _vcp(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "vcp", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})


def _wait_for(pattern_dir: Path, proc, timeout=120.0) -> None:
    deadline = time.monotonic() + timeout
    while not list(pattern_dir.glob(".resume/*.seg-*.h5")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint was committed"
        time.sleep(0.05)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_real_signal_then_a_rerun(raw, processed, tmp_path, how):
    reference, resumed = tmp_path / "ref", tmp_path / "res"
    assert runner.invoke(app, ["extract", str(processed), str(reference), *BB, "--batch-size", "1"]).exit_code == 0
    proc = _vcp("extract", str(processed), str(resumed), *BB, "--batch-size", "1", env={"VCP_CHECKPOINT_SECONDS": "0"})
    _wait_for(resumed, proc)
    proc.send_signal(how)
    out, err = proc.communicate(timeout=60)
    if how == signal.SIGTERM:
        assert proc.returncode == 143 and "stopped by SIGTERM" in err, err
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not (resumed / "train_features_multiscale.h5").exists()
    r = runner.invoke(app, ["extract", str(processed), str(resumed), *BB, "--batch-size", "1"])
    assert r.exit_code == 0 and "resuming train:" in r.stderr, r.output
    same_features(reference / "train_features_multiscale.h5", resumed / "train_features_multiscale.h5")


def test_a_stopped_tensorize_resumes_its_group_and_writes_the_same_archive(raw, tmp_path, monkeypatch):
    from vcp.stages import tensorize as tensorize_module

    reference, resumed = tmp_path / "ref", tmp_path / "res"
    args = [*TZ, "--max-batch", "2"]
    assert runner.invoke(app, ["tensorize", str(raw), str(reference), *args]).exit_code == 3
    stop_on_call(monkeypatch, tensorize_module, 2)  # the 2nd batch of the first group: 4 of its 6 inputs handled
    r = runner.invoke(app, ["tensorize", str(raw), str(resumed), *args])
    assert r.exit_code == 143 and "stopped by SIGTERM" in r.stderr, r.output
    group = resumed / "train/apple/apple"
    assert not (group / PT_NAME).exists() and (group / f".{PT_NAME}.resume.json").is_file()
    monkeypatch.undo()
    r = runner.invoke(app, ["tensorize", str(raw), str(resumed), *args])
    assert r.exit_code == 3, r.output
    assert "resuming train/apple/apple: 4 of 6 videos already written" in r.stderr, r.stderr
    for name in ("train/apple/apple", "train/zebra/zebra"):
        a = torch.load(reference / name / PT_NAME, weights_only=True)
        b = torch.load(resumed / name / PT_NAME, weights_only=True)
        assert torch.equal(a["videos"], b["videos"]) and torch.equal(a["labels"], b["labels"])
        assert a["filenames"] == b["filenames"]
        # identical inputs, identical bytes: the archive of a resumed group included
        assert (reference / name / PT_NAME).read_bytes() == (resumed / name / PT_NAME).read_bytes()
    meta = [json.loads((d / "train/apple/apple/metadata.json").read_text()) for d in (reference, resumed)]
    assert meta[0]["videos"] == meta[1]["videos"] and meta[0]["failed"] == meta[1]["failed"]
    assert not list(resumed.rglob(f".{PT_NAME}.resume*")) and not list(resumed.rglob("*.tmp"))


def test_identical_inputs_give_identical_archive_bytes_across_processes(tmp_path, videos, monkeypatch):
    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/cat/v.mp4", codec="h264", num_frames=12)
    videos.copy_to(raw / "train/cat/w.webm", codec="vp9", num_frames=12)
    assert runner.invoke(app, ["tensorize", str(raw), str(tmp_path / "a"), *TZ]).exit_code == 0
    real = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real + 1)  # another process: its temp files are named otherwise
    assert runner.invoke(app, ["tensorize", str(raw), str(tmp_path / "b"), *TZ]).exit_code == 0
    pt = Path("train/cat/cat") / PT_NAME
    assert (tmp_path / "a" / pt).read_bytes() == (tmp_path / "b" / pt).read_bytes()


def test_segments_are_also_cut_by_size(processed, tmp_path, monkeypatch):
    """Rows since the last segment are held in memory: past SEGMENT_BYTES they are committed
    whatever the clock says (a fast card makes ~1 GB of rows in 30 s)."""
    monkeypatch.setenv("VCP_CHECKPOINT_SECONDS", "3600")
    monkeypatch.setattr(features_module, "SEGMENT_BYTES", 1)
    reference, resumed = tmp_path / "ref", tmp_path / "res"
    assert runner.invoke(app, ["extract", str(processed), str(reference), *BB, "--batch-size", "1"]).exit_code == 0
    stop_at(monkeypatch, 5)
    assert runner.invoke(app, ["extract", str(processed), str(resumed), *BB, "--batch-size", "1"]).exit_code == 143
    assert len(list((resumed / ".resume").glob("*.seg-*.h5"))) == 5  # one per row (4), then the stop's: not one per 3600 s
    monkeypatch.setattr(features_module, "stop_requested", interrupt.stop_requested)
    r = runner.invoke(app, ["extract", str(processed), str(resumed), *BB, "--batch-size", "1"])
    assert r.exit_code == 0 and "resuming train:" in r.stderr, r.output
    same_features(reference / "train_features_multiscale.h5", resumed / "train_features_multiscale.h5")


def test_no_hard_links_means_no_checkpoints_not_a_failed_run(raw, tmp_path, monkeypatch):
    def refused(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setenv("VCP_CHECKPOINT_SECONDS", "0")
    monkeypatch.setattr(os, "link", refused)
    r = runner.invoke(app, ["tensorize", str(raw), str(tmp_path / "o"), *TZ, "--max-batch", "2"])
    assert r.exit_code == 3, r.output  # the broken video only
    assert "no checkpoints (Operation not permitted): a stopped run will redo this group" in r.stderr
    assert torch.load(tmp_path / "o/train/apple/apple" / PT_NAME, weights_only=True)["videos"].shape[0] == 5


@pytest.mark.parametrize("views", [1, 3])
def test_a_checkpoint_before_any_row_is_committed_and_resumed(tmp_path, views):
    """A long video (a clip backbone's hundreds of windows) can take longer than a checkpoint
    interval before its row arrives: a segment of no rows is committed, and resumes."""
    from vcp.store.h5_writer import H5Writer

    prefix = tmp_path / ".resume" / "train_features.h5.abc"
    kwargs = dict(max_frames=4, feature_dim=3, category_mapping={"a": 0}, multi_scale=False, views=views, segments=prefix)
    row = np.arange(4 * views * 3, dtype=np.float32).reshape((4, 3) if views == 1 else (4, views, 3))
    with H5Writer(tmp_path / "train_features.h5", **kwargs) as w:
        w.checkpoint({"next_order": 0})  # nothing written yet
        w.add(row, label=0, filename="a/a/x.mp4")
        w.checkpoint({"next_order": 1})
    with H5Writer(tmp_path / "train_features.h5", **kwargs) as w:
        assert w.resumed == {"next_order": 1} and w.rows == 1
        w.commit()
    with h5py.File(tmp_path / "train_features.h5") as h5:
        assert np.array_equal(h5["features"][0], row) and h5["features"].shape == (1, *row.shape)
