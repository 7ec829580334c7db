"""Using what vcp wrote: loaders, inspect and its preview, timestamps, config files, dry runs, export."""

from __future__ import annotations

import csv
import json
import os
import sys
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from vcp.cli import app
from vcp.inputs.synth import make_frame
from vcp.stages.multiscale import output_rows
from vcp.stages.tensorize import TensorizeConfig, tensorize
from vcp.store.contract import META_NAME

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

runner = CliRunner()
TZ = ["--frames", "6", "--size", "32", "--mode", "cpu"]
BB = ["--backbone", "timm/resnet18", "--weights", "none", "--device", "cpu", "--recipe", "stored"]
# frame k of the variable-rate video is shown at VFR_MS[k] milliseconds
VFR_MS = [0, 40, 80, 200, 240, 500, 540, 580, 1000, 1040, 1080, 1500]


def write_vfr(path: Path) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for k, ms in enumerate(VFR_MS):
            frame = av.VideoFrame.from_ndarray(make_frame(k, 96, 64), format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory, videos):
    root = tmp_path_factory.mktemp("outputs")
    raw = root / "raw"
    write_vfr(raw / "train/apple/a/vfr.mp4")
    videos.copy_to(raw / "train/apple/a/b.webm", codec="vp9", num_frames=20)
    videos.copy_to(raw / "train/zebra/z.avi", codec="mjpeg", num_frames=12)
    videos.copy_to(raw / "val/zebra/y.mp4", codec="h264", num_frames=16)
    processed = root / "processed"
    assert runner.invoke(app, ["tensorize", str(raw), str(processed), *TZ]).exit_code == 0
    features = root / "features"
    assert runner.invoke(app, ["extract", str(processed), str(features), *BB]).exit_code == 0
    return {"root": root, "raw": raw, "processed": processed, "features": features}


# -- timestamps -------------------------------------------------------------------------------
def test_frame_times_come_from_the_stream_so_variable_rate_is_right(made):
    meta = json.loads((made["processed"] / "train/apple/a" / META_NAME).read_text())
    vfr = next(v for v in meta["videos"] if v["file"] == "vfr.mp4")
    assert vfr["frame_indices"] == np.linspace(0, 11, 6).astype(int).tolist() == [0, 2, 4, 6, 8, 11]
    assert vfr["frame_times"] == [VFR_MS[i] / 1000 for i in vfr["frame_indices"]] == [0.0, 0.08, 0.24, 0.54, 1.0, 1.5]
    other = next(v for v in meta["videos"] if v["file"] == "b.webm")
    assert other["frame_times"] == [i / 25 for i in other["frame_indices"]]


def test_hdf5_carries_fps_indices_and_times_in_both_paths(made, tmp_path):
    r = runner.invoke(app, ["extract", "--from-videos", str(made["raw"]), str(tmp_path / "s"), *BB, *TZ[:4]])
    assert r.exit_code == 0, r.output
    for folder in (made["features"], tmp_path / "s"):
        with h5py.File(folder / "train_features_multiscale.h5") as h5:
            names = [n.decode() if isinstance(n, bytes) else n for n in h5["filenames"][:]]
            row = names.index("apple/a/vfr.mp4")
            assert h5["frame_indices"].shape == (3, 6) and h5["frame_indices"].dtype == np.int64
            assert h5["frame_indices"][row].tolist() == [0, 2, 4, 6, 8, 11]
            np.testing.assert_allclose(h5["frame_times"][row], [0.0, 0.08, 0.24, 0.54, 1.0, 1.5])
            assert h5["fps"].dtype == np.float64 and h5["fps"][names.index("zebra/zebra/z.avi")] == 25.0


