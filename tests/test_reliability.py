"""Hostile inputs and faults: never silent wrong output, never a stale pair, one line per problem."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from tests.conftest import denormalize, read_indices, write_size_change
from vcp.cli import app
from vcp.inputs.synth import write_video
from vcp.stages.tensorize import TensorizeConfig, tensorize
from vcp.store.atomic import remove_stale_tmp
from vcp.store.contract import META_NAME, PT_NAME
from vcp.store.lock import output_lock

runner = CliRunner()
TZ = ["--frames", "8", "--size", "32", "--mode", "cpu"]
BB = ["--backbone", "timm/resnet18", "--weights", "none", "--device", "cpu", "--recipe", "stored"]


def errors_of(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("vcp: error:")]


@pytest.fixture
def raw(tmp_path, videos):
    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/apple/a/one.mp4", codec="h264", num_frames=30)
    videos.copy_to(raw / "train/apple/a/two.webm", codec="vp9", num_frames=20)
    videos.copy_to(raw / "train/zebra/z.avi", codec="mjpeg", num_frames=12)
    videos.copy_to(raw / "val/zebra/y.mp4", codec="h264", num_frames=16)
    return raw


def features_of(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as h5:
        return h5["features"][:]


# -- 1. extract never trusts a sidecar that does not belong to its archive ---------------------
def test_uint8_archive_is_self_describing_and_a_foreign_sidecar_is_refused(raw, tmp_path):
    out = tmp_path / "out"
    assert runner.invoke(app, ["tensorize", str(raw), str(out), *TZ, "--storage", "uint8"]).exit_code == 0
    ref = tmp_path / "f_ref"
    assert runner.invoke(app, ["extract", str(out), str(ref), *BB]).exit_code == 0
    # without metadata.json the archive still says what its pixels are: same features
    (out / "train/apple/a" / META_NAME).unlink()
    f = tmp_path / "f_nometa"
    assert runner.invoke(app, ["extract", str(out), str(f), *BB]).exit_code == 0
    np.testing.assert_array_equal(features_of(f / "train_features_multiscale.h5"), features_of(ref / "train_features_multiscale.h5"))
    # a metadata.json of another archive beside it: that group is refused in one line, the rest written
    shutil.copy(out / "train/zebra/zebra" / META_NAME, out / "train/apple/a" / META_NAME)
    r = runner.invoke(app, ["extract", str(out), str(tmp_path / "f_bad"), *BB])
    assert r.exit_code == 3, r.output
    assert errors_of(r) == [f"vcp: error: {out / 'train/apple/a' / PT_NAME}: {META_NAME} beside it belongs to another write "
                            "(pair_id differs or it is unreadable: an interrupted or mixed write); rerun `vcp tensorize` for this folder"]
    with h5py.File(tmp_path / "f_bad/train_features_multiscale.h5") as h5:
        assert [n.decode() if isinstance(n, bytes) else n for n in h5["filenames"][:]] == ["zebra/zebra/z.avi"]
    # a rerun of tensorize repairs exactly that group
    r = runner.invoke(app, ["tensorize", str(raw), str(out), *TZ, "--storage", "uint8"])
    assert r.exit_code == 0 and "1" in r.output


def test_legacy_uint8_archive_without_any_record_is_refused(raw, tmp_path):
    out = tmp_path / "out"
    tensorize(raw, out, TensorizeConfig.from_options(frames=8, size=32, storage="uint8"), console=Console(quiet=True))
    for pt in out.rglob(PT_NAME):  # an archive from before vcp recorded its normalization
        d = torch.load(pt, weights_only=True)
        torch.save({k: d[k] for k in ("videos", "labels", "filenames", "category_mapping")}, pt)
        (pt.parent / META_NAME).unlink()
    r = runner.invoke(app, ["extract", str(out), str(tmp_path / "f"), *BB, "--splits", "val"])
    assert r.exit_code == 3, r.output
    assert errors_of(r) == [f"vcp: error: {out / 'val/zebra/zebra' / PT_NAME}: uint8 pixels with no record of their normalization (no {META_NAME}); rerun `vcp tensorize`"]


# -- 2. RAW is the truth --------------------------------------------------------------------------
def test_deleted_category_is_removed_from_out_and_never_decides_the_mapping(raw, tmp_path):
    out = tmp_path / "out"
    assert runner.invoke(app, ["tensorize", str(raw), str(out), *TZ]).exit_code == 0
    shutil.rmtree(raw / "train/apple")  # apple is gone: zebra becomes category 0
    r = runner.invoke(app, ["tensorize", str(raw), str(out), *TZ])
    assert r.exit_code == 0, r.output
    assert f"removed stale output {out / 'train/apple/a'}" in " ".join(r.stderr.split())
    assert not (out / "train/apple").exists()
    assert sorted(p.parent.relative_to(out).as_posix() for p in out.rglob(PT_NAME)) == ["train/zebra/zebra", "val/zebra/zebra"]
    r = runner.invoke(app, ["extract", str(out), str(tmp_path / "f"), *BB])
    assert r.exit_code == 0, r.output
    with h5py.File(tmp_path / "f/train_features_multiscale.h5") as h5:
        assert json.loads(h5.attrs["category_mapping"]) == {"zebra": 0} and h5["labels"][:].tolist() == [0]


def test_mixed_category_mappings_are_refused_naming_the_groups(raw, tmp_path):
    out = tmp_path / "out"
    assert runner.invoke(app, ["tensorize", str(raw), str(out), *TZ]).exit_code == 0
    stale = tmp_path / "stale"  # a group written from an older RAW tree with a third category
    videos_dir = raw.parent / "old_raw/train/mango"
    shutil.copytree(raw / "train/zebra", videos_dir)
    shutil.copytree(raw / "train/apple", raw.parent / "old_raw/train/apple")
    tensorize(raw.parent / "old_raw", stale, TensorizeConfig.from_options(frames=8, size=32), console=Console(quiet=True))
    shutil.copytree(stale / "train/mango", out / "train/mango")
    r = runner.invoke(app, ["extract", str(out), str(tmp_path / "f"), *BB])
    assert r.exit_code == 2 and not (tmp_path / "f" / "train_features_multiscale.h5").exists()
    message = " ".join(r.stderr.split())
    assert "disagree on category_mapping" in message and "train/mango/mango" in message and "train/apple/a" in message
    assert "rerun `vcp tensorize RAW PROCESSED`" in message


# -- 3. one writer per folder ---------------------------------------------------------------------
def test_second_run_on_a_locked_folder_exits_2_naming_the_pid(raw, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with output_lock(out):
        r = runner.invoke(app, ["tensorize", str(raw), str(out), *TZ])
    assert r.exit_code == 2
    assert errors_of(r) == [f"vcp: error: {out} is in use by pid {os.getpid()} (another vcp run); wait for it to finish, or write to another folder"]
    assert not list(out.rglob(PT_NAME))
    assert runner.invoke(app, ["tensorize", str(raw), str(out), *TZ]).exit_code == 0  # released with the block
    assert not (out / ".vcp.store.lock").exists()


def test_lock_is_released_by_the_kernel_when_its_process_is_killed(tmp_path):
    code = f"from vcp.store.lock import output_lock\nimport time\nwith output_lock({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(60)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(Exception, match=f"in use by pid {proc.pid}"), output_lock(tmp_path):
            pass
    finally:
        proc.kill()
        proc.wait()
    with output_lock(tmp_path):  # kill -9 left the file, not the lock
        pass


def test_stale_temp_cleanup_touches_only_dead_owners(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".{PT_NAME}.{proc.pid}.tmp"
        dead = tmp_path / f".{PT_NAME}.999999999.tmp"
        for p in (live, dead):
            p.write_bytes(b"x")
        remove_stale_tmp(tmp_path, [PT_NAME])
        assert live.exists() and not dead.exists()
    finally:
        proc.kill()
        proc.wait()


# -- 5-7. usage errors: exit 2 before any work, the option named ----------------------------------
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--strategy-for", "nosuchsub=center"], "--strategy-for nosuchsub: no such subcategory"),
        (["--clip-duration", "inf"], "--clip-duration"),
        (["--clip-duration", "nan"], "--clip-duration"),
        (["--seed", "-5"], "--seed"),
        (["--frames", "100000"], "--frames"),
    ],
)
def test_bad_tensorize_options_exit_2_before_work(raw, tmp_path, args, needle):
    out = tmp_path / "out"
    r = runner.invoke(app, ["tensorize", str(raw), str(out), *TZ, *args])
    assert r.exit_code == 2, r.output
    assert needle in " ".join(r.output.split())
    assert not list(out.rglob(PT_NAME))


def test_unknown_strategy_rule_lists_the_subcategories(raw, tmp_path):
    r = runner.invoke(app, ["tensorize", str(raw), str(tmp_path / "o"), *TZ, "--strategy-for", "nosuchsub=center"])
    assert "the subcategories are: apple/a, zebra/zebra" in " ".join(r.stderr.split())


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--scales", "inf"], "--scales must each be in (0, 4]"),
        (["--scales", "1e9"], "--scales must each be in (0, 4]"),
        (["--scales", "nan"], "--scales must each be in (0, 4]"),
        (["--scales", "1.0,,2"], "an empty entry"),
        (["--splits", ""], "--splits expects"),
        (["--seed", "-5"], "--seed"),
    ],
)
def test_bad_extract_options_exit_2_before_work(raw, tmp_path, args, needle):
    out = tmp_path / "out"
    tensorize(raw, out, TensorizeConfig.from_options(frames=8, size=32), console=Console(quiet=True))
    r = runner.invoke(app, ["extract", str(out), str(tmp_path / "f"), *BB, *args])
    assert r.exit_code == 2, r.output
    assert needle in " ".join(r.output.split())
    assert not (tmp_path / "f").exists()


def test_out_that_is_a_file_or_inside_raw_is_refused(raw, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = runner.invoke(app, ["tensorize", str(raw), str(afile), *TZ])
    assert r.exit_code == 2 and errors_of(r) == [f"vcp: error: OUT {afile} exists and is not a folder"]
    r = runner.invoke(app, ["extract", str(raw), str(afile), *BB, "--from-videos", *TZ[:4]])
    assert r.exit_code == 2 and errors_of(r) == [f"vcp: error: FEATURES {afile} exists and is not a folder"]
    inside = raw / "processed"
    r = runner.invoke(app, ["tensorize", str(raw), str(inside), *TZ])
    assert r.exit_code == 2 and "is inside the input folder" in errors_of(r)[0] and not inside.exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to act as another user")
def test_read_only_output_folder_is_one_line_naming_it(raw, tmp_path):
    base = Path(tempfile.mkdtemp(prefix="vcp-ro-"))  # /tmp: reachable for nobody
    try:
        base.chmod(0o755)
        out = base / "out"
        out.mkdir(mode=0o755)  # root's: not writable for nobody
        readable = base / "raw"
        shutil.copytree(raw, readable)
        for p in [readable, *readable.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        assert runner.invoke(app, ["tensorize", str(readable), str(base / "warm"), *TZ]).exit_code == 0  # imports done as root
        os.seteuid(65534)
        try:
            r = runner.invoke(app, ["tensorize", str(readable), str(out), *TZ])
            unreadable = runner.invoke(app, ["tensorize", str(raw), str(base / "o2"), *TZ])
        finally:
            os.seteuid(0)
        assert r.exit_code == 2, r.output
        assert r.stderr.strip().splitlines() == [f"vcp: error: cannot write to OUT {out}: Permission denied"]
        assert unreadable.exit_code == 2, unreadable.output
        assert unreadable.stderr.strip().splitlines() == [f"vcp: error: cannot read {raw}: Permission denied"]
    finally:
        shutil.rmtree(base)


# -- 8. weights -----------------------------------------------------------------------------------
def test_wrong_weights_are_one_line_and_never_suggest_unsafe_loading(raw, tmp_path):
    import timm

    out = tmp_path / "out"
    tensorize(raw, out, TensorizeConfig.from_options(frames=8, size=32), console=Console(quiet=True))
    r18 = tmp_path / "r18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), r18)
    r = runner.invoke(app, ["extract", str(out), str(tmp_path / "f"), "--backbone", "timm/resnet34", "--weights", str(r18), "--device", "cpu"])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith(f"vcp: error: {r18}: does not fit timm/resnet34: 96 missing (e.g. layer1.2.conv1.weight")
    r = runner.invoke(app, ["extract", str(out), str(tmp_path / "f"), "--backbone", "resnet50", "--weights", str(r18), "--device", "cpu"])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "does not fit resnet50: 23 of 320 tensors differ in shape (e.g. layer1.0.conv1.weight: file [64, 64, 3, 3], model [64, 64, 1, 1])" in r.stderr
    text = tmp_path / "notes.pth"
    text.write_text("not weights\n" * 20)
    r = runner.invoke(app, ["extract", str(out), str(tmp_path / "f"), "--backbone", "resnet50", "--weights", str(text), "--device", "cpu"])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "weights_only=False" not in r.stderr and "not a readable state_dict" in r.stderr


# -- 9. unmerged shards ---------------------------------------------------------------------------
def test_extract_on_unmerged_shards_says_run_merge(raw, tmp_path):
    out = tmp_path / "out"
    for i in range(2):
        runner.invoke(app, ["tensorize", str(raw), str(out), *TZ, "--shard", f"{i}/2"])
    assert list(out.rglob("part-*.pt")) and not list(out.rglob(PT_NAME))
    r = runner.invoke(app, ["extract", str(out), str(tmp_path / "f"), *BB])
    assert r.exit_code == 2 and f"run `vcp merge {out}` first" in " ".join(r.stderr.split())


# -- 10. links and FIFOs ----------------------------------------------------------------------------
def test_a_file_name_with_a_newline_is_still_one_error_line(raw, tmp_path):
    bad = raw / "train/apple/a/bad\nname.mp4"
    bad.write_bytes(b"\x00" * 1000)
    r = runner.invoke(app, ["tensorize", str(raw), str(tmp_path / "o"), *TZ])
    assert r.exit_code == 3
    assert errors_of(r) == ["vcp: error: train/apple/a/bad\\nname.mp4: not a readable video container "
                            "(Invalid data found when processing input)"]
    meta = json.loads((tmp_path / "o/train/apple/a" / META_NAME).read_text())
    assert meta["failed"] == [{"file": "bad\nname.mp4", "reason": "not a readable video container "
                                                                    "(Invalid data found when processing input)"}]


def _bytes_name(path: Path, raw_name: bytes) -> Path:
    """``path``'s folder joined with a name that is not valid UTF-8 (skips where the OS refuses one)."""
    target = os.path.join(os.fsencode(path), raw_name)
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        return Path(os.fsdecode(target))
    except OSError as exc:
        pytest.skip(f"this filesystem refuses such names: {exc}")


