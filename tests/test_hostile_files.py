"""Readers meet crafted, damaged and special files: one line naming the file, the other
inputs still served, never a hang, an internal error or an allocation the file does not back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.test_hostile_names import craft_features
from vcp.cli import app
from vcp.data import ClipDataset, FeatureDataset
from vcp.store.contract import PT_NAME
from vcp.store.readers import InputFileError

runner = CliRunner()
TZ = ["--frames", "4", "--size", "32", "--mode", "cpu"]
BB = ["--backbone", "timm/resnet18", "--weights", "none", "--device", "cpu", "--recipe", "stored"]


def errors_of(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("vcp: error:")]


def _edit(path: Path, change) -> Path:
    with h5py.File(path, "a") as h5:
        change(h5)
    return path


def _replace(name, data, **kw):
    def change(h5):
        del h5[name]
        h5.create_dataset(name, data=data, **kw)
    return change


def _huge(h5):  # a small file declaring 2e9 rows it never wrote
    n = 2_000_000_000
    for name in ("features", "labels", "num_frames"):
        del h5[name]
    h5.create_dataset("features", shape=(n, 3, 4), dtype="f4", chunks=(1, 3, 4), compression="gzip")
    h5.create_dataset("labels", shape=(n,), dtype="i8", chunks=(1024,))
    h5.create_dataset("num_frames", shape=(n,), dtype="i4", chunks=(1024,))
    del h5["filenames"]


MALFORMED = {
    "features of strings": _replace("features", np.array([b"a", b"b"])),
    "fps of bytes": lambda h5: h5.create_dataset("fps", data=np.array([b"x", b"y"])),
    "failed_files not JSON": lambda h5: h5.attrs.__setitem__("failed_files", "[oops"),
    "failed_files of 3-tuples": lambda h5: h5.attrs.__setitem__("failed_files", json.dumps([["a", "b", "c"]])),
    "float labels": _replace("labels", np.array([0.5, 0.0])),
    "labels outside the mapping": _replace("labels", np.array([0, 7])),
    "integer filenames": _replace("filenames", np.array([1, 2])),
    "negative num_frames": _replace("num_frames", np.array([-1, 3], np.int32)),
    "short num_frames": _replace("num_frames", np.array([3], np.int32)),
    "category_mapping not JSON": lambda h5: h5.attrs.__setitem__("category_mapping", "{cat: 0"),
    "declares 2e9 rows": _huge,
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_features_file_is_one_line_for_every_reader(tmp_path, case):
    features = tmp_path / "features"
    good = craft_features(features / "train_features.h5", ["cat/sub/a.mp4", "cat/sub/b.mp4"])
    bad = _edit(craft_features(features / "val_features.h5", ["cat/sub/c.mp4", "cat/sub/d.mp4"]), MALFORMED[case])
    assert bad.stat().st_size < 200_000
    r = runner.invoke(app, ["inspect", str(bad)])  # the only input: exit 2
    assert r.exit_code == 2 and len(errors_of(r)) == 1 and str(bad) in r.stderr, r.output
    r = runner.invoke(app, ["inspect", str(features)])  # among others: a row, exit 3
    assert r.exit_code == 3 and len(errors_of(r)) == 1 and "train_features.h5" in r.output, r.output
    r = runner.invoke(app, ["export", str(features), str(tmp_path / "out")])
    assert r.exit_code == 3 and len(errors_of(r)) == 1 and str(bad) in errors_of(r)[0], r.output
    assert (tmp_path / "out/train/cat/sub/a.mp4.npy").is_file() and not (tmp_path / "out/val").exists()
    r = runner.invoke(app, ["export", str(bad), str(tmp_path / "out2")])
    assert r.exit_code == 2, r.output
    with pytest.raises(InputFileError, match=str(bad)):
        FeatureDataset(bad)
    assert len(FeatureDataset(good)) == 2


def test_a_folder_named_like_a_features_file(tmp_path):
    features = tmp_path / "features"
    craft_features(features / "train_features.h5", ["cat/sub/a.mp4"])
    (features / "val_features.h5").mkdir()
    r = runner.invoke(app, ["export", str(features), str(tmp_path / "out")])
    assert r.exit_code == 3 and "a folder, not a file" in errors_of(r)[0], r.output
    r = runner.invoke(app, ["inspect", str(features)])
    assert r.exit_code == 3 and "a folder, not a file" in r.stderr


def _pt(videos, labels=None, names=None, mapping=None):
    n = videos.shape[0]
    return {
        "videos": videos, "labels": torch.zeros(n, dtype=torch.int64) if labels is None else labels,
        "filenames": [f"v{i}.mp4" for i in range(n)] if names is None else names,
        "category_mapping": mapping or {"cat": 0},
    }


def _norm(n=1):
    return torch.zeros(n, 4, 3, 32, 32)


BAD_PT = {
    "float64 videos": _pt(_norm().double()),
    "int32 videos": _pt(_norm().int()),
    "bool videos": _pt(_norm().bool()),
    "4-D videos": _pt(torch.zeros(1, 4, 3, 32)),
    "labels outside the mapping": _pt(_norm(), labels=torch.tensor([5])),
    "float labels": _pt(_norm(), labels=torch.tensor([0.0])),
    "integer filenames": _pt(_norm(), names=[7]),
    "a filename leading elsewhere": _pt(_norm(), names=["../../escaped.mp4"]),
}


@pytest.fixture(scope="module")
def processed(tmp_path_factory, videos):
    root = tmp_path_factory.mktemp("hostile_pt")
    raw = root / "raw"
    videos.copy_to(raw / "train/cat/good/v.mp4", codec="h264", num_frames=12)
    videos.copy_to(raw / "train/cat/bad/v.mp4", codec="h264", num_frames=12)
    assert runner.invoke(app, ["tensorize", str(raw), str(root / "p"), *TZ]).exit_code == 0
    return root / "p"


@pytest.mark.parametrize("case", sorted(BAD_PT))
def test_a_malformed_pt_is_its_groups_error_for_every_reader(processed, tmp_path, case):
    import shutil

    tree = tmp_path / "p"
    shutil.copytree(processed, tree)
    bad = tree / "train/cat/bad" / PT_NAME
    torch.save(BAD_PT[case], bad)
    r = runner.invoke(app, ["extract", str(tree), str(tmp_path / "f"), *BB])
    assert r.exit_code == 3 and len(errors_of(r)) == 1 and str(bad) in r.stderr, r.output
    with h5py.File(tmp_path / "f/train_features_multiscale.h5") as h5:
        assert [n.decode() for n in h5["filenames"][:]] == ["cat/good/v.mp4"]
    r = runner.invoke(app, ["inspect", str(tree), "--preview", str(tmp_path / "p.png")])
    assert r.exit_code == 3 and (tmp_path / "p.png").is_file(), r.output
    with pytest.raises(InputFileError, match="train/cat/bad"):
        ClipDataset(tree, "train")


def test_the_loaders_refuse_what_extract_refuses(processed, tmp_path):
    import shutil

    tree = tmp_path / "p"
    shutil.copytree(processed, tree)
    data = torch.load(tree / "train/cat/bad" / PT_NAME, weights_only=True)
    data["videos"][0, 1, 0, 0, 0] = float("nan")
    torch.save(data, tree / "train/cat/bad" / PT_NAME)
    (tree / "train/cat/bad/metadata.json").unlink()
    dataset = ClipDataset(tree, "train")
    with pytest.raises(InputFileError, match="NaN"):
        [dataset[i] for i in range(len(dataset))]
    data["category_mapping"] = {"cat": 0, "dog": 1}
    torch.save(data, tree / "train/cat/bad" / PT_NAME)
    with pytest.raises(InputFileError, match="category_mapping"):
        ClipDataset(tree, "train")


def test_fifos_in_place_of_inputs_never_hang(processed, tmp_path):
    """Every reader meets a FIFO where a file should be: one line, no hang."""
    import shutil

    tree = tmp_path / "p"
    shutil.copytree(processed, tree)
    os.unlink(tree / "train/cat/bad" / PT_NAME)
    os.mkfifo(tree / "train/cat/bad" / PT_NAME)
    os.unlink(tree / "train/cat/good/metadata.json")
    os.mkfifo(tree / "train/cat/good/metadata.json")
    features = tmp_path / "features"
    craft_features(features / "train_features.h5", ["cat/sub/a.mp4"])
    os.mkfifo(features / "val_features.h5")
    raw = tmp_path / "raw"
    (raw / "train/cat").mkdir(parents=True)
    shutil.copy(next(processed.parent.glob("raw/train/cat/good/*.mp4")), raw / "train/cat/v.mp4")
    out = tmp_path / "out"
    (out / "train/cat/cat").mkdir(parents=True)
    os.mkfifo(out / "train/cat/cat/metadata.json")
    import signal

    def hung(signum, frame):
        raise TimeoutError("a reader blocked on a FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)  # a hang fails this test instead of stopping the suite
    try:
        codes = [runner.invoke(app, args).exit_code for args in (
            ["inspect", str(features)], ["export", str(features), str(tmp_path / "e")], ["inspect", str(tree)],
            ["extract", str(tree), str(tmp_path / "f"), *BB], ["extract", str(tree), str(tmp_path / "f2"), *BB, "--dry-run"],
            ["tensorize", str(raw), str(out), *TZ], ["inspect", str(features / "val_features.h5")])]
        with pytest.raises(InputFileError, match="FIFO"):
            FeatureDataset(features / "val_features.h5")
        with pytest.raises(InputFileError, match="FIFO"):
            ClipDataset(tree, "train")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert codes == [3, 3, 3, 3, 0, 0, 2]


def test_export_and_merge_clean_the_temp_files_of_dead_processes(tmp_path):
    features = craft_features(tmp_path / "f" / "train_features.h5", ["cat/sub/a.mp4"])
    out = tmp_path / "out"
    dead = out / "train/cat/sub/.a.mp4.npy.999999999.tmp"
    dead.parent.mkdir(parents=True)
    dead.write_bytes(b"x")
    alive = out / f".index.csv.{os.getppid()}.tmp"
    alive.write_bytes(b"x")
    assert runner.invoke(app, ["export", str(features), str(out)]).exit_code == 0
    assert not dead.exists() and alive.exists()
    merged = tmp_path / "m"
    (merged / "train/cat/cat").mkdir(parents=True)
    for name in (".metadata.json.999999999.tmp", ".processed_data.pt.buffer.999999999.tmp"):
        (merged / "train/cat/cat" / name).write_bytes(b"x")
    r = runner.invoke(app, ["merge", str(merged)])
    assert r.exit_code == 0 and not list(merged.rglob("*.tmp")), r.output


# -- memory follows the output, not the source ----------------------------------------------------
def test_an_8k_clip_decodes_in_bounded_memory_and_keeps_its_frames(tmp_path):
    from tests.conftest import read_indices
    from vcp.inputs.synth import write_video

    raw = tmp_path / "raw"
    write_video(raw / "train/cat/v8k.mp4", num_frames=2, codec="h264", width=7680, height=4320)
    script = textwrap.dedent(f"""
        import resource, subprocess, sys
        r = subprocess.run([sys.executable, "-m", "vcp", "tensorize", "{raw}", "{tmp_path}/out", "--frames", "64",
                            "--size", "32", "--mode", "cpu"], capture_output=True, text=True)
        print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
    """)  # 64 frames of 7680x4320 RGB at full size: 5.9 GiB
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    code, peak = map(int, done.stdout.split())
    assert code == 0, done.stderr
    assert peak < 2 << 30, f"peak RSS {peak / 2**30:.2f} GiB"
    data = torch.load(tmp_path / "out/train/cat/cat" / PT_NAME, weights_only=True)
    assert read_indices(data["videos"][0]) == [0] * 63 + [1]
    meta = json.loads((tmp_path / "out/train/cat/cat/metadata.json").read_text())
    assert meta["videos"][0]["decoder"] == "pyav" and "scaled to 64x64 as they decode" in meta["videos"][0]["decoder_note"]


def test_frames_larger_than_max_pixels_are_refused_in_one_line(tmp_path, videos):
    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/cat/big.mp4", codec="h264", num_frames=12, width=96, height=64)  # 6144 pixels
    videos.copy_to(raw / "train/cat/small.mp4", codec="h264", num_frames=12, width=64, height=48)  # 3072 pixels
    r = runner.invoke(app, ["tensorize", str(raw), str(tmp_path / "o"), *TZ, "--max-pixels", "5000"])
    assert r.exit_code == 3, r.output
    (error,) = errors_of(r)
    assert error == ("vcp: error: train/cat/big.mp4: frames of 96x64 are larger than the limit of 5000 pixels "
                     "(8K is 7680x4320); --max-pixels raises it")
    assert torch.load(tmp_path / "o/train/cat/cat" / PT_NAME, weights_only=True)["filenames"] == ["small.mp4"]
    r = runner.invoke(app, ["tensorize", str(raw), str(tmp_path / "o"), *TZ])  # raised back: the group is redone
    assert r.exit_code == 0, r.output
    assert torch.load(tmp_path / "o/train/cat/cat" / PT_NAME, weights_only=True)["filenames"] == ["big.mp4", "small.mp4"]


def test_cpu_clips_too_big_at_full_size_go_to_pyav_scaled_and_batches_hold_bounded_bytes(videos, monkeypatch):
    from dali_pipes import _plan
    from dali_pipes._plan import LoaderStats, Planner, Router
    from dali_pipes._samplers import SamplingSpec

    vp9 = str(videos("vp9", 20, width=96, height=64))
    spec = SamplingSpec(strategy="uniform", frames=8)
    planner = Planner(Router("cpu", "auto", None, LoaderStats()), max_batch=4, size=16, device_id=0, vram_fraction=0.4)
    assert planner.plan((vp9, "a.webm"), spec).front == "dali"  # 8 x 96x64 frames: small
    monkeypatch.setattr(_plan, "CLIP_BYTES", 8 * 96 * 64 * 3 - 1)
    monkeypatch.setattr(_plan, "CPU_BATCH_BYTES", 2 * 8 * 32 * 32 * 3)
    planned = planner.plan((vp9, "a.webm"), spec)
    assert (planned.front, planned.scale_to) == ("pyav", (32, 32))
    batches = list(planner.batches([(vp9, f"{k}.webm") for k in range(5)], spec))
    assert [len(b) for b in batches] == [2, 2, 1]  # two scaled clips' bytes a batch, max_batch 4


def test_messages_name_the_file_and_the_reason(tmp_path, processed, monkeypatch):
    import shutil

    tree = tmp_path / "p"
    shutil.copytree(processed, tree)
    (tree / "train/cat/bad" / PT_NAME).write_bytes(b"")
    r = runner.invoke(app, ["extract", str(tree), str(tmp_path / "f"), *BB])
    assert r.exit_code == 3 and f"{tree / 'train/cat/bad' / PT_NAME}: empty file (0 bytes)" in r.stderr, r.output
    r = runner.invoke(app, ["extract", str(processed), str(tmp_path / "g"), "--backbone", "resnet50", "--weights", "/dev/zero"])
    assert r.exit_code == 2 and "/dev/zero: not a regular file" in r.stderr, r.output
    r = runner.invoke(app, ["tensorize", str(tmp_path), str(tmp_path / "o"), "--config", "/dev/zero"])
    assert r.exit_code == 2 and "cannot read /dev/zero: not a regular file" in r.stderr, r.output
    import vcp.store.h5_writer

    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vcp.store.h5_writer.H5Writer, "add", full)
    r = runner.invoke(app, ["extract", str(processed), str(tmp_path / "h"), *BB])
    assert r.exit_code == 1 and f"OSError: {tmp_path / 'h' / 'train_features_multiscale.h5'}: [Errno 28] No space" in r.stderr, r.output