# -- loaders -----------------------------------------------------------------------------------
def test_feature_dataset_in_a_dataloader_with_workers(made):
    from torch.utils.data import DataLoader

    from vcp.data import FeatureDataset

    path = made["features"] / "train_features_multiscale.h5"
    ds = FeatureDataset(path)
    assert len(ds) == 3 and ds.category_mapping == {"apple": 0, "zebra": 1}
    assert ds.classes == ["apple", "zebra"] and ds.num_classes == 2
    features, mask, label, name = ds[0]
    with h5py.File(path) as h5:
        np.testing.assert_array_equal(features.numpy(), h5["features"][0])
        assert mask.tolist() == [i < h5["num_frames"][0] for i in range(h5["features"].shape[1])]
        assert label == h5["labels"][0] and name == h5["paths"][0].decode()  # the video's own name
        assert ds.index_of(name) == 0 and ds.index_of(h5["filenames"][1].decode()) == 1
    batches = list(DataLoader(ds, batch_size=2, num_workers=2))
    assert [b[0].shape[0] for b in batches] == [2, 1] and batches[0][1].dtype == torch.bool
    assert sorted(n for b in batches for n in b[3]) == sorted(ds.paths) == sorted(ds.names)
    # each row's source video, relative to RAW (a flat category's filenames repeat its name)
    assert all((made["raw"] / p).is_file() and p.rsplit("/", 1)[1] == n.rsplit("/", 1)[1]
               for p, n in zip(ds.paths, ds.filenames, strict=True)) and len(set(ds.paths)) == 3
    in_memory = FeatureDataset(path, in_memory=True, transform=lambda f, m: f * m[:, None])
    assert torch.equal(in_memory[1][0], ds[1][0] * ds[1][1][:, None])


def test_clip_dataset_converts_compact_storage_as_extract_does(made, tmp_path):
    from torch.utils.data import DataLoader

    from vcp.data import ClipDataset

    compact = tmp_path / "u8"
    tensorize(made["raw"], compact, TensorizeConfig.from_options(frames=6, size=32, storage="uint8"), console=Console(quiet=True))
    full, small = ClipDataset(made["processed"], "train"), ClipDataset(compact, "train")
    assert len(full) == len(small) == 3 and full.category_mapping == {"apple": 0, "zebra": 1}
    assert full.classes == ["apple", "zebra"] and full.num_classes == 2
    assert [full.index_of(n) for _, _, n in full] == [0, 1, 2] and full[0][2] == full.paths[0]
    assert all((made["raw"] / p).is_file() and p.rsplit("/", 1)[1] == n.rsplit("/", 1)[1]
               for p, (_, _, n) in zip(full.paths, full, strict=True)) and len(set(full.paths)) == 3
    for (a, la, na), (b, lb, nb) in zip(full, small, strict=True):
        assert (la, na) == (lb, nb) and a.dtype == b.dtype == torch.float32 and a.shape == (6, 3, 32, 32)
        assert (a - b).abs().max() < 0.5 / 255 / 0.224 + 1e-4  # uint8 rounding, in ImageNet units
    clips, labels, names = next(iter(DataLoader(full, batch_size=3, num_workers=2)))
    assert clips.shape == (3, 6, 3, 32, 32) and labels.tolist() == [0, 0, 1]


# -- inspect ---------------------------------------------------------------------------------
def test_inspect_tables_and_preview(made, tmp_path):
    from PIL import Image

    r = runner.invoke(app, ["inspect", str(made["processed"]), "--preview", str(tmp_path / "p.png"), "--videos", "3"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "train/apple/a" in text and "val/zebra/zebra" in text and "pyav 1" in text and "dali-cpu 1" in text
    image = Image.open(tmp_path / "p.png")
    assert image.size == (2 + 6 * (96 + 2), 3 * (18 + 96 + 4))  # 3 rows of 6 tiles of 96 px
    pixels = np.asarray(image.convert("RGB"))
    top_left_tile = pixels[18 + 2 : 18 + 2 + 96 - 12, 2 : 2 + 96]
    assert top_left_tile.std() > 20  # a real frame, not a blank tile
    r = runner.invoke(app, ["inspect", str(made["features"])])
    assert r.exit_code == 0 and "train_features_multiscale.h5" in r.output and "timm/resnet18" in r.output
    r = runner.invoke(app, ["inspect", str(made["features"]), "--preview", str(tmp_path / "q.png")])
    assert r.exit_code == 2 and "features have no pixels" in r.output
    assert "inspect" in runner.invoke(app, ["--help"]).output and "export" in runner.invoke(app, ["--help"]).output


# -- config files ------------------------------------------------------------------------------
def test_config_file_flags_override_and_print_config_round_trips(made, tmp_path):
    conf = tmp_path / "run.toml"
    conf.write_text('frames = 5\nsize = 32\nmode = "cpu"\nstrategy = "center"\nstrategy_for = {"a" = "segment"}\n')
    r = runner.invoke(app, ["tensorize", str(made["raw"]), str(tmp_path / "o"), "--config", str(conf), "--frames", "4", "--print-config"])
    assert r.exit_code == 0, r.output
    resolved = tomllib.loads(r.output)
    assert resolved["frames"] == 4 and resolved["size"] == 32 and resolved["strategy"] == "center"
    assert resolved["strategy_for"] == {"a": "segment"} and resolved["max_batch"] == 4
    (tmp_path / "resolved.toml").write_text(r.output)
    r = runner.invoke(app, ["tensorize", str(made["raw"]), str(tmp_path / "o"), "--config", str(tmp_path / "resolved.toml")])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "o/train/apple/a" / META_NAME).read_text())
    assert meta["frames_per_video"] == 4 and meta["sampling_strategy"] == "segment"
    assert json.loads((tmp_path / "o/train/zebra/zebra" / META_NAME).read_text())["sampling_strategy"] == "center"
    conf.write_text("frames = 5\nframez = 3\n")
    r = runner.invoke(app, ["tensorize", str(made["raw"]), str(tmp_path / "o2"), "--config", str(conf)])
    assert r.exit_code == 2 and "unknown key 'framez'" in r.output and not (tmp_path / "o2").exists()
    conf.write_text('precision = "bf16"\nscales = "1.0,0.5"\n')
    r = runner.invoke(app, ["extract", str(made["processed"]), str(tmp_path / "f"), "--config", str(conf), *BB, "--print-config"])
    assert r.exit_code == 0 and tomllib.loads(r.output)["scales"] == "1.0,0.5" and tomllib.loads(r.output)["precision"] == "bf16"