def test_a_file_name_that_is_not_utf8_is_one_error_and_the_rest_is_written(raw, tmp_path):
    """Crashed the whole run (UnicodeEncodeError, exit 1) at the first such file."""
    bad = _bytes_name(raw / "train/apple/a", b"clip\xff\xfe.mp4")
    shutil.copyfile(raw / "train/apple/a/one.mp4", bad)
    r = runner.invoke(app, ["tensorize", str(raw), str(tmp_path / "o"), *TZ])
    assert r.exit_code == 3, r.output
    assert errors_of(r) == ["vcp: error: train/apple/a/clip\\xff\\xfe.mp4: file name is not valid UTF-8 "
                            "(rename it; names are stored as UTF-8)"]
    data = torch.load(tmp_path / "o/train/apple/a" / PT_NAME, weights_only=True)
    assert sorted(data["filenames"]) == ["one.mp4", "two.webm"]
    r = runner.invoke(app, ["extract", str(tmp_path / "o"), str(tmp_path / "f"), *BB])
    assert r.exit_code == 0, r.output  # the failure travels as data, in UTF-8 JSON
    with h5py.File(tmp_path / "f/train_features_multiscale.h5") as h5:
        assert "not valid UTF-8" in h5.attrs["tensorize_failed_files"]


def test_a_folder_name_that_is_not_utf8_is_a_usage_error_naming_it(raw, tmp_path):
    bad = _bytes_name(raw / "train", b"cat\xff") / "x.mp4"
    bad.parent.mkdir()
    shutil.copyfile(raw / "train/apple/a/one.mp4", bad)
    r = runner.invoke(app, ["tensorize", str(raw), str(tmp_path / "o"), *TZ])
    assert r.exit_code == 2
    assert errors_of(r) == ["vcp: error: folder name is not valid UTF-8: train/cat\\xff (rename it; names are stored as UTF-8)"]


