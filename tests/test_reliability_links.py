"""Nothing vcp trusts or writes in OUT is followed through a link or taken on faith: a
checkpoint that is a link, a FIFO, a folder, damaged or inconsistent is set aside with one
line and the work redone; OUT's own folders that are links are refused before any work."""

from __future__ import annotations

import json
import os
import shutil

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.test_resume import stop_on_call
from vcp.cli import app
from vcp.store.contract import PT_NAME

runner = CliRunner()
TZ = ["--frames", "8", "--size", "32", "--mode", "cpu", "--max-batch", "2"]
BB = ["--backbone", "timm/resnet18", "--weights", "none", "--device", "cpu", "--recipe", "stored", "--no-multi-scale"]
GROUP = "train/apple/apple"


@pytest.fixture(scope="module")
def raw(tmp_path_factory, videos):
    raw = tmp_path_factory.mktemp("links") / "raw"
    for k in range(5):
        videos.copy_to(raw / f"train/apple/a{k}.mp4", codec="mjpeg", num_frames=10 + k)
    videos.copy_to(raw / "train/zebra/z.mp4", codec="mjpeg", num_frames=9)
    return raw


@pytest.fixture(scope="module")
def reference(raw):
    out = raw.parent / "reference"
    assert runner.invoke(app, ["tensorize", str(raw), str(out), *TZ]).exit_code == 0
    return out


def _stopped_tensorize(raw, out, monkeypatch):
    """A tensorize run stopped in its first group, its checkpoint committed (4 of 5 videos)."""
    from vcp.stages import tensorize as tensorize_module

    stop_on_call(monkeypatch, tensorize_module, 2)
    r = runner.invoke(app, ["tensorize", str(raw), str(out), *TZ])
    assert r.exit_code == 143, r.output
    monkeypatch.undo()
    assert (out / GROUP / f".{PT_NAME}.resume.json").is_file()
    return out / GROUP / f".{PT_NAME}.resume", out / GROUP / f".{PT_NAME}.resume.json"


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the third of five clips: written before the stop
    path.write_bytes(bytes(data))


def _edit_done(meta):
    record = json.loads(meta.read_text())
    record["state"]["done"] = 1  # 4 clips written, 1 handled: cannot be
    meta.write_text(json.dumps(record))


@pytest.mark.parametrize("tamper, why", [
    ("link", "a symbolic link"),
    ("fifo", "not a regular file (a FIFO, socket or device)"),
    ("folder", "a folder, not a file"),
    ("flipped", "its bytes do not match their checksum"),
    ("state", "its progress record does not match its clips"),
    ("names", "it records 2 names for 4 clips"),
])
def test_a_checkpoint_that_cannot_be_trusted_is_set_aside(raw, reference, tmp_path, monkeypatch, tamper, why):
    out = tmp_path / "out"
    link, meta = _stopped_tensorize(raw, out, monkeypatch)
    outside = tmp_path / "someone_elses.pt"
    shutil.copyfile(reference / "train/zebra/zebra" / PT_NAME, outside)
    before = outside.read_bytes()
    if tamper in ("link", "fifo", "folder"):
        link.unlink()
        {"link": lambda: link.symlink_to(outside), "fifo": lambda: os.mkfifo(link), "folder": link.mkdir}[tamper]()
    elif tamper == "flipped":
        _flip(link)
    elif tamper == "state":
        _edit_done(meta)
    else:
        record = json.loads(meta.read_text())
        record["filenames"] = record["filenames"][:2]
        meta.write_text(json.dumps(record))
    r = runner.invoke(app, ["tensorize", str(raw), str(out), *TZ])
    assert r.exit_code == 0, r.output
    assert f"checkpoint set aside ({why}); the group is redone" in " ".join(r.stderr.split())
    assert "resuming" not in r.stderr
    assert outside.read_bytes() == before  # nothing written through the link
    final = out / GROUP / PT_NAME
    assert not final.is_symlink() and final.is_file()
    assert final.read_bytes() == (reference / GROUP / PT_NAME).read_bytes()  # as an uninterrupted run
    assert not list(out.rglob(f".{PT_NAME}.resume*"))


