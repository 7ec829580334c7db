"""Sharding: torchrun (gloo, CPU) and --shard by hand give the single-process outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vcp.cli import app
from vcp.inputs.synth import CODECS
from vcp.store.contract import META_NAME, PT_NAME

runner = CliRunner()
TZ = ["--frames", "8", "--size", "32", "--mode", "cpu", "--strategy", "segment"]
RUN_SPECIFIC = {"batch_sizes", "decoder_fallbacks", "elapsed_s", "created_at", "merged_from_shards"}
H5_RUN_SPECIFIC = {"created_at", "merged_from_shards"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory, videos):
    root = tmp_path_factory.mktemp("scale")
    raw = root / "raw"
    for i, (codec, n) in enumerate([("h264", 30), ("vp9", 44), ("mjpeg", 12), ("hevc", 25), ("h264", 9)]):
        videos.copy_to(raw / f"train/zebra/a/v{i}{CODECS[codec][1]}", codec=codec, num_frames=n)
    videos.copy_to(raw / "train/apple/x.webm", codec="vp9", num_frames=20)
    videos.copy_to(raw / "train/apple/y.mp4", codec="h264", num_frames=70)
    (raw / "train/apple/broken.mp4").write_bytes(b"nope" * 10)
    videos.copy_to(raw / "val/apple/z.mkv", codec="hevc", num_frames=15)
    import timm

    torch.manual_seed(0)
    weights = root / "resnet18.pth"
    torch.save(timm.create_model("resnet18", num_classes=1000).state_dict(), weights)
    single = root / "single"
    assert runner.invoke(app, ["tensorize", str(raw), str(single), *TZ]).exit_code == 3
    bb = ["--backbone", "timm/resnet18", "--weights", str(weights), "--device", "cpu", "--recipe", "stored"]
    assert runner.invoke(app, ["extract", str(single), str(root / "f_single"), *bb]).exit_code == 0
    r = runner.invoke(app, ["extract", "--from-videos", str(raw), str(root / "s_single"), *bb, *TZ[:4], "--strategy", "segment"])
    assert r.exit_code == 3, r.output
    return {"root": root, "raw": raw, "single": single, "bb": bb}


def torchrun(*args, cwd):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(29600 + os.getpid() % 300), "-m", "vcp.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def assert_same_tensors(a: Path, b: Path):
    groups = sorted(p.parent.relative_to(a) for p in a.rglob(PT_NAME))
    assert groups == sorted(p.parent.relative_to(b) for p in b.rglob(PT_NAME)) and groups
    assert not list(b.rglob(".parts"))
    for g in groups:
        da, db = (torch.load(x / g / PT_NAME, weights_only=True) for x in (a, b))
        assert torch.equal(da["videos"], db["videos"]) and torch.equal(da["labels"], db["labels"])
        assert da["filenames"] == db["filenames"] and da["category_mapping"] == db["category_mapping"]
        ma, mb = (json.loads((x / g / META_NAME).read_text()) for x in (a, b))
        assert {k: v for k, v in ma.items() if k not in RUN_SPECIFIC} == {k: v for k, v in mb.items() if k not in RUN_SPECIFIC}


def assert_same_features(a: Path, b: Path):
    names = sorted(p.name for p in a.glob("*.h5"))
    assert names == sorted(p.name for p in b.glob("*.h5")) and names
    assert not (b / ".parts").exists()
    for name in names:
        with h5py.File(a / name) as ha, h5py.File(b / name) as hb:
            assert set(ha) == set(hb)
            for key in ("labels", "num_frames"):
                assert ha[key].dtype == hb[key].dtype and ha[key][:].tobytes() == hb[key][:].tobytes(), key
            assert ha["filenames"].dtype == hb["filenames"].dtype
            assert ha["filenames"][:].tolist() == hb["filenames"][:].tolist()
            assert ha["paths"][:].tolist() == hb["paths"][:].tolist()  # merged with their rows
            assert np.array_equal(ha["segments"][:], hb["segments"][:], equal_nan=True)
            fa, fb = ha["features"][:], hb["features"][:]
            assert fa.shape == fb.shape and np.abs(fa - fb).max() <= 1e-6 * np.abs(fa).max()
            attrs_a = {k: str(v) for k, v in ha.attrs.items() if k not in H5_RUN_SPECIFIC}
            attrs_b = {k: str(v) for k, v in hb.attrs.items() if k not in H5_RUN_SPECIFIC}
            assert attrs_a == attrs_b


def test_torchrun_both_stages_equal_single_process(tree):
    root, raw = tree["root"], tree["raw"]
    r = torchrun("tensorize", raw, root / "tr", *TZ, cwd=root)
    # a bad video is data, not a crash: both ranks finish, rank 0 merges and lists it once
    assert r.returncode == 0 and "merged" in r.stderr, r.stderr[-3000:]
    assert "ChildFailedError" not in r.stderr and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("vcp: error:")]
    assert len(errors) == 1 and "broken.mp4" in errors[0], r.stderr[-3000:]
    assert "1 input file(s) failed in this job" in r.stderr
    assert_same_tensors(tree["single"], root / "tr")
    r = torchrun("tensorize", raw, root / "tr_strict", *TZ, "--strict", cwd=root)
    assert r.returncode != 0 and "merged" in r.stderr  # --strict: the launcher sees the failure
    assert_same_tensors(tree["single"], root / "tr_strict")
    r = torchrun("extract", tree["single"], root / "f_tr", *tree["bb"], cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_features(root / "f_single", root / "f_tr")
    r = torchrun("extract", "--from-videos", raw, root / "s_tr", *tree["bb"], *TZ[:4], "--strategy", "segment", cwd=root)
    assert "merged" in r.stderr, r.stderr[-3000:]
    assert_same_features(root / "s_single", root / "s_tr")


def test_shard_by_hand_then_merge(tree, tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-m", "vcp.cli", "tensorize", str(tree["raw"]), str(tmp_path / "o"), *TZ, "--shard", f"{i}/2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert {p.returncode for p in procs} <= {0, 3}, outs
    assert all("vcp merge" in err for _, err in outs)
    assert list((tmp_path / "o").rglob("part-00000-of-00002.pt")) and not list((tmp_path / "o").rglob(PT_NAME))
    r = runner.invoke(app, ["merge", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert_same_tensors(tree["single"], tmp_path / "o")


def test_killed_rank_then_rerun_redoes_only_missing_parts(tree, tmp_path, monkeypatch):
    from vcp.store import pt_writer

    out = tmp_path / "o"
    assert runner.invoke(app, ["tensorize", str(tree["raw"]), str(out), *TZ, "--shard", "0/2"]).exit_code in (0, 3)
    real, calls = pt_writer.fill_storages, {"n": 0}

    def dying(archive, sources):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # rank 1 killed while writing its second part
        return real(archive, sources)

    monkeypatch.setattr(pt_writer, "fill_storages", dying)
    assert runner.invoke(app, ["tensorize", str(tree["raw"]), str(out), *TZ, "--shard", "1/2"]).exit_code != 0
    assert not [p for p in out.rglob("*") if p.is_file() and p.suffix not in (".pt", ".json")]  # no temp left
    before = {p: p.stat().st_mtime_ns for p in out.rglob("part-*")}
    r = runner.invoke(app, ["merge", str(out)])
    assert r.exit_code == 2 and "missing parts [1] of 2" in r.stderr
    monkeypatch.setattr(pt_writer, "fill_storages", real)
    assert runner.invoke(app, ["tensorize", str(tree["raw"]), str(out), *TZ, "--shard", "1/2"]).exit_code in (0, 3)
    after = {p: p.stat().st_mtime_ns for p in out.rglob("part-*")}
    assert all(after[p] == t for p, t in before.items())  # finished parts were not redone
    assert len(after) > len(before)
    assert runner.invoke(app, ["merge", str(out)]).exit_code == 0
    assert_same_tensors(tree["single"], out)


def test_merge_refuses_mismatched_parts(tree, tmp_path):
    out = tmp_path / "o"
    runner.invoke(app, ["tensorize", str(tree["raw"]), str(out), *TZ, "--shard", "0/2"])
    runner.invoke(app, ["tensorize", str(tree["raw"]), str(out), *TZ[:-2], "--strategy", "uniform", "--shard", "1/2"])
    r = runner.invoke(app, ["merge", str(out)])
    assert r.exit_code == 2 and "parts disagree on sampling_strategy" in r.stderr, r.output
    assert not list(out.rglob(PT_NAME))
    feats = tmp_path / "f"
    single = tree["single"]
    runner.invoke(app, ["extract", str(single), str(feats), *tree["bb"], "--shard", "0/2"])
    runner.invoke(app, ["extract", str(single), str(feats), "--backbone", "timm/resnet18", "--weights", "none", "--device", "cpu", "--recipe", "stored", "--shard", "1/2"])
    r = runner.invoke(app, ["merge", str(feats)])
    assert r.exit_code == 2 and "parts disagree on weights" in r.stderr, r.output
    shutil.rmtree(feats)