def test_broken_symlink_and_fifo_are_reported_like_bad_files(raw, tmp_path):
    sub = raw / "train/apple/a"
    (sub / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    os.mkfifo(sub / "pipe.mp4")
    out = tmp_path / "out"
    r = runner.invoke(app, ["tensorize", str(raw), str(out), *TZ])
    assert r.exit_code == 3
    assert sorted(errors_of(r)) == [
        f"vcp: error: train/apple/a/gone.mp4: broken symbolic link (its target {tmp_path / 'nowhere.mp4'} does not exist)",
        "vcp: error: train/apple/a/pipe.mp4: not a regular file (a FIFO)",
    ]
    meta = json.loads((out / "train/apple/a" / META_NAME).read_text())
    assert sorted(f["file"] for f in meta["failed"]) == ["gone.mp4", "pipe.mp4"] and meta["num_videos"] == 2


# -- 11. rotation -------------------------------------------------------------------------------------
def _red_quadrant(frame01: np.ndarray) -> tuple[int, int]:
    """(row half, column half) of the pure-red block in an RGB 0..1 frame."""
    red = (frame01[..., 0] > 0.7) & (frame01[..., 1] < 0.3) & (frame01[..., 2] < 0.3)
    ys, xs = np.nonzero(red)
    h, w = red.shape
    return int(ys.mean() >= h / 2), int(xs.mean() >= w / 2)


@pytest.mark.parametrize(("codec", "suffix", "decoder"), [("h264", ".mp4", "pyav"), ("vp9", ".webm", "dali-cpu")])
def test_rotated_video_comes_out_as_players_show_it(tmp_path, codec, suffix, decoder):
    raw = tmp_path / "raw"
    write_video(raw / f"train/c/r{suffix}", num_frames=12, codec=codec, rotation=90)
    write_video(raw / f"train/c/u{suffix}", num_frames=12, codec=codec)
    out = tmp_path / "out"
    tensorize(raw, out, TensorizeConfig.from_options(frames=12, size=32), console=Console(quiet=True))
    data = torch.load(out / "train/c/c" / PT_NAME, weights_only=True)
    meta = json.loads((out / "train/c/c" / META_NAME).read_text())
    by_name = {r["file"]: r for r in meta["videos"]}
    assert by_name[f"r{suffix}"]["rotation"] == 90 and by_name[f"u{suffix}"]["rotation"] == 0
    assert by_name[f"r{suffix}"]["decoder"] == decoder
    rotated, upright = (data["videos"][data["filenames"].index(n)] for n in (f"r{suffix}", f"u{suffix}"))
    # synth puts red bottom-left; 90 degrees counter-clockwise (the display matrix) moves it bottom-right
    assert _red_quadrant(denormalize(upright[0]).permute(1, 2, 0).numpy()) == (1, 0)
    assert _red_quadrant(denormalize(rotated[0]).permute(1, 2, 0).numpy()) == (1, 1)
    assert read_indices(torch.rot90(rotated, -1, dims=(-2, -1))) == list(range(12))  # same frames, turned
    torch.testing.assert_close(rotated, torch.rot90(upright, 1, dims=(-2, -1)), atol=0.15, rtol=0)


def test_flip_of_a_rotated_video_mirrors_what_players_show(tmp_path):
    raw = tmp_path / "raw"
    for i in range(6):
        write_video(raw / f"train/c/r{i}.mp4", num_frames=8, codec="h264", rotation=90)
    out = tmp_path / "out"
    tensorize(raw, out, TensorizeConfig.from_options(frames=8, size=32, augment=True, strategy="segment"), console=Console(quiet=True))
    data = torch.load(out / "train/c/c" / PT_NAME, weights_only=True)
    meta = json.loads((out / "train/c/c" / META_NAME).read_text())
    flips = {r["file"]: r["flipped"] for r in meta["videos"]}
    assert set(flips.values()) == {True, False}  # the seed gives both
    for name, clip in zip(data["filenames"], data["videos"], strict=True):
        # shown: red bottom-right; mirrored left-right: bottom-left
        assert _red_quadrant(denormalize(clip[0]).permute(1, 2, 0).numpy()) == ((1, 0) if flips[name] else (1, 1))


# -- 12. files cut short ---------------------------------------------------------------------------
def test_truncated_mjpeg_keeps_only_frames_that_decode_and_says_so(tmp_path, videos):
    raw = tmp_path / "raw"
    whole = videos("mjpeg", 30).read_bytes()
    cut = raw / "train/c/cut.avi"
    cut.parent.mkdir(parents=True)
    cut.write_bytes(whole[: int(len(whole) * 0.93)])
    videos.copy_to(raw / "train/c/whole.avi", codec="mjpeg", num_frames=30)
    out = tmp_path / "out"
    r = runner.invoke(app, ["tensorize", str(raw), str(out), "--frames", "30", "--size", "32", "--mode", "cpu"])
    assert r.exit_code == 0, r.output
    assert "[mjpeg @" not in r.stderr and "overread" not in r.stderr  # FFmpeg's own lines stay quiet
    warning = [line for line in r.stderr.splitlines() if line.startswith("vcp: warning:")]
    assert len(warning) == 1 and "cut.avi (3 missing)" in warning[0]
    meta = {v["file"]: v for v in json.loads((out / "train/c/c" / META_NAME).read_text())["videos"]}
    assert meta["cut.avi"]["frames_missing"] == 3 and meta["cut.avi"]["num_frames"] == 27
    assert "last frame incomplete" in meta["cut.avi"]["warning"]
    assert max(meta["cut.avi"]["frame_indices"]) == 26  # the partial 28th frame is never sampled
    assert meta["whole.avi"]["frames_missing"] == 0 and "warning" not in meta["whole.avi"]
    data = torch.load(out / "train/c/c" / PT_NAME, weights_only=True)
    clip = data["videos"][data["filenames"].index("cut.avi")]
    assert read_indices(clip) == meta["cut.avi"]["frame_indices"]
    r = runner.invoke(app, ["tensorize", str(raw), str(tmp_path / "o2"), "--frames", "30", "--size", "32", "--mode", "cpu", "--debug"])
    assert "ffmpeg:" in r.stderr  # --debug shows them


# -- 12b. which stream: the one players show ---------------------------------------------------------
def _write_streams(path: Path, plan: list[tuple], audio_s: float = 0.0) -> Path:
    """A container with the video streams of ``plan`` in order, each ``(encoder, pix_fmt,
    frames, first index, attached picture)``, and ``audio_s`` seconds of silence after them."""
    import av

    from vcp.inputs.synth import make_frame

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        streams = []
        for encoder, pix_fmt, frames, first, picture in plan:
            stream = container.add_stream(encoder, rate=25)
            stream.width, stream.height, stream.pix_fmt = 96, 64, pix_fmt
            if picture:
                stream.disposition = av.stream.Disposition.attached_pic
            streams.append((stream, frames, first))
        audio = container.add_stream("libopus", rate=48000) if audio_s else None
        for stream, frames, first in streams:
            for i in range(frames):
                frame = av.VideoFrame.from_ndarray(make_frame(first + i, 96, 64), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        for i in range(int(audio_s * 50)):  # 20 ms frames
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, i * 960
            for packet in audio.encode(frame):
                container.mux(packet)
        if audio:
            for packet in audio.encode():
                container.mux(packet)
    return path


def test_a_preview_stream_first_is_skipped_for_the_one_players_show(tmp_path):
    """A one-frame MJPEG stream before the real video (a thumbnail track): vcp decoded 64
    copies of the thumbnail, silently. Now the stream players show is probed and decoded (on
    the CPU front, which is told which stream: DALI picks a file's stream itself)."""
    raw = tmp_path / "raw"
    _write_streams(raw / "train/c/thumb_first.mkv", [("mjpeg", "yuvj420p", 1, 4000, False), ("libx264", "yuv420p", 40, 0, False)])
    write_video(raw / "train/c/plain.mkv", num_frames=40, codec="hevc")
    out = tmp_path / "out"
    tensorize(raw, out, TensorizeConfig.from_options(frames=16, size=32), console=Console(quiet=True))
    meta = {v["file"]: v for v in json.loads((out / "train/c/c" / META_NAME).read_text())["videos"]}
    thumb = meta["thumb_first.mkv"]
    assert (thumb["codec"], thumb["num_frames"], thumb["decoder"]) == ("h264", 40, "pyav")
    assert thumb["decoder_note"] == "h264 96x64 yuv420p: 2 video streams: #1 decoded, the one players show"
    assert "decoder_note" not in meta["plain.mkv"]  # one stream: nothing to say, DALI or PyAV as before
    data = torch.load(out / "train/c/c" / PT_NAME, weights_only=True)
    clip = data["videos"][data["filenames"].index("thumb_first.mkv")]
    assert read_indices(clip) == thumb["frame_indices"] == np.linspace(0, 39, 16).astype(int).tolist()


def test_a_cover_picture_alone_is_not_a_video_and_one_after_the_video_changes_nothing(tmp_path):
    """An audio file with cover art was a one-frame 'video' at 90,000 fps: 64 copies of the cover."""
    from dali_pipes import VideoError, probe

    cover_only = _write_streams(tmp_path / "song.mp4", [("mjpeg", "yuvj420p", 1, 7, True)], audio_s=1.0)
    with pytest.raises(VideoError, match=r"song.mp4: no video stream in container \(only a cover picture\)$"):
        probe(cover_only)
    with_cover = _write_streams(tmp_path / "clip.mp4", [("libx264", "yuv420p", 30, 0, False), ("mjpeg", "yuvj420p", 1, 7, True)])
    info = probe(with_cover)
    assert (info.codec, info.num_frames, info.stream_index, info.needs_pyav) == ("h264", 30, 0, "")


@pytest.mark.parametrize("suffix", [".webm", ".mkv"])
def test_a_video_shorter_than_its_audio_is_whole_and_a_cut_file_still_truncated(tmp_path, suffix):
    """Matroska has no duration per stream: 1 s of video beside 3 s of audio was refused as
    'truncated: header says 3.01 s, only 1.00 s of frames present'."""
    from dali_pipes import VideoError, probe

    encoder = "libvpx-vp9" if suffix == ".webm" else "libx264"
    whole = _write_streams(tmp_path / f"short_video{suffix}", [(encoder, "yuv420p", 25, 0, False)], audio_s=3.0)
    info = probe(whole)
    assert (info.num_frames, info.frames_missing, info.warning) == (25, 0, "")
    data = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) * 6 // 10])  # every stream loses its end
    with pytest.raises(VideoError, match=f"cut{suffix}: truncated: header says 3.0"):
        probe(cut)


# -- 12c. clips cut without re-encoding: an edit list hides the lead-in -----------------------------
def _cut_without_reencoding(src: Path, dst: Path, lead_in: int) -> Path:
    """What ``ffmpeg -ss T -c copy`` makes: the packets from the keyframe before T, and an
    edit list (MP4) that hides the first ``lead_in`` frames from players."""
    import av

    dst.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(src)) as source, av.open(str(dst), "w") as out:
        stream = source.streams.video[0]
        target = out.add_stream_from_template(stream)
        shift = lead_in * int(1 / (stream.time_base * 25))
        for packet in source.demux(stream):
            if packet.dts is not None:
                packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, target
                out.mux(packet)
    return dst


