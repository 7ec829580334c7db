"""``vcp tensorize`` end to end through the CLI (typer.testing.CliRunner)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from typer.testing import CliRunner

from vcp.cli import app
from vcp.store.contract import GROUP_SETTINGS, META_NAME, PT_NAME, RUN_SPECIFIC

from .conftest import read_indices

runner = CliRunner()
ARGS = ["--frames", "8", "--size", "32", "--mode", "cpu", "--max-batch", "2"]


@pytest.fixture
def raw(tmp_path, videos):
    """train: zebra/{a,b} nested, apple flat; val: zebra/a and mango flat (only in val)."""
    r = tmp_path / "raw"
    videos.copy_to(r / "train/zebra/a/one.mp4", codec="h264", num_frames=40)
    videos.copy_to(r / "train/zebra/a/two.webm", codec="vp9", num_frames=30, fps=30000 / 1001)
    videos.copy_to(r / "train/zebra/b/three.mkv", codec="hevc", num_frames=5)  # shorter than T
    videos.copy_to(r / "train/apple/four.avi", codec="mjpeg", num_frames=20, width=66, height=50)
    videos.copy_to(r / "val/zebra/a/five.mp4", codec="h264", num_frames=300, fps=25)  # > 10 s clip
    videos.copy_to(r / "val/mango/six.webm", codec="vp9", num_frames=12)
    return r


def invoke(*args):
    result = runner.invoke(app, ["tensorize", *map(str, args)])
    return result


def load(out, rel):
    return torch.load(out / rel / PT_NAME, weights_only=True), json.loads((out / rel / META_NAME).read_text())


def test_outputs_schema_labels_and_frames(raw, tmp_path):
    out = tmp_path / "out"
    result = invoke(raw, out, *ARGS)
    assert result.exit_code == 0, result.output
    mapping = {"apple": 0, "mango": 1, "zebra": 2}  # sorted over the whole tree
    expected = {
        "train/zebra/a": ["one.mp4", "two.webm"],
        "train/zebra/b": ["three.mkv"],
        "train/apple/apple": ["four.avi"],
        "val/zebra/a": ["five.mp4"],
        "val/mango/mango": ["six.webm"],
    }
    found = sorted(p.parent.relative_to(out).as_posix() for p in out.rglob(PT_NAME))
    assert found == sorted(expected)
    for rel, names in expected.items():
        data, meta = load(out, rel)
        category = rel.split("/")[1]
        assert set(data) == {"videos", "labels", "filenames", "category_mapping", "classes", "storage", "normalization",
                             "pair_id"}
        assert data["storage"] == "float32" and data["pair_id"] == meta["pair_id"] and len(data["pair_id"]) == 32
        assert data["normalization"] == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
        assert data["videos"].dtype == torch.float32
        assert data["videos"].shape == (len(names), 8, 3, 32, 32)
        assert data["labels"].dtype == torch.int64
        assert data["labels"].tolist() == [mapping[category]] * len(names)
        assert data["filenames"] == names
        assert data["category_mapping"] == mapping
        for key in (*GROUP_SETTINGS, *RUN_SPECIFIC[:-1], "processing_mode"):  # what merge compares and sums
            assert key in meta, key
        assert "shard" not in meta  # written by sharded ranks only
        assert (meta["frames_per_video"], meta["image_size"], meta["processing_mode"]) == (8, 32, "cpu")
        assert meta["sampling_strategy"] == "uniform" and meta["augmentation"] is False
        assert meta["failed"] == [] and meta["num_videos"] == len(names)
        assert "versions" in meta and meta["seed"] == 0 and meta["clip_duration"] == 10.0
        for clip, record in zip(data["videos"], meta["videos"], strict=True):
            assert read_indices(clip) == record["frame_indices"]
    _, meta = load(out, "train/zebra/b")
    assert meta["videos"][0]["frame_indices"] == [0, 0, 1, 1, 2, 2, 3, 4]  # 5 frames, T=8
    assert "tensorize train" in result.stderr and "vcp tensorize" in result.stderr


def test_strategy_override_and_center_window(raw, tmp_path):
    out = tmp_path / "out"
    result = invoke(raw, out, *ARGS, "--strategy", "segment", "--strategy-for", "a=center", "--clip-duration", "2")
    assert result.exit_code == 0, result.output
    data, meta = load(out, "val/zebra/a")
    assert meta["sampling_strategy"] == "center"
    # n=300, fps=25, 2 s: w=50, start=125 -> 125 + linspace(0, 49, 8)
    assert meta["videos"][0]["frame_indices"] == [125, 132, 139, 146, 153, 160, 167, 174]
    assert read_indices(data["videos"][0]) == meta["videos"][0]["frame_indices"]
    _, meta = load(out, "train/apple/apple")
    assert meta["sampling_strategy"] == "segment"
    assert meta["videos"][0]["frame_indices"] == [1, 3, 6, 8, 11, 13, 16, 18]


def test_random_strategy_reproducible_across_runs(raw, tmp_path):
    a = invoke(raw, tmp_path / "a", *ARGS, "--strategy", "random", "--clip-duration", "1", "--augment", "--seed", "5")
    b = invoke(raw, tmp_path / "b", *ARGS, "--strategy", "random", "--clip-duration", "1", "--augment", "--seed", "5")
    assert a.exit_code == b.exit_code == 0
    da, ma = load(tmp_path / "a", "val/zebra/a")
    db, mb = load(tmp_path / "b", "val/zebra/a")
    assert ma["videos"] == mb["videos"] and torch.equal(da["videos"], db["videos"])
    assert ma["augmentation"] is True


def test_bad_files_exit_3_one_line_each_and_others_written(raw, tmp_path, bad_files):
    for name, path in bad_files.items():
        (raw / "train/zebra/a" / name).write_bytes(path.read_bytes())
    out = tmp_path / "out"
    result = invoke(raw, out, *ARGS)
    assert result.exit_code == 3, result.output
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("vcp: error:")]
    assert len(error_lines) == len(bad_files)
    for name in bad_files:
        assert sum(f"train/zebra/a/{name}: " in line for line in error_lines) == 1
    assert "Traceback" not in result.output
    data, meta = load(out, "train/zebra/a")
    assert data["filenames"] == ["one.mp4", "two.webm"]
    assert sorted(f["file"] for f in meta["failed"]) == sorted(bad_files)
    assert all(f["reason"] for f in meta["failed"])
    assert not list(out.rglob("*.tmp"))


def test_rerun_skips_up_to_date_and_overwrite_forces(raw, tmp_path):
    out = tmp_path / "out"
    assert invoke(raw, out, *ARGS).exit_code == 0
    pt = out / "train/zebra/a" / PT_NAME
    before = pt.stat().st_mtime_ns
    again = invoke(raw, out, *ARGS)
    assert again.exit_code == 0 and pt.stat().st_mtime_ns == before
    changed = invoke(raw, out, *ARGS[:-2], "--max-batch", "1", "--size", "32")  # batching is not a setting
    assert changed.exit_code == 0 and pt.stat().st_mtime_ns == before
    other = invoke(raw, out, "--frames", "4", "--size", "32", "--mode", "cpu")  # a setting changed
    assert other.exit_code == 0 and pt.stat().st_mtime_ns != before
    assert load(out, "train/zebra/a")[0]["videos"].shape[1] == 4
    before = pt.stat().st_mtime_ns
    forced = invoke(raw, out, "--frames", "4", "--size", "32", "--mode", "cpu", "--overwrite")
    assert forced.exit_code == 0 and pt.stat().st_mtime_ns != before


def test_new_input_file_redoes_only_its_group(raw, tmp_path, videos):
    out = tmp_path / "out"
    assert invoke(raw, out, *ARGS).exit_code == 0
    other = (out / "train/apple/apple" / PT_NAME).stat().st_mtime_ns
    videos.copy_to(raw / "train/zebra/a/zz.mp4", codec="h264", num_frames=12)
    assert invoke(raw, out, *ARGS).exit_code == 0
    assert load(out, "train/zebra/a")[0]["filenames"] == ["one.mp4", "two.webm", "zz.mp4"]
    assert (out / "train/apple/apple" / PT_NAME).stat().st_mtime_ns == other


def test_resume_after_kill(raw, tmp_path, monkeypatch):
    from vcp.store import pt_writer

    out = tmp_path / "out"
    real_fill = pt_writer.fill_storages
    calls = {"n": 0}

    def dying_fill(archive, sources):
        calls["n"] += 1
        if calls["n"] == 3:  # killed while writing the third group's file
            raise KeyboardInterrupt
        return real_fill(archive, sources)

    monkeypatch.setattr(pt_writer, "fill_storages", dying_fill)
    result = invoke(raw, out, *ARGS)
    assert result.exit_code != 0
    done = sorted(p.parent.relative_to(out).as_posix() for p in out.rglob(PT_NAME))
    assert len(done) == 2
    assert not [p for p in out.rglob("*") if p.is_file() and p.name not in (PT_NAME, META_NAME)]
    mtimes = {rel: (out / rel / PT_NAME).stat().st_mtime_ns for rel in done}
    monkeypatch.setattr(pt_writer, "fill_storages", real_fill)
    result = invoke(raw, out, *ARGS)
    assert result.exit_code == 0, result.output
    assert len(list(out.rglob(PT_NAME))) == 5
    assert {rel: (out / rel / PT_NAME).stat().st_mtime_ns for rel in done} == mtimes


def test_usage_errors_exit_2_without_traceback(raw, tmp_path):
    cases = [
        ([tmp_path / "missing", tmp_path / "o", "--mode", "cpu"], "raw video folder not found"),
        ([raw, tmp_path / "o", "--mode", "cpu", "--strategy", "bogus"], "'bogus' is not one of 'uniform', 'center', 'random', 'segment'"),
        ([raw, tmp_path / "o", "--mode", "cpu", "--strategy-for", "a=bogus"], "Supported values are: uniform, center, random, segment"),
        ([raw, tmp_path / "o", "--mode", "cpu", "--strategy-for", "nonsense"], "SUBCATEGORY=STRATEGY"),
    ]
    if not torch.cuda.is_available():
        cases.append(([raw, tmp_path / "o", "--mode", "gpu"], "no CUDA device is visible"))
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.stderr.replace("│", " ").split()) and "Traceback" not in result.output


def test_interactive_prompts_mode_and_each_subcategory(raw, tmp_path):
    out = tmp_path / "out"
    answers = "cpu\ncenter\nbogus\nsegment\nuniform\nuniform\n"
    result = runner.invoke(app, ["tensorize", str(raw), str(out), "--frames", "8", "--size", "32", "--interactive"], input=answers)
    assert result.exit_code == 0, result.output
    # prompt order = tree order: train/apple/apple, train/zebra/a, train/zebra/b, val/mango/mango
    assert load(out, "train/apple/apple")[1]["sampling_strategy"] == "center"
    assert load(out, "train/zebra/a")[1]["sampling_strategy"] == "segment"
    assert load(out, "val/zebra/a")[1]["sampling_strategy"] == "segment"
    assert load(out, "train/zebra/b")[1]["sampling_strategy"] == "uniform"


RSS_SCRIPT = textwrap.dedent(
    """
    import sys
    from vcp.stages.tensorize import TensorizeConfig, tensorize
    from rich.console import Console
    tensorize(sys.argv[1], sys.argv[2], TensorizeConfig.from_options(frames=64, size=128, mode="cpu"),
              console=Console(stderr=True, quiet=True))
    # VmHWM, not ru_maxrss: Linux carries the parent's peak into ru_maxrss across exec
    print(int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) * 1024)
    """
)


def test_peak_rss_flat_in_number_of_videos(tmp_path, videos):
    """10 vs 60 videos in one subcategory: 126 MB vs 755 MB of clips; RSS must not follow."""
    src = videos(codec="vp9", num_frames=40)

    def peak(n):
        root = tmp_path / f"raw{n}"
        for i in range(n):
            target = root / "train/cat/sub" / f"v{i:03d}.webm"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, target)
        proc = subprocess.run(
            [sys.executable, "-c", RSS_SCRIPT, str(root), str(tmp_path / f"out{n}")],
            capture_output=True, text=True, check=True,
        )
        data = torch.load(tmp_path / f"out{n}/train/cat/sub" / PT_NAME, weights_only=True, mmap=True)
        assert data["videos"].shape[0] == n
        return int(proc.stdout.strip().splitlines()[-1])

    small, large = peak(10), peak(60)
    print(f"peak RSS 10 videos {small >> 20} MiB, 60 videos {large >> 20} MiB")
    clip_bytes = 64 * 3 * 128 * 128 * 4
    assert large - small < 10 * clip_bytes, (small, large)  # a list of clips would add 50
    assert large / small < 1.2


def test_parallel_pipelines_write_the_same_files(raw, tmp_path):
    assert invoke(raw, tmp_path / "one", *ARGS).exit_code == 0
    assert invoke(raw, tmp_path / "two", *ARGS, "--pipelines", "2").exit_code == 0
    for pt in (tmp_path / "one").rglob(PT_NAME):
        a = torch.load(pt, weights_only=True)
        b = torch.load(tmp_path / "two" / pt.relative_to(tmp_path / "one"), weights_only=True)
        assert torch.equal(a["videos"], b["videos"]) and a["filenames"] == b["filenames"]


def test_write_error_mid_group_fails_fast_without_leftovers(tmp_path, videos, monkeypatch):
    """A write error (disk full) while the decoder waits for a buffer the writer's batch
    holds: the run must end with the error, not hang, and leave no files."""
    import threading
    import time

    from vcp.store import pt_writer

    raw = tmp_path / "raw"
    for i in range(5):
        videos.copy_to(raw / f"train/a/v{i}.webm", codec="vp9", num_frames=12 + i)
    real_add = pt_writer.PtWriter.add

    def failing_add(self, clip, filename, label):
        if self.filenames:  # the second clip
            time.sleep(1)  # meanwhile the decoder fills the queue and waits for a buffer
            raise OSError(28, "No space left on device")
        return real_add(self, clip, filename, label)

    monkeypatch.setattr(pt_writer.PtWriter, "add", failing_add)
    out, result = tmp_path / "out", {}
    worker = threading.Thread(
        target=lambda: result.update(r=invoke(raw, out, "--mode", "cpu", "--frames", "4", "--size", "16", "--max-batch", "1")),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "tensorize hung after a write error"
    assert result["r"].exit_code != 0
    assert not [p for p in out.rglob("*") if p.is_file()]


@pytest.mark.needs_cuda
def test_gpu_tensorize_writes_what_the_cpu_path_writes(raw, tmp_path):
    """--mode gpu: clips come off the card through the writer's staging buffers and its
    writer thread; the archives hold the same videos, in the same order, sampled at the same
    frames, with pixels close to the CPU path's."""
    gpu_args = [a if a != "cpu" else "gpu" for a in ARGS]
    assert invoke(raw, tmp_path / "cpu", *ARGS).exit_code == 0
    result = invoke(raw, tmp_path / "gpu", *gpu_args)
    assert result.exit_code == 0, result.output
    cpu_files = sorted(p.relative_to(tmp_path / "cpu") for p in (tmp_path / "cpu").rglob(PT_NAME))
    assert cpu_files == sorted(p.relative_to(tmp_path / "gpu") for p in (tmp_path / "gpu").rglob(PT_NAME))
    for rel in cpu_files:
        (a, meta_a), (b, meta_b) = load(tmp_path / "cpu", rel.parent), load(tmp_path / "gpu", rel.parent)
        assert a["filenames"] == b["filenames"] and torch.equal(a["labels"], b["labels"])
        assert [v["frame_indices"] for v in meta_a["videos"]] == [v["frame_indices"] for v in meta_b["videos"]]
        assert (a["videos"] - b["videos"]).abs().mean() < 0.03
        for clip, record in zip(b["videos"], meta_b["videos"], strict=True):  # frame-exact through the writer thread
            assert read_indices(clip) == record["frame_indices"]