def test_an_intact_checkpoint_still_resumes(raw, reference, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _stopped_tensorize(raw, out, monkeypatch)
    r = runner.invoke(app, ["tensorize", str(raw), str(out), *TZ])
    assert r.exit_code == 0 and "resuming train/apple/apple: 4 of 5 videos already written" in r.stderr
    assert (out / GROUP / PT_NAME).read_bytes() == (reference / GROUP / PT_NAME).read_bytes()


@pytest.mark.parametrize("level", ["train", "train/apple", "train/apple/apple"])
def test_output_folders_that_are_links_are_refused(raw, tmp_path, level):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / level).parent.mkdir(parents=True, exist_ok=True)
    (out / level).symlink_to(elsewhere, target_is_directory=True)
    r = runner.invoke(app, ["tensorize", str(raw), str(out), *TZ])
    assert r.exit_code == 2 and f"OUT folder {out / level} is a symbolic link" in " ".join(r.output.split())
    assert list(elsewhere.iterdir()) == []


def _stopped_extract(raw, reference, features, monkeypatch):
    from vcp.stages import features as features_module

    stop_on_call(monkeypatch, features_module, 4)
    r = runner.invoke(app, ["extract", str(reference), str(features), *BB])
    assert r.exit_code == 143, r.output
    monkeypatch.undo()
    segments = sorted((features / ".resume").glob("*.seg-*.h5"))
    assert segments
    return segments


@pytest.mark.parametrize("tamper", ["fifo", "folder", "chunk"])
def test_a_segment_that_cannot_be_trusted_is_set_aside(raw, reference, tmp_path, monkeypatch, tamper):
    """A FIFO named like a segment never hangs extract; a damaged chunk never reaches the file."""
    clean = tmp_path / "clean"
    assert runner.invoke(app, ["extract", str(reference), str(clean), *BB]).exit_code == 0
    features = tmp_path / "f"
    segment = _stopped_extract(raw, reference, features, monkeypatch)[0]
    if tamper == "chunk":
        with h5py.File(segment, "r+") as seg:
            mask, data = seg["features"].id.read_direct_chunk((0, 0, 0))
            broken = bytearray(data)
            broken[len(broken) // 2] ^= 0xFF
            seg["features"].id.write_direct_chunk((0, 0, 0), bytes(broken), filter_mask=mask)
    else:
        segment.unlink()
        os.mkfifo(segment) if tamper == "fifo" else segment.mkdir()
    r = runner.invoke(app, ["extract", str(reference), str(features), *BB])
    assert r.exit_code == 0, r.output
    assert "segment set aside" in r.stderr
    with h5py.File(features / "train_features.h5") as a, h5py.File(clean / "train_features.h5") as b:
        assert np.array_equal(a["features"][:], b["features"][:]) and a["labels"][:].tolist() == b["labels"][:].tolist()
    assert not (features / ".resume").exists()


def test_torch_reads_what_was_written(reference):
    data = torch.load(reference / GROUP / PT_NAME, weights_only=True)
    assert data["videos"].shape == (5, 8, 3, 32, 32) and data["classes"] == ["apple", "zebra"]


def test_merge_refuses_a_group_folder_that_is_a_link(raw, tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    for i in (0, 1):
        assert runner.invoke(app, ["tensorize", str(raw), str(out), *TZ, "--shard", f"{i}/2"]).exit_code == 0
    shutil.move(out / "train/apple", elsewhere)
    (out / "train/apple").symlink_to(elsewhere, target_is_directory=True)
    before = sorted(p.name for p in elsewhere.rglob("*"))
    r = runner.invoke(app, ["merge", str(out)])
    assert r.exit_code != 0 and f"{out / 'train/apple'} is a symbolic link" in " ".join(r.output.split())
    assert sorted(p.name for p in elsewhere.rglob("*")) == before  # nothing merged into it