@pytest.mark.parametrize("b_frames", [0, 2])
def test_a_clip_cut_without_reencoding_gives_the_frames_players_show(tmp_path, b_frames):
    """The 10 frames before the cut were counted as frames (50, not 40) and, as they never
    decode, reported as 'cut short (10 missing)'; DALI numbers them as frames. Now: 40 frames,
    times from 0, PyAV (told why), no warning."""
    src = write_video(tmp_path / "src.mp4", num_frames=50, options={"g": "25", "bf": str(b_frames), "preset": "fast"})
    raw = tmp_path / "raw"
    _cut_without_reencoding(src, raw / "train/c/cut.mp4", lead_in=10)
    out = tmp_path / "out"
    tensorize(raw, out, TensorizeConfig.from_options(frames=8, size=32), console=Console(quiet=True))
    meta = json.loads((out / "train/c/c" / META_NAME).read_text())["videos"][0]
    assert (meta["num_frames"], meta["frames_missing"], "warning" in meta) == (40, 0, False)
    assert meta["frame_indices"] == [0, 5, 11, 16, 22, 27, 33, 39]
    assert meta["frame_times"] == [i / 25 for i in meta["frame_indices"]]
    assert (meta["decoder"], meta["decoder_note"]) == ("pyav", "h264 96x64 yuv420p: an edit list hides 10 frame(s) at its start")
    clip = torch.load(out / "train/c/c" / PT_NAME, weights_only=True)["videos"][0]
    assert read_indices(clip) == [10 + i for i in meta["frame_indices"]]  # shown frame 0 is source frame 10