# -- dry runs ------------------------------------------------------------------------------------
def test_dry_run_lists_what_would_be_done_and_writes_nothing(made, tmp_path):
    (made["raw"] / "train/zebra/notes.txt").write_text("x")
    (made["raw"] / "train/zebra/empty.mp4").write_bytes(b"")
    try:
        fresh = tmp_path / "fresh"
        r = runner.invoke(app, ["tensorize", str(made["raw"]), str(fresh), *TZ, "--dry-run"])
        assert r.exit_code == 0, r.output
        assert not fresh.exists()
        rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in r.output.splitlines() if line.count("│") >= 5}
        assert rows["train/apple/a"][:3] == ["2", "0", "2"]
        assert rows["train/zebra/zebra"][:3] == ["2", "0", "1"]  # notes.txt is no video: ignored, not rejected
        assert "empty.mp4: empty file" in " ".join(rows["train/zebra/zebra"][3:]) + " ".join(r.output.split())
        assert "ignored: 1 non-video (notes.txt)" in " ".join(r.output.split())
        r = runner.invoke(app, ["tensorize", str(made["raw"]), str(made["processed"]), *TZ, "--dry-run"])
        rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in r.output.splitlines() if line.count("│") >= 5}
        assert rows["train/apple/a"][:3] == ["2", "2", "0"] and rows["val/zebra/zebra"][:3] == ["1", "1", "0"]
        assert rows["train/zebra/zebra"][1] == "0"  # its inputs changed: it would be redone
    finally:
        (made["raw"] / "train/zebra/notes.txt").unlink()
        (made["raw"] / "train/zebra/empty.mp4").unlink()
    before = {p: p.stat().st_mtime_ns for p in made["features"].iterdir()}
    r = runner.invoke(app, ["extract", str(made["processed"]), str(made["features"]), *BB, "--dry-run"])
    assert r.exit_code == 0 and "up to date" in r.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in r.output.splitlines() if line.count("│") >= 5}
    assert rows["train"][:3] == ["3", "3", "0"] and rows["val"][:3] == ["1", "1", "0"]
    assert {p: p.stat().st_mtime_ns for p in made["features"].iterdir()} == before
    r = runner.invoke(app, ["extract", str(made["processed"]), str(tmp_path / "nf"), *BB, "--dry-run"])
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in r.output.splitlines() if line.count("│") >= 5}
    assert rows["train"][:3] == ["3", "0", "3"] and not (tmp_path / "nf").exists()


