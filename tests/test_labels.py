"""Labels are never silently wrong: the class list is part of every fingerprint, a missing
video is that video's error, and a run that cannot fit says which ways do."""

from __future__ import annotations

import json

import h5py
import pytest
from typer.testing import CliRunner

from vcp.cli import app
from vcp.inputs.synth_datasets import UCF_CLASSES, make_ucf101

runner = CliRunner()
TZ = ["-T", "4", "--size", "32"]
BB = ["--backbone", "timm/resnet18", "--weights", "none", "--device", "cpu", "--no-multi-scale", "--recipe", "stored"]


def _ok(args, code: int = 0):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == code, r.output
    return r


def _labels(path):
    with h5py.File(path) as h5:
        return h5["labels"][:].tolist(), json.loads(h5.attrs["classes"])


@pytest.fixture
def raw(tmp_path, videos):
    for split, cat in (("train", "cat"), ("train", "dog"), ("val", "cat")):
        videos.copy_to(tmp_path / "raw" / split / cat / f"{split}_{cat}.mp4", codec="mjpeg", num_frames=6)
    return tmp_path / "raw"


def test_a_new_numbering_redoes_features_from_videos(tmp_path, raw):
    _ok(["extract", "--from-videos", raw, tmp_path / "f", *TZ, *BB])
    assert _labels(tmp_path / "f/val_features.h5") == ([0], ["cat", "dog"])
    (tmp_path / "classes.txt").write_text("dog\ncat\n")
    r = _ok(["extract", "--from-videos", raw, tmp_path / "f", *TZ, *BB, "--classes", tmp_path / "classes.txt"])
    assert "up to date" not in r.output
    assert _labels(tmp_path / "f/val_features.h5") == ([1], ["dog", "cat"])  # val renumbered too, not kept stale
    assert _labels(tmp_path / "f/train_features.h5") == ([1, 0], ["dog", "cat"])
    r = _ok(["extract", "--from-videos", raw, tmp_path / "f", *TZ, *BB, "--classes", tmp_path / "classes.txt"])
    assert r.output.count("up to date") == 2
    # a class added to train only changes every split's list, val included
    (raw / "train/emu").mkdir()
    (raw / "train/emu/e.mp4").write_bytes((raw / "train/cat/train_cat.mp4").read_bytes())
    _ok(["extract", "--from-videos", raw, tmp_path / "f", *TZ, *BB])
    assert _labels(tmp_path / "f/val_features.h5") == ([0], ["cat", "dog", "emu"])


def test_a_new_numbering_redoes_tensors_and_a_manifest_index_change_too(tmp_path):
    videos, splits = make_ucf101(tmp_path / "u")
    _ok(["manifest", "ucf101", videos, splits, "-o", tmp_path / "m.csv"])
    _ok(["tensorize", "--manifest", tmp_path / "m.csv", "--root", videos, tmp_path / "out", *TZ, "--mode", "cpu"])
    meta = json.loads((tmp_path / "out/test/YoYo/YoYo/metadata.json").read_text())
    assert (meta["label"], meta["classes"]) == (2, list(UCF_CLASSES))
    # the index column and the class list renumbered together: every group is redone
    text = (tmp_path / "m.csv").read_text().replace(",YoYo,2", ",YoYo,0").replace(",ApplyEyeMakeup,0", ",ApplyEyeMakeup,2")
    (tmp_path / "m.csv").write_text(text)
    (tmp_path / "m.classes.json").write_text(json.dumps(["YoYo", "Basketball", "ApplyEyeMakeup"]))
    _ok(["tensorize", "--manifest", tmp_path / "m.csv", "--root", videos, tmp_path / "out", *TZ, "--mode", "cpu"])
    meta = json.loads((tmp_path / "out/test/Basketball/Basketball/metadata.json").read_text())
    assert (meta["label"], meta["category_mapping"]) == (1, {"YoYo": 0, "Basketball": 1, "ApplyEyeMakeup": 2})
    # a class list that contradicts the index column is refused before any work
    (tmp_path / "m.classes.json").write_text(json.dumps(list(UCF_CLASSES)))
    r = _ok(["tensorize", "--manifest", tmp_path / "m.csv", "--root", videos, tmp_path / "out", *TZ], code=2)
    assert "has index 2 here but index 0 in --classes" in " ".join(r.output.split())