# -- 12d. recordings that start mid-GOP ----------------------------------------------------------------
@pytest.mark.parametrize(("codec", "suffix"), [("h264", ".ts"), ("vp9", ".webm")])
def test_a_recording_started_mid_gop_starts_at_its_first_keyframe(tmp_path, codec, suffix):
    """A capture that starts between keyframes: its first packets cannot decode. H.264
    decoders drop them (vcp counted them, sampled from the wrong count and timed every frame
    from the first packet), VP9 fails on them (vcp refused the file). Now both start at the
    keyframe, as players do, with the file's own times, on PyAV (told why)."""
    import av

    src = write_video(tmp_path / f"src{suffix}", num_frames=50, codec=codec, options={"g": "25", "bf": "0"})
    raw = tmp_path / "raw"
    capture = raw / f"train/c/capture{suffix}"
    capture.parent.mkdir(parents=True)
    with av.open(str(src)) as source, av.open(str(capture), "w") as out:
        stream = source.streams.video[0]
        target = out.add_stream_from_template(stream)
        for k, packet in enumerate(source.demux(stream)):
            if packet.dts is not None and k >= 5:  # from frame 5; the next keyframe is frame 25
                packet.stream = target
                out.mux(packet)
    out = tmp_path / "out"
    tensorize(raw, out, TensorizeConfig.from_options(frames=8, size=32), console=Console(quiet=True))
    meta = json.loads((out / "train/c/c" / META_NAME).read_text())
    assert meta["failed"] == []
    video = meta["videos"][0]
    assert (video["num_frames"], video["decoder"]) == (25, "pyav")
    assert video["decoder_note"].endswith(": 20 frame(s) before its first keyframe cannot decode")
    assert video["frame_indices"] == [0, 3, 6, 10, 13, 17, 20, 24] and "do not decode" not in video.get("warning", "")
    np.testing.assert_allclose(video["frame_times"], [(20 + i) / 25 for i in video["frame_indices"]], atol=1e-6)
    clip = torch.load(out / "train/c/c" / PT_NAME, weights_only=True)["videos"][0]
    assert read_indices(clip) == [25 + i for i in video["frame_indices"]]


