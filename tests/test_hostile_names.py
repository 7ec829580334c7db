"""Names are data: nothing written or deleted outside OUT, no video silently skipped, no
name read as markup, sidecar files ignored and counted, temp names that always fit."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from vcp.cli import app
from vcp.common.progress import console
from vcp.inputs.layout import Group, RawTree, discover_raw
from vcp.stages.tensorize import remove_stale_groups
from vcp.store.contract import META_NAME, PT_NAME
from vcp.store.lock import output_lock

runner = CliRunner()
TZ = ["--frames", "4", "--size", "32", "--mode", "cpu"]
BB = ["--backbone", "timm/resnet18", "--weights", "none", "--device", "cpu", "--recipe", "stored"]


def errors_of(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("vcp: error:")]


def snapshot(root: Path, skip: Path) -> dict:
    """Every entry under ``root`` (links not followed) but those under ``skip``: its kind,
    and a file's size and mtime, so that any file or folder made, changed or removed
    outside ``skip`` shows."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            if path == skip or skip in path.parents:
                continue
            st = path.lstat()
            out[path] = (st.st_mode,) if path.is_dir() and not path.is_symlink() else (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def craft_features(path: Path, names: list, *, rows: int = 3, dim: int = 4, mapping=None) -> Path:
    """A features file as vcp writes it, with ``names`` stored as they are (bytes allowed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(names)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("features", data=np.arange(n * rows * dim, dtype=np.float32).reshape(n, rows, dim),
                          chunks=(1, rows, dim), compression="gzip")
        h5.create_dataset("labels", data=np.zeros(n, np.int64))
        h5.create_dataset("num_frames", data=np.full(n, rows, np.int32))
        raw = [x if isinstance(x, bytes) else x.encode("utf-8", "surrogateescape") for x in names]
        if any(b"\x00" in x for x in raw):  # variable-length strings cannot hold a NUL: fixed-length bytes can
            h5.create_dataset("filenames", data=np.array(raw, dtype=f"S{max(map(len, raw))}"))
        else:
            h5.create_dataset("filenames", data=raw, dtype=h5py.string_dtype())
        h5.attrs["category_mapping"] = json.dumps(mapping or {"cat": 0})
        h5.attrs["num_videos"], h5.attrs["max_frames"], h5.attrs["feature_dim"] = n, rows, dim
    return path


HOSTILE = [
    "../../sentinel/ESCAPED",
    "../../../sentinel/ESCAPED",
    "cat/../../../sentinel/ESCAPED",
    "/tmp/vcp-absolute-ESCAPED",
    "cat\\..\\..\\ESCAPED",
    "cat//sub/x.mp4",
    "cat/sub/new\nline.mp4",
    "cat/./sub/x.mp4",
    "",
]


def test_export_never_writes_outside_out_whatever_the_stored_names(tmp_path):
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep.txt").write_text("x")
    features = tmp_path / "features"
    craft_features(features / "train_features_multiscale.h5", ["cat/sub/good.mp4", *HOSTILE])
    out = tmp_path / "a" / "b" / "out"
    out.parent.mkdir(parents=True)
    before = snapshot(tmp_path, out)
    r = runner.invoke(app, ["export", str(features), str(out)])
    assert r.exit_code == 3, r.output
    assert snapshot(tmp_path, out) == before  # nothing outside OUT changed
    assert not Path("/tmp/vcp-absolute-ESCAPED.npy").exists()
    errors = errors_of(r)
    assert len(errors) == len(HOSTILE) and all("not exported" in e for e in errors)
    assert all(f"row {i}" in errors[i - 1] for i in range(1, len(HOSTILE) + 1))
    assert np.load(out / "train/cat/sub/good.mp4.npy").shape == (3, 4)
    index = (out / "index.csv").read_text().splitlines()
    assert index[1:] == ["train,train/cat/sub/good.mp4.npy,0,3,,,,"]  # no fps, path, segment: a crafted file


def test_export_refuses_a_name_through_a_link_inside_out_and_a_nul_byte(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    (out / "train" / "linked").symlink_to(elsewhere, target_is_directory=True)
    features = craft_features(tmp_path / "f" / "train_features.h5", ["linked/sub/v.mp4", b"cat/a\x00b.mp4", "cat/sub/ok.mp4"])
    r = runner.invoke(app, ["export", str(features), str(out)])
    assert r.exit_code == 3, r.output
    assert list(elsewhere.iterdir()) == []
    errors = errors_of(r)
    assert len(errors) == 2 and "row 0" in errors[0] and "symbolic link" in errors[0] and "row 1" in errors[1]
    assert (out / "train/cat/sub/ok.mp4.npy").is_file()


def test_a_split_named_by_a_crafted_file_name_is_refused_and_the_rest_exported(tmp_path):
    features = tmp_path / "features"
    craft_features(features / ".._features_multiscale.h5", ["cat/sub/v.mp4"])
    craft_features(features / "train_features_multiscale.h5", ["cat/sub/v.mp4"])
    out = tmp_path / "out"
    before = snapshot(tmp_path, out)
    r = runner.invoke(app, ["export", str(features), str(out)])
    assert r.exit_code == 3, r.output
    assert snapshot(tmp_path, out) == before
    (error,) = errors_of(r)
    assert ".._features_multiscale.h5" in error and "split name '..'" in error
    assert (out / "train/cat/sub/v.mp4.npy").is_file()


def test_two_features_files_of_one_split_are_refused_naming_both(tmp_path):
    features = tmp_path / "features"
    craft_features(features / "train_features.h5", ["cat/sub/v.mp4"])
    craft_features(features / "train_features_multiscale.h5", ["cat/sub/v.mp4"])
    r = runner.invoke(app, ["export", str(features), str(tmp_path / "out")])
    assert r.exit_code == 2
    assert "train_features.h5 and train_features_multiscale.h5" in r.stderr and not (tmp_path / "out").exists()


def test_export_takes_the_out_lock(tmp_path):
    features = craft_features(tmp_path / "f" / "train_features.h5", ["cat/sub/v.mp4"])
    out = tmp_path / "out"
    out.mkdir()
    with output_lock(out):
        r = runner.invoke(app, ["export", str(features), str(out)])
    assert r.exit_code == 2 and "in use by pid" in r.stderr
    assert not (out / "train").exists()


def test_a_long_legal_name_exports(tmp_path):
    name = "cat/sub/" + "v" * 240 + ".mp4"  # 244 characters: the file fits, ".<name>.npy.<pid>.tmp" would not
    features = craft_features(tmp_path / "f" / "train_features.h5", [name])
    out = tmp_path / "out"
    r = runner.invoke(app, ["export", str(features), str(out)])
    assert r.exit_code == 0, r.output
    assert np.load(out / "train" / f"{name}.npy").shape == (3, 4)
    assert not list(out.rglob("*.tmp"))


def test_a_deleted_features_file_takes_its_exported_files_along(tmp_path):
    features = tmp_path / "f"
    craft_features(features / "train_features.h5", ["cat/sub/v.mp4"])
    craft_features(features / "val_features.h5", ["cat/sub/w.mp4"])
    out = tmp_path / "out"
    assert runner.invoke(app, ["export", str(features), str(out)]).exit_code == 0
    (features / "val_features.h5").unlink()
    r = runner.invoke(app, ["export", str(features), str(out)])
    assert r.exit_code == 0, r.output
    assert not (out / "val/cat/sub/w.mp4.npy").exists() and (out / "train/cat/sub/v.mp4.npy").is_file()
    assert [line.split(",")[0] for line in (out / "index.csv").read_text().splitlines()[1:]] == ["train"]


def test_stale_group_removal_never_follows_a_link_nor_removes_what_vcp_did_not_write(tmp_path):
    out = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere" / "shared"
    elsewhere.mkdir(parents=True)
    for d in (elsewhere, out / "train/catA/mine"):
        d.mkdir(parents=True, exist_ok=True)
        (d / PT_NAME).write_bytes(b"not ours")
        (d / META_NAME).write_text(json.dumps({"pair_id": "x"}))
    (out / "train/catZ").mkdir(parents=True)
    (out / "train/catZ/shared").symlink_to(elsewhere, target_is_directory=True)
    tree = RawTree(root=tmp_path / "raw", groups=(Group("train", "catB", "catB", ()),), categories=("catB",))
    with console(stderr=True) as c, c.capture() as captured:
        removed = remove_stale_groups(out, tree, c)
    assert removed == []
    assert (elsewhere / PT_NAME).read_bytes() == b"not ours" and (elsewhere / META_NAME).is_file()
    assert (out / "train/catA/mine" / PT_NAME).is_file()  # a .pt vcp did not write stays
    assert not (out / "train/catA/mine" / META_NAME).exists()  # vcp's own metadata goes
    text = " ".join(captured.get().split())
    assert "is a symbolic link" in text and "not written by vcp" in text


@pytest.fixture
def kinetics_like(tmp_path, videos):
    """A Kinetics-shaped tree: YouTube ids starting with '_' and '-', sidecars, a hidden file."""
    raw = tmp_path / "raw"
    for name in ("_1aBcD3fGh_000010_000020.mp4", "-xYz_000001_000011.mp4", "plain_000000_000010.mp4"):
        videos.copy_to(raw / "train/abseiling" / name, codec="h264", num_frames=12)
    videos.copy_to(raw / "train/abseiling/.in_progress.mp4", codec="h264", num_frames=12)
    for sidecar in ("README.txt", "Thumbs.db", "labels.json", "list.csv", "poster.jpg"):
        (raw / "train/abseiling" / sidecar).write_bytes(b"sidecar")
    (raw / "train/abseiling/nested").mkdir()
    videos.copy_to(raw / "train/abseiling/nested/deep/v.mp4", codec="h264", num_frames=12)
    return raw


def test_ids_starting_with_underscore_or_dash_are_videos_and_sidecars_are_counted(kinetics_like, tmp_path):
    tree = discover_raw(kinetics_like)
    (group,) = tree.groups
    assert [p.name for p in group.files] == ["-xYz_000001_000011.mp4", "_1aBcD3fGh_000010_000020.mp4", "plain_000000_000010.mp4"]
    out = tmp_path / "out"
    dry = runner.invoke(app, ["tensorize", str(kinetics_like), str(out), *TZ, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    summary = "ignored: 1 hidden, 5 non-video (README.txt, Thumbs.db, labels.json, +2 more), 1 nested deeper than the layout (train/abseiling/nested/deep)"
    assert summary in " ".join(dry.output.split())
    r = runner.invoke(app, ["tensorize", str(kinetics_like), str(out), *TZ])
    assert r.exit_code == 0, r.output  # sidecars are not failed videos
    assert summary in " ".join(r.output.split())
    import torch

    data = torch.load(out / "train/abseiling/abseiling" / PT_NAME, weights_only=True)
    assert data["filenames"] == [p.name for p in group.files]


def test_a_folder_link_leading_outside_raw_is_reported_not_followed(tmp_path, videos):
    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/cat/v.mp4", codec="h264", num_frames=12)
    (raw / "train/up").symlink_to("../..", target_is_directory=True)
    (raw / "train/cat/proc").symlink_to("/proc/self", target_is_directory=True)
    tree = discover_raw(raw)
    assert [g.rel_dir.as_posix() for g in tree.groups] == ["train/cat/cat"]
    assert {(i.kind, i.relpath) for i in tree.ignored} == {("link", "train/up"), ("link", "train/cat/proc")}


MARKUP = {"split": "[bold]train", "category": "Putting [something] on a surface", "file": "[link=http:e]v[red].mp4"}


def test_names_with_square_brackets_are_shown_as_they_are_everywhere(tmp_path, videos):
    raw = tmp_path / "raw"
    videos.copy_to(raw / MARKUP["split"] / MARKUP["category"] / MARKUP["file"], codec="h264", num_frames=12)
    # a name cannot hold "/", but joined names can: the group "a[/x]sub" reads as a closing tag
    videos.copy_to(raw / MARKUP["split"] / "a[" / "x]sub" / "w.mp4", codec="h264", num_frames=12)
    processed, features, exported = tmp_path / "p", tmp_path / "f", tmp_path / "e"
    runs = [
        (["tensorize", str(raw), str(processed), *TZ, "--dry-run"], "[bold]train/a[/x]sub"),
        (["tensorize", str(raw), str(processed), *TZ], MARKUP["split"]),
        (["extract", str(processed), str(features), *BB, "--dry-run"], MARKUP["split"]),
        (["extract", str(processed), str(features), *BB], MARKUP["split"]),
        (["extract", "--from-videos", str(raw), str(tmp_path / "fv"), *BB, *TZ[:4], "--dry-run"], MARKUP["split"]),
        (["inspect", str(processed)], "[bold]train/a[/x]sub"),
        (["inspect", str(features)], MARKUP["split"]),
        (["export", str(features), str(exported)], "exported 2 video(s)"),
        (["tensorize", str(raw), str(tmp_path / "s"), *TZ, "--shard", "0/2"], MARKUP["split"]),
        (["tensorize", str(raw), str(tmp_path / "s"), *TZ, "--shard", "1/2"], MARKUP["split"]),
        (["merge", str(tmp_path / "s")], "[bold]train/a[/x]sub"),
    ]
    for args, shown in runs:
        r = runner.invoke(app, args)
        assert r.exit_code == 0, (args, r.output)
        assert shown in r.output, (args, r.output)
    name = f"{MARKUP['category']}/{MARKUP['category']}/{MARKUP['file']}.npy"
    assert (exported / MARKUP["split"] / name).is_file()
    assert (tmp_path / "s" / MARKUP["split"] / "a[" / "x]sub" / PT_NAME).is_file()


def test_readers_never_write_into_their_input(tmp_path, videos):
    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/cat/v.mp4", codec="h264", num_frames=12)
    processed = tmp_path / "p"
    assert runner.invoke(app, ["tensorize", str(raw), str(processed), *TZ]).exit_code == 0
    group = processed / "train/cat/cat"
    pending = group / f".{META_NAME}.999999999.tmp"  # a commit killed between its two renames
    shutil.move(group / META_NAME, pending)
    before = snapshot(processed, tmp_path / "nothing")
    from vcp.data import ClipDataset

    assert len(ClipDataset(processed, "train")) == 1
    assert runner.invoke(app, ["inspect", str(processed)]).exit_code == 0
    r = runner.invoke(app, ["extract", str(processed), str(tmp_path / "f"), *BB])
    assert r.exit_code == 0, r.output
    assert snapshot(processed, tmp_path / "nothing") == before  # nothing renamed in the input
    with h5py.File(tmp_path / "f/train_features_multiscale.h5") as h5:
        assert h5["frame_indices"][0].tolist() != [-1] * 4  # the pending metadata was read


@pytest.mark.parametrize("source", ["pt", "videos"])
def test_the_same_tree_spelled_another_way_is_up_to_date(tmp_path, videos, monkeypatch, source):
    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/cat/v.mp4", codec="h264", num_frames=12)
    monkeypatch.chdir(tmp_path)
    if source == "pt":
        assert runner.invoke(app, ["tensorize", "raw", "p", *TZ]).exit_code == 0
        relative, absolute = ["p"], [str(tmp_path / "p")]
    else:
        relative, absolute = ["--from-videos", "raw", *TZ[:4]], ["--from-videos", str(raw), *TZ[:4]]
    assert runner.invoke(app, ["extract", *relative, "f", *BB]).exit_code == 0
    before = (tmp_path / "f/train_features_multiscale.h5").stat().st_mtime_ns
    r = runner.invoke(app, ["extract", *absolute, str(tmp_path / "f"), *BB])
    assert r.exit_code == 0 and "up to date" in r.output, r.output
    assert (tmp_path / "f/train_features_multiscale.h5").stat().st_mtime_ns == before


def test_the_ignored_summary_names_each_sidecar_once():
    from vcp.inputs.layout import Ignored, ignored_summary

    found = [Ignored("non-video", f"train/class {k}/README.txt") for k in range(400)] + [Ignored("hidden", "train/.x")]
    assert ignored_summary(found) == "ignored: 1 hidden, 400 non-video (README.txt)"