def test_a_missing_video_in_a_manifest_is_that_videos_error(tmp_path):
    videos, splits = make_ucf101(tmp_path / "u")
    _ok(["manifest", "ucf101", videos, splits, "-o", tmp_path / "m.csv"])
    (videos / "YoYo/v_YoYo_g08_c01.avi").unlink()
    m = ["--manifest", tmp_path / "m.csv", "--root", videos]
    assert "train/YoYo/YoYo" in _ok(["tensorize", *m, tmp_path / "out", *TZ, "--dry-run"]).output
    r = _ok(["extract", "--from-videos", *m, tmp_path / "f", *TZ, *BB], code=3)
    assert "v_YoYo_g08_c01.avi" in r.output
    with h5py.File(tmp_path / "f/train_features.h5") as h5:
        assert [p.decode() for p in h5["paths"][:]][-1] == "YoYo/v_YoYo_g09_c01.avi" and h5["labels"].shape == (5,)
    r = _ok(["tensorize", *m, tmp_path / "out", *TZ, "--mode", "cpu"], code=3)
    assert "v_YoYo_g08_c01.avi" in r.output


def test_a_run_that_cannot_fit_names_the_ways_that_do(tmp_path, monkeypatch):
    import vcp.stages.space as space

    videos, splits = make_ucf101(tmp_path / "u")
    _ok(["manifest", "ucf101", videos, splits, "-o", tmp_path / "m.csv"])
    monkeypatch.setattr(space, "free_bytes", lambda path: 3 << 20)  # 3 MiB free; float32 T=16 at 64² needs 7.1 MiB
    args = ["tensorize", "--manifest", tmp_path / "m.csv", "--root", videos, tmp_path / "new/out", "-T", "16", "--size", "64"]
    plan = " ".join(_ok([*args, "--dry-run"]).output.split())
    assert "THIS RUN WOULD NOT FIT" in plan and "ways that fit: --storage uint8 (about 2.1 MiB)" in plan
    r = " ".join(_ok(args, code=2).output.split())
    assert "will write about 7.1 MiB; ways that fit: --storage uint8 (about 2.1 MiB), vcp extract --from-videos" in r
    assert "--size" not in r.split("ways that fit:")[1].split(";")[0]  # a way that does not fit is not offered
    assert not (tmp_path / "new/out").exists()  # a refused run leaves no folder it made
    _ok([*args, "--storage", "uint8", "--mode", "cpu"])


@pytest.mark.parametrize("command", ["tensorize", "extract"])
def test_a_wrong_root_fails_before_torch_loads(tmp_path, command):
    """Every row is checked against --root before the backbone (or torch) is loaded."""
    import subprocess
    import sys

    videos, splits = make_ucf101(tmp_path / "u")
    _ok(["manifest", "ucf101", videos, splits, "-o", tmp_path / "m.csv"])
    args = [command, *(["--from-videos"] if command == "extract" else []), "--manifest", str(tmp_path / "m.csv"),
            "--root", str(tmp_path / "u"), str(tmp_path / "out")]
    code = ("import sys\nfrom vcp.cli import app\ntry:\n    app(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print('exit', e.code, 'torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "exit 2 False", r.stdout + r.stderr
    assert "none of the 9 paths" in r.stderr and "paths are relative to --root" in r.stderr


def test_the_dry_run_folds_long_class_names_and_keeps_the_numbers_whole(tmp_path, videos, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    videos.copy_to(tmp_path / "a.mp4", codec="mjpeg", num_frames=4)
    label = "very long class name with [brackets] and spaces " * 4
    (tmp_path / "m.csv").write_text(f"split,path,label\ntrain,a.mp4,{label.strip()}\n")
    lines = _ok(["tensorize", "--manifest", tmp_path / "m.csv", tmp_path / "out", "--dry-run"]).output.splitlines()
    assert max(len(line) for line in lines) <= 100
    header = next(line for line in lines if "group" in line)
    assert all(col in header for col in ("videos", "up to date", "to do"))
    row = next(line for line in lines if "train/very long" in line)
    assert [c.strip() for c in row.split("│")[2:5]] == ["1", "0", "1"]


def test_local_names_that_look_like_protocols_are_read_as_files(tmp_path, videos, monkeypatch):
    """RAW given as ``.`` with split folders named ``pipe:`` and ``http:``: FFmpeg is handed
    absolute paths, never a bare ``pipe:...`` it would read as a protocol."""
    raw = tmp_path / "raw"
    for split in ("http:", "pipe:"):
        videos.copy_to(raw / split / "cat" / "v.mp4", codec="h264", num_frames=6)  # H.264 on the CPU: PyAV
    monkeypatch.chdir(raw)
    r = _ok(["tensorize", ".", tmp_path / "out", "-T", "2", "--size", "16", "--mode", "cpu"])
    assert "failed" not in r.output.split("┃")[0]
    for split in ("http:", "pipe:"):
        meta = json.loads((tmp_path / "out" / split / "cat/cat/metadata.json").read_text())
        assert meta["failed"] == [] and meta["videos"][0]["path"] == f"{split}/cat/v.mp4"