# -- 12e. the frame size changes mid-stream ------------------------------------------------------------
@pytest.mark.parametrize("codec", ["h264", "vp9"])
def test_a_stream_whose_frame_size_changes_keeps_every_frame_and_says_so(tmp_path, codec):
    """Was refused ('frame size changes mid-stream'); players show such streams whole."""
    raw = tmp_path / "raw"
    path = write_size_change(raw / f"train/c/switch.{'ts' if codec == 'h264' else 'webm'}", codec)
    out = tmp_path / "out"
    tensorize(raw, out, TensorizeConfig.from_options(frames=8, size=32), console=Console(quiet=True))
    meta = json.loads((out / "train/c/c" / META_NAME).read_text())
    assert meta["failed"] == []
    video = meta["videos"][0]
    assert video["num_frames"] == 60 and video["frame_indices"] == [0, 8, 16, 25, 33, 42, 50, 59]
    assert video["warning"] == "frame size changes mid-stream (128x96 by frame 33): such frames scaled to 96x64"
    clip = torch.load(out / "train/c/c" / PT_NAME, weights_only=True)["videos"][0]
    # the second part's frames count from 0 again: frame 33 of the file is its frame 3
    assert read_indices(clip) == [i if i < 30 else i - 30 for i in video["frame_indices"]]
    assert path.exists()