# -- export ------------------------------------------------------------------------------------------
def test_export_npy_per_video_with_an_index_and_reruns_skip(made, tmp_path):
    out = tmp_path / "npy"
    r = runner.invoke(app, ["export", str(made["features"]), str(out), "--format", "npy"])
    assert r.exit_code == 0, r.output
    with h5py.File(made["features"] / "train_features_multiscale.h5") as h5:
        for i, name in enumerate(h5["filenames"][:]):
            array = np.load(out / "train" / f"{name.decode()}.npy")
            n = int(h5["num_frames"][i])
            assert array.shape == (n, h5["features"].shape[2]) and np.array_equal(array, h5["features"][i, :n])
    with open(out / "index.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and rows[0].keys() == {"split", "filename", "label", "num_frames", "fps", "path", "start", "end"}
    assert rows[0]["filename"] == "train/apple/a/b.webm.npy" and rows[0]["path"] == "train/apple/a/b.webm"  # as in RAW
    vfr = next(r for r in rows if r["filename"] == "train/apple/a/vfr.mp4.npy")
    assert vfr["split"] == "train" and vfr["label"] == "0" and vfr["num_frames"] == str(output_rows(6, (1.0, 0.85, 1.15))) == "6"
    assert not [p for p in out.rglob("*.tmp")]
    r = runner.invoke(app, ["export", str(made["features"]), str(out)])
    assert r.exit_code == 0 and "exported 0 video(s), 4 already up to date" in " ".join(r.output.split())
    r = runner.invoke(app, ["export", str(made["features"]), str(out), "--format", "parquet"])
    assert r.exit_code == 2 and "'parquet' is not one of 'npy'" in " ".join(r.output.replace("│", " ").split())


def _drop_last_video(src: Path, dst: Path) -> None:
    """A copy of features file ``src`` without its last video (every per-video dataset cut)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(src, "r") as a, h5py.File(dst, "w") as b:
        n = a["filenames"].shape[0]
        for name, ds in a.items():
            b.create_dataset(name, data=ds[: n - 1] if ds.shape and ds.shape[0] == n else ds[()])
        b.attrs.update(dict(a.attrs))


def test_export_rerun_redoes_a_changed_features_file_and_removes_gone_videos(made, tmp_path):
    """Reruns skipped every file already there: features re-extracted (another backbone,
    other data) left the old arrays in place, and videos gone from them stayed."""
    import shutil

    features = tmp_path / "features"
    shutil.copytree(made["features"], features)
    out = tmp_path / "npy"
    assert runner.invoke(app, ["export", str(features), str(out)]).exit_code == 0
    train = features / "train_features_multiscale.h5"
    with h5py.File(train, "r+") as h5:  # re-extracted: other values, same videos
        h5["features"][...] = h5["features"][...] * 2 + 1
        names = [n.decode() for n in h5["filenames"][:]]
        new = [h5["features"][i, : int(h5["num_frames"][i])] for i in range(len(names))]
    stamp = os.stat(train)
    os.utime(train, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000))  # mtime resolution aside
    r = runner.invoke(app, ["export", str(features), str(out)])
    assert r.exit_code == 0 and f"exported {len(names)} video(s)" in " ".join(r.output.split())
    for name, rows in zip(names, new, strict=True):
        np.testing.assert_array_equal(np.load(out / "train" / f"{name}.npy"), rows)
    _drop_last_video(train, tmp_path / "fewer" / train.name)  # one video gone from the split
    assert runner.invoke(app, ["export", str(tmp_path / "fewer"), str(out)]).exit_code == 0
    assert not (out / "train" / f"{names[-1]}.npy").exists()
    assert all((out / "train" / f"{n}.npy").exists() for n in names[:-1])
    with open(out / "index.csv") as fh:
        assert [r["filename"] for r in csv.DictReader(fh)] == [f"train/{n}.npy" for n in names[:-1]]
    mine = out / "train" / "mine.npy"  # a file export did not write is left alone
    np.save(mine, np.zeros(3))
    assert runner.invoke(app, ["export", str(tmp_path / "fewer"), str(out)]).exit_code == 0 and mine.exists()


def test_export_does_not_trust_files_it_has_no_record_of(made, tmp_path):
    """A file at an export path without a record (an older vcp, or another tool) is rewritten."""
    out = tmp_path / "npy"
    with h5py.File(made["features"] / "train_features_multiscale.h5") as h5:
        name = h5["filenames"][0].decode()
        rows = h5["features"][0, : int(h5["num_frames"][0])]
    (out / "train" / name).parent.mkdir(parents=True)
    np.save(out / "train" / f"{name}.npy", np.full((2, 2), 7.0))
    assert runner.invoke(app, ["export", str(made["features"]), str(out)]).exit_code == 0
    np.testing.assert_array_equal(np.load(out / "train" / f"{name}.npy"), rows)



# -- config values go through the command line's validation -------------------------------------
@pytest.mark.parametrize("toml, needle", [
    ('strategy_for = ["a=center", "bad"]', "--strategy-for expects SUBCATEGORY=STRATEGY, got 'bad'"),
    ('strategy_for = {"a" = "sideways"}', "Invalid sampling strategy ('sideways')"),
    ("frames = true", "'frames' in"),
    ('frames = "8"', "expected a whole number"),
    ("augment = 1", "expected true or false"),
    ("max-batch = 2\nmax_batch = 3", "are the same setting"),
])
def test_a_bad_config_value_is_one_line_exit_2_even_with_print_config(made, tmp_path, toml, needle):
    conf = tmp_path / "c.toml"
    conf.write_text(toml + "\n")
    r = runner.invoke(app, ["tensorize", str(made["raw"]), str(tmp_path / "o"), "--config", str(conf), "--print-config"])
    assert r.exit_code == 2, r.output
    assert needle in " ".join(r.stderr.split()) and "Traceback" not in r.output


def test_a_subcategory_holding_an_equals_sign_survives_the_config_round_trip(made, tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('strategy_for = {"long=clips" = "center"}\n')
    args = ["tensorize", str(made["raw"]), str(tmp_path / "o")]
    r = runner.invoke(app, [*args, "--config", str(conf), "--print-config"])
    assert r.exit_code == 0, r.output
    assert tomllib.loads(r.output)["strategy_for"] == {"long=clips": "center"}
    (tmp_path / "back.toml").write_text(r.output)
    again = runner.invoke(app, [*args, "--config", str(tmp_path / "back.toml"), "--print-config"])
    assert again.output == r.output


# -- progress where no one watches a bar ------------------------------------------------------------
def test_progress_in_a_log_file_is_plain_lines(made, tmp_path, monkeypatch):
    import re

    r = runner.invoke(app, ["tensorize", str(made["raw"]), str(tmp_path / "p"), *TZ])  # default interval: one line at the end
    lines = [line for line in r.stderr.splitlines() if line.startswith("tensorize ")]
    assert lines == ["tensorize train: 3/3 videos, " + lines[0].split(", ")[1], "tensorize val: 1/1 videos, " + lines[1].split(", ")[1]]
    monkeypatch.setenv("VCP_PROGRESS_SECONDS", "0")
    r = runner.invoke(app, ["extract", str(tmp_path / "p"), str(tmp_path / "f"), *BB])
    assert r.exit_code == 0, r.output
    lines = [line for line in r.stderr.splitlines() if line.startswith("extract train")]
    assert [line.split(":")[1].split(",")[0].strip() for line in lines] == ["1/3 videos", "2/3 videos", "3/3 videos"]
    assert all(re.fullmatch(r"extract train: \d/3 videos, \d+\.\d videos/s(, ETA \d:\d\d:\d\d)?", line) for line in lines), lines
    assert "\x1b" not in r.stderr and "\r" not in r.stderr  # (the summary table below is text)


# -- disk space ------------------------------------------------------------------------------------
def test_dry_run_estimates_the_output_and_a_run_that_cannot_fit_stops_before_any_work(made, tmp_path, monkeypatch):
    from vcp.stages import space
    from vcp.store.contract import PT_NAME

    r = runner.invoke(app, ["tensorize", str(made["raw"]), str(tmp_path / "p"), *TZ, "--dry-run"])
    # T=6, 32x32, float32: 6*3*32*32*4 = 72 KiB a video, plus 64 KiB per group (train: 3 videos in 2 groups)
    assert "this run writes about 480.0 KiB (train 344.0 KiB, val 136.0 KiB)" in " ".join(r.output.split())
    monkeypatch.setattr(space, "free_bytes", lambda path: 100_000)
    r = runner.invoke(app, ["tensorize", str(made["raw"]), str(tmp_path / "p"), *TZ])
    assert r.exit_code == 2 and not list((tmp_path / "p").rglob(PT_NAME))
    assert f"vcp: error: {tmp_path / 'p'} has 97.7 KiB free but this run will write about 480.0 KiB" in r.stderr
    monkeypatch.setattr(space, "free_bytes", lambda path: 1000)  # features: 4 videos x 6 rows x 512 x 4 B = 48 KiB
    r = runner.invoke(app, ["extract", str(made["processed"]), str(tmp_path / "f"), *BB])
    assert r.exit_code == 2 and "has 1000 B free but this run will write about 48.0 KiB" in r.stderr, r.output
    assert not list((tmp_path / "f").glob("*.h5"))
    r = runner.invoke(app, ["tensorize", str(made["raw"]), str(tmp_path / "p"), *TZ, "--no-space-check"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["tensorize", str(made["raw"]), str(tmp_path / "p"), *TZ])  # up to date: nothing to write
    assert r.exit_code == 0, r.output


# -- the command line a person reads -------------------------------------------------------------
def test_help_fits_80_columns_and_version_says_what_a_bug_report_needs():
    for command in ([], ["tensorize"], ["extract"], ["inspect"], ["export"], ["merge"], ["backbones"], ["manifest"],
                    *(["manifest", f] for f in ("tree", "ucf101", "hmdb51", "kinetics", "ssv2", "list"))):
        r = runner.invoke(app, [*command, "-h"], terminal_width=80)
        assert r.exit_code == 0, r.output
        body = "\n".join(line for line in r.output.splitlines() if not line.startswith("Usage:"))
        assert max(map(len, r.output.splitlines())) <= 80 and "…" not in body and "..." not in body, r.output  # nothing cut short
    r = runner.invoke(app, ["--version"])
    lines = r.output.splitlines()
    assert r.exit_code == 0 and lines[0].startswith("vcp ") and any(line.startswith("torch ") for line in lines)
    assert any(line.startswith("nvidia-dali ") for line in lines) and any(line.startswith("cuda: ") for line in lines)


def test_one_config_file_serves_both_stages_with_the_option_names(made, tmp_path):
    conf = tmp_path / "both.toml"
    conf.write_text('frames = 6\nsize = 32\n[tensorize]\nmode = "cpu"\n[extract]\ncompile = false\nbackbone = "timm/resnet18"\nrecipe = "stored"\n'
                    'weights = "none"\ndevice = "cpu"\nscales = "1.0,0.5"\n')
    r = runner.invoke(app, ["tensorize", str(made["raw"]), str(tmp_path / "p"), "--config", str(conf), "--print-config"])
    assert r.exit_code == 0, r.output
    printed = tomllib.loads(r.output)
    assert (printed["frames"], printed["mode"]) == (6, "cpu") and "backbone" not in printed and "cpu_decoder" not in printed
    r = runner.invoke(app, ["extract", str(made["processed"]), str(tmp_path / "f"), "--config", str(conf), "--print-config"])
    printed = tomllib.loads(r.output)
    assert r.exit_code == 0 and printed["compile"] is False and printed["scales"] == "1.0,0.5" and "compile_net" not in printed
    (tmp_path / "back.toml").write_text(r.output)
    assert runner.invoke(app, ["extract", str(made["processed"]), str(tmp_path / "f"), "--config", str(tmp_path / "back.toml"),
                               "--print-config"]).output == r.output


def test_a_cuda_device_index_is_understood(made, tmp_path):
    import torch

    r = runner.invoke(app, ["extract", str(made["processed"]), str(tmp_path / "f"), *BB[:4], "--device", "cuda:7"])
    assert r.exit_code == 2
    if torch.cuda.is_available():
        assert f"sees {torch.cuda.device_count()} CUDA device(s)" in r.stderr
    else:
        assert "--device cuda:7 requested but no CUDA device is visible" in r.stderr
    r = runner.invoke(app, ["extract", str(made["processed"]), str(tmp_path / "f"), *BB[:4], "--device", "cuda:x"])
    assert r.exit_code == 2 and "Supported values are: auto, cpu, cuda, cuda:N." in r.stderr


def test_tensorize_splits_does_only_those_and_leaves_the_others(made, tmp_path):
    import shutil

    out = tmp_path / "p"
    shutil.copytree(made["processed"], out)
    train = out / "train/apple/a/processed_data.pt"
    before = train.stat().st_mtime_ns
    r = runner.invoke(app, ["tensorize", str(made["raw"]), str(out), *TZ, "--splits", "val", "--overwrite"])
    assert r.exit_code == 0, r.output
    assert train.stat().st_mtime_ns == before and "removed stale" not in r.output
    assert [line.split("│")[1].strip() for line in r.output.splitlines() if line.count("│") >= 5] == ["val"]
    r = runner.invoke(app, ["tensorize", str(made["raw"]), str(out), *TZ, "--splits", "nope"])
    assert r.exit_code == 2 and "no videos for split(s) nope" in r.stderr