# -- 13. bad values inside a .pt --------------------------------------------------------------------
def test_nan_or_labels_outside_the_mapping_reject_their_group_only(raw, tmp_path):
    out = tmp_path / "out"
    videos_dir = raw / "train/apple/b"
    shutil.copytree(raw / "train/apple/a", videos_dir)
    tensorize(raw, out, TensorizeConfig.from_options(frames=8, size=32), console=Console(quiet=True))
    pt = out / "train/apple/a" / PT_NAME
    d = torch.load(pt, weights_only=True)
    d["videos"][1, 3, 0, 5, 5] = float("nan")  # the group's second video: its first row is written, then taken back
    torch.save(d, pt)
    pt_b = out / "train/apple/b" / PT_NAME
    d = torch.load(pt_b, weights_only=True)
    d["labels"][0] = 7
    torch.save(d, pt_b)
    r = runner.invoke(app, ["extract", str(out), str(tmp_path / "f"), *BB, "--splits", "train"])
    assert r.exit_code == 3, r.output
    lines = sorted(errors_of(r))
    assert len(lines) == 2
    assert lines[0].startswith("vcp: error: ") and "train/apple/a" in lines[0] and "NaN or Inf" in lines[0] and "whole group is rejected" in lines[0]
    assert f"{pt_b}: labels [7] are not indices of its category_mapping" in lines[1]
    with h5py.File(tmp_path / "f/train_features_multiscale.h5") as h5:
        assert [n.decode() if isinstance(n, bytes) else n for n in h5["filenames"][:]] == ["zebra/zebra/z.avi"]
        assert h5["features"].shape[0] == 1 and h5.attrs["num_videos"] == 1


# -- 15. the features file tells the whole story ------------------------------------------------------
def test_tensorize_failures_are_carried_into_failed_files(raw, tmp_path):
    (raw / "train/zebra/broken.mp4").write_bytes(b"nope" * 10)
    out = tmp_path / "out"
    assert runner.invoke(app, ["tensorize", str(raw), str(out), *TZ]).exit_code == 3
    r = runner.invoke(app, ["extract", str(out), str(tmp_path / "f"), *BB])
    assert r.exit_code == 0, r.output  # extract itself lost nothing
    with h5py.File(tmp_path / "f/train_features_multiscale.h5") as h5:
        failed = json.loads(h5.attrs["failed_files"])
        assert [f[0] for f in failed] == ["train/zebra/zebra/broken.mp4"]
        assert json.loads(h5.attrs["tensorize_failed_files"]) == failed
    r = runner.invoke(app, ["extract", str(out), str(tmp_path / "f"), *BB])
    assert r.exit_code == 0 and "up to date" in r.output


# -- 16. random init is reproducible --------------------------------------------------------------------
def test_weights_none_is_seeded_and_recorded(raw, tmp_path):
    out = tmp_path / "out"
    tensorize(raw, out, TensorizeConfig.from_options(frames=8, size=32), console=Console(quiet=True))
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        r = runner.invoke(app, ["extract", str(out), str(tmp_path / name), *BB, "--splits", "val", "--seed", str(seed)])
        assert r.exit_code == 0, r.output
        runs[name] = features_of(tmp_path / name / "val_features_multiscale.h5")
        with h5py.File(tmp_path / name / "val_features_multiscale.h5") as h5:
            assert h5.attrs["init_seed"] == seed
    np.testing.assert_array_equal(runs["a"], runs["b"])
    assert not np.allclose(runs["a"], runs["c"])


def test_an_internal_value_error_is_exit_1_not_a_usage_error(raw, tmp_path, monkeypatch):
    """Only vcp's own usage errors are exit 2; a bug that raises ValueError is exit 1."""
    import vcp.stages.tensorize

    def broken(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(vcp.stages.tensorize, "remove_stale_groups", broken)
    r = runner.invoke(app, ["tensorize", str(raw), str(tmp_path / "o"), *TZ])
    assert r.exit_code == 1 and "ValueError: an internal bug" in r.stderr


def test_an_error_whose_message_has_newlines_is_still_one_line(raw, tmp_path, monkeypatch):
    """HDF5's write errors (a full disk) carry a newline inside their message."""
    import vcp.stages.tensorize

    def full(*args, **kwargs):
        raise OSError(28, "Can't write data (time = Thu Nov 26 11:48:49 2026\n, errno = 28, No space left on device)")

    monkeypatch.setattr(vcp.stages.tensorize, "remove_stale_groups", full)
    r = runner.invoke(app, ["tensorize", str(raw), str(tmp_path / "o"), *TZ])
    assert r.exit_code == 1
    assert r.stderr.splitlines() == ["vcp: error: OSError: [Errno 28] Can't write data (time = Thu Nov 26 11:48:49 2026 , "
                                     "errno = 28, No space left on device) (rerun with --debug for the traceback)"]
