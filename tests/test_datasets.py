"""Real datasets' shapes in: UCF101, Kinetics, Something-Something v2, annotation lists and
HMDB51 through ``vcp manifest`` -> ``vcp tensorize --manifest`` / ``vcp extract --from-videos
--manifest``: official indices, split membership as the split files say, frames inside the
segments (read back from the barcode frames)."""

from __future__ import annotations

import csv
import json

import h5py
import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import read_indices
from vcp.cli import app
from vcp.inputs.synth_datasets import (
    SSV2_LABELS,
    UCF_CLASSES,
    make_kinetics,
    make_ssv2,
    make_ucf101,
)
from vcp.store.contract import META_NAME, PT_NAME, group_files

runner = CliRunner()
TZ = ["-T", "4", "--size", "32"]
BB = ["--backbone", "timm/resnet18", "--weights", "none", "--device", "cpu", "--no-multi-scale", "--recipe", "stored"]


def _ok(args: list[str], code: int = 0):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == code, r.output
    return r


def _groups(out):
    """{(split, category): [(path, label, frame_indices, segment, barcodes)]} of a processed tree."""
    found = {}
    for pt in group_files(out, PT_NAME):
        data = torch.load(pt, weights_only=True)
        meta = json.loads((pt.parent / META_NAME).read_text())
        rows = []
        for i, record in enumerate(meta["videos"]):
            assert data["filenames"][i] == record["file"]
            rows.append((record["path"], int(data["labels"][i]), record["frame_indices"], record.get("segment"),
                         read_indices(data["videos"][i])))
        found[(meta["split"], meta["category"])] = rows
    return found


def test_ucf101_fold_and_official_indices(tmp_path):
    videos, splits = make_ucf101(tmp_path / "ucf")
    _ok(["manifest", "ucf101", videos, splits, "--fold", "1", "-o", tmp_path / "m.csv"])
    _ok(["tensorize", "--manifest", tmp_path / "m.csv", "--root", videos, tmp_path / "out", *TZ, "--mode", "cpu"])
    groups = _groups(tmp_path / "out")
    for i, name in enumerate(UCF_CLASSES):  # classInd.txt's 1..K, made 0-based
        train, test = groups[("train", name)], groups[("test", name)]
        assert [r[0] for r in train] == [f"{name}/v_{name}_g08_c01.avi", f"{name}/v_{name}_g09_c01.avi"]
        assert [r[0] for r in test] == [f"{name}/v_{name}_g01_c01.avi"]
        assert {r[1] for r in train + test} == {i}
        for _, _, indices, _, barcodes in train + test:
            assert barcodes == indices  # the frames are the ones metadata.json names
    meta = json.loads((tmp_path / "out/train/YoYo/YoYo" / META_NAME).read_text())
    assert meta["category_mapping"] == {"ApplyEyeMakeup": 0, "Basketball": 1, "YoYo": 2}
    assert meta["classes"] == list(UCF_CLASSES)
    _ok(["extract", "--from-videos", "--manifest", tmp_path / "m.csv", "--root", videos, tmp_path / "f", *TZ, *BB])
    with h5py.File(tmp_path / "f/test_features.h5") as h5:
        assert h5["labels"][:].tolist() == [0, 1, 2]
        assert json.loads(h5.attrs["classes"]) == list(UCF_CLASSES)
        assert [p.decode() for p in h5["paths"][:]] == [f"{c}/v_{c}_g01_c01.avi" for c in UCF_CLASSES]
        assert [n.decode() for n in h5["filenames"][:]] == [f"{c}/{c}/v_{c}_g01_c01.avi" for c in UCF_CLASSES]
        assert json.loads(h5.attrs["category_mapping"]) == meta["category_mapping"]


def test_kinetics_segments_missing_videos_and_ids_with_underscores(tmp_path):
    table, videos = make_kinetics(tmp_path / "k")
    r = _ok(["manifest", "kinetics", table, videos, "-o", tmp_path / "m.csv"], code=3)
    assert "vcp: missing: train/yoga/deadlink000_000000_000010.mp4 (kinetics.csv line 5)" in r.output
    _ok(["manifest", "kinetics", table, videos, "-o", tmp_path / "m.csv", "--allow-missing"])
    rows = list(csv.DictReader((tmp_path / "m.csv").open()))
    assert [(r["path"], r["index"], r["start"], r["end"]) for r in rows] == [
        ("_abc123XYZ0.mp4", "0", "1", "3"),
        ("train/passing American football (in game)/-dash_id_01_000002_000004.mp4", "0", "", ""),  # trimmed already
        ("Zz9_yy8-xx7.mp4", "1", "0", "2"),
        ("val_clip_01.mp4", "1", "3", "5"),
    ]
    _ok(["tensorize", "--manifest", tmp_path / "m.csv", "--root", videos, tmp_path / "out", *TZ, "--mode", "cpu"])
    groups = _groups(tmp_path / "out")
    # 10 fps: [1, 3) holds frames 10..29, [3, 5) frames 30..49; uniform picks 4 of them
    assert groups[("train", "passing American football (in game)")] == [
        ("_abc123XYZ0.mp4", 0, [10, 16, 22, 29], [1.0, 3.0], [10, 16, 22, 29]),
        ("train/passing American football (in game)/-dash_id_01_000002_000004.mp4", 0, [0, 6, 12, 19], None, [0, 6, 12, 19]),
    ]
    assert groups[("val", "yoga")] == [("val_clip_01.mp4", 1, [30, 36, 42, 49], [3.0, 5.0], [30, 36, 42, 49])]
    _ok(["extract", "--from-videos", "--manifest", tmp_path / "m.csv", "--root", videos, tmp_path / "f", *TZ, *BB,
         "--splits", "train"])
    with h5py.File(tmp_path / "f/train_features.h5") as h5:
        assert h5["frame_indices"][0].tolist() == [10, 16, 22, 29]
        assert h5["segments"][:2].tolist()[0] == [1.0, 3.0] and all(x != x for x in h5["segments"][1])  # NaN: none
        assert [p.decode() for p in h5["paths"][:]][2] == "Zz9_yy8-xx7.mp4"


def test_ssv2_labels_json_indices(tmp_path):
    labels, videos = make_ssv2(tmp_path / "s")
    _ok(["manifest", "ssv2", labels, videos, "-o", tmp_path / "m.csv"])
    _ok(["tensorize", "--manifest", tmp_path / "m.csv", "--root", videos, tmp_path / "out", *TZ, "--mode", "cpu"])
    groups = _groups(tmp_path / "out")
    official = {name: int(i) for name, i in SSV2_LABELS.items()}
    assert {(s, c): [(r[0], r[1]) for r in rows] for (s, c), rows in groups.items()} == {
        ("train", "Putting something on a surface"): [("101.webm", 0)],
        ("train", "Holding something next to something"): [("102.webm", 1), ("104.webm", 1)],
        ("train", "Pretending to pick something up"): [("103.webm", 2)],
        ("validation", "Pretending to pick something up"): [("201.webm", 2)],
        ("validation", "Putting something on a surface"): [("202.webm", 0)],
        ("test", "unlabeled"): [("301.webm", -1)],  # the test split's ids: unlabeled
    }
    meta = json.loads((tmp_path / "out/validation/Pretending to pick something up/Pretending to pick something up"
                       / META_NAME).read_text())
    assert meta["category_mapping"] == official
    from vcp.outputs.inspect import _preview_rows

    titles = [row[0] for row in _preview_rows(group_files(tmp_path / "out", PT_NAME), videos=8, tile=16, max_tiles=2)]
    assert "test: unlabeled/unlabeled/301.webm  label (unlabeled)" in titles
    _ok(["extract", "--from-videos", "--manifest", tmp_path / "m.csv", "--root", videos, tmp_path / "f", *TZ, *BB])
    with h5py.File(tmp_path / "f/validation_features.h5") as h5:
        assert h5["labels"][:].tolist() == [2, 0] and [p.decode() for p in h5["paths"][:]] == ["201.webm", "202.webm"]


def test_lists_and_hmdb51(tmp_path):
    for rel in ("clips/a b.mp4", "clips/c.mp4", "brush_hair/x.avi", "brush_hair/y.avi", "cartwheel/z.avi"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "train.txt").write_text("clips/a b.mp4 1\nclips/c.mp4 0\n")
    (tmp_path / "names.txt").write_text("zero\none\n")
    _ok(["manifest", "list", "--split", f"train={tmp_path / 'train.txt'}", "--root", tmp_path, "--classes",
         tmp_path / "names.txt", "-o", tmp_path / "l.csv"])
    assert (tmp_path / "l.csv").read_text() == "split,path,label,index\ntrain,clips/a b.mp4,one,1\ntrain,clips/c.mp4,zero,0\n"
    assert json.loads((tmp_path / "l.classes.json").read_text()) == ["zero", "one"]
    splits = tmp_path / "hmdb_splits"
    splits.mkdir()
    (splits / "brush_hair_test_split1.txt").write_text("x.avi 1 \ny.avi 2 \nw.avi 0 \n")
    (splits / "cartwheel_test_split1.txt").write_text("z.avi 1 \n")
    _ok(["manifest", "hmdb51", tmp_path, splits, "-o", tmp_path / "h.csv"])
    assert (tmp_path / "h.csv").read_text() == ("split,path,label,index\ntrain,brush_hair/x.avi,brush_hair,0\n"
                                                "test,brush_hair/y.avi,brush_hair,0\ntrain,cartwheel/z.avi,cartwheel,1\n")


@pytest.mark.parametrize("args, message", [
    (["tensorize", "--manifest", "M", "RAW", "OUT"], "with --manifest give OUT only"),
    (["tensorize", "OUT"], "missing argument OUT (or give --manifest CSV and OUT)"),
    (["extract", "--manifest", "M", "F"], "--manifest, --root, --classes and --allow-overlap choose videos"),
    (["tensorize", "RAW", "OUT", "--root", "R"], "--root is for --manifest"),
    (["tensorize", "--manifest", "RAW", "OUT"], "RAW: a folder, not a file"),  # a folder given as the manifest
])
def test_manifest_usage_errors(tmp_path, args, message):
    (tmp_path / "RAW").mkdir()
    r = runner.invoke(app, [str(tmp_path / a) if a in ("M", "RAW", "OUT", "F", "R") else a for a in args])
    assert r.exit_code == 2 and message in r.output, r.output


def test_a_manifest_runs_as_a_tree_does(tmp_path):
    """Dry run, settings file, up-to-date skipping (a changed segment redoes its group only),
    sharding + merge, and the preview's titles, on a Kinetics-shaped manifest."""
    from tests.test_scale_out import assert_same_features
    from vcp.outputs.inspect import _preview_rows
    from vcp.store.contract import group_files as groups_of

    table, videos = make_kinetics(tmp_path / "k")
    _ok(["manifest", "kinetics", table, videos, "-o", tmp_path / "m.csv", "--allow-missing"])
    m = ["--manifest", tmp_path / "m.csv", "--root", videos]
    plan = _ok(["tensorize", *m, tmp_path / "out", *TZ, "--dry-run"]).output
    assert f"{tmp_path / 'm.csv'} ->" in " ".join(plan.split()) and "val/yoga/yoga" in plan
    conf = _ok(["tensorize", *m, tmp_path / "out", *TZ, "--print-config"]).output
    assert f'manifest = "{tmp_path / "m.csv"}"' in conf and "allow_overlap = false" in conf
    (tmp_path / "run.toml").write_text(conf)
    _ok(["tensorize", "--config", tmp_path / "run.toml", tmp_path / "out", "--mode", "cpu"])
    before = {p: p.stat().st_mtime_ns for p in groups_of(tmp_path / "out", PT_NAME)}
    _ok(["tensorize", *m, tmp_path / "out", *TZ])  # the same rows and settings: every group up to date
    assert {p: p.stat().st_mtime_ns for p in before} == before
    (tmp_path / "m.csv").write_text((tmp_path / "m.csv").read_text().replace("val_clip_01.mp4,yoga,1,3,5",
                                                                             "val_clip_01.mp4,yoga,1,2,5"))
    _ok(["tensorize", *m, tmp_path / "out", *TZ])
    changed = sorted(p.parent.relative_to(tmp_path / "out").as_posix() for p, t in before.items() if p.stat().st_mtime_ns != t)
    assert changed == ["val/yoga/yoga"]
    assert json.loads((tmp_path / "out/val/yoga/yoga" / META_NAME).read_text())["videos"][0]["segment"] == [2.0, 5.0]
    titles = [row[0] for row in _preview_rows(groups_of(tmp_path / "out", PT_NAME), videos=8, tile=16, max_tiles=2)]
    assert {t.split(":")[0] for t in titles} == {"train", "val"}
    _ok(["extract", "--from-videos", *m, tmp_path / "single", *TZ, *BB])
    for i in (0, 1):
        _ok(["extract", "--from-videos", *m, tmp_path / "sharded", *TZ, *BB, "--shard", f"{i}/2"])
    _ok(["merge", tmp_path / "sharded"])
    assert_same_features(tmp_path / "single", tmp_path / "sharded")


def test_ssv2_short_names_and_any_subset_of_splits(tmp_path):
    labels, videos = make_ssv2(tmp_path / "s", prefix="")
    (labels / "train.json").unlink()  # a validation-only download
    _ok(["manifest", "ssv2", labels, videos, "-o", tmp_path / "m.csv"])
    rows = list(csv.DictReader((tmp_path / "m.csv").open()))
    assert [(r["split"], r["path"], r["label"], r["index"]) for r in rows] == [
        ("validation", "201.webm", "Pretending to pick something up", "2"),
        ("validation", "202.webm", "Putting something on a surface", "0"),
        ("test", "301.webm", "", ""),
    ]
    assert json.loads((tmp_path / "m.classes.json").read_text()) == list(SSV2_LABELS)  # the whole list, labels.json's order


def test_a_kinetics_label_holding_a_newline_is_refused_not_changed(tmp_path):
    table, videos = make_kinetics(tmp_path / "k")
    table.write_text(table.read_text() + '"yoga\nclass",val_clip_01,3,5,val\n')
    r = _ok(["manifest", "kinetics", table, videos, "-o", tmp_path / "m.csv"], code=2)
    assert "kinetics.csv, line 7: label 'yoga\\nclass' cannot name a folder: holds a control character" in r.output


def _kinetics_test_csv(table, extra=""):
    test = table.parent / "test.csv"  # the release's test CSV has no label column
    test.write_text("youtube_id,time_start,time_end,split\nZz9_yy8-xx7,1.5,3.7,test\n" + extra)
    return test


def test_kinetics_unlabeled_test_split_exact_times_and_the_class_count(tmp_path):
    table, videos = make_kinetics(tmp_path / "k")
    test = _kinetics_test_csv(table)
    r = _ok(["manifest", "kinetics", table, test, videos, "-o", tmp_path / "m.csv", "--allow-missing"])
    assert "the CSVs name 2 classes, not 400, 600, 700" in " ".join(r.output.split())
    rows = list(csv.DictReader((tmp_path / "m.csv").open()))
    assert (rows[-1]["split"], rows[-1]["label"], rows[-1]["index"], rows[-1]["start"], rows[-1]["end"]) == (
        "test", "", "", "1.5", "3.7")  # times kept exact, no label
    # a subset CSV with the dataset's class list keeps every class's official index
    (tmp_path / "labels.txt").write_text("abseiling\npassing American football (in game)\nyoga\nzumba\n")
    r = _ok(["manifest", "kinetics", table, videos, "-o", tmp_path / "s.csv", "--allow-missing", "--classes",
             tmp_path / "labels.txt"])
    assert "not 400" not in r.output
    assert {r["label"]: r["index"] for r in csv.DictReader((tmp_path / "s.csv").open())} == {
        "passing American football (in game)": "1", "yoga": "2"}
    _ok(["extract", "--from-videos", "--manifest", tmp_path / "m.csv", "--root", videos, tmp_path / "f", *TZ, *BB,
         "--splits", "test"])
    from vcp.data import FeatureDataset

    ds = FeatureDataset(tmp_path / "f/test_features.h5")
    assert ds.labels.tolist() == [-1] and ds.classes == ["passing American football (in game)", "yoga"]
    assert ds[0][3] == "Zz9_yy8-xx7.mp4" and ds.index_of("Zz9_yy8-xx7.mp4") == 0
    with pytest.raises(KeyError, match="no video named 'nope.mp4'"):
        ds.index_of("nope.mp4")


@pytest.mark.parametrize("row, message", [
    ("x1,inf,3,test\n", "time_start 'inf' is not a time"),
    ("x1,4,3,test\n", "time_end 3 is not after time_start 4"),
    ("x1,1,3\n", "line 3: 4 columns expected"),
    ("x1,1,3,..\n", "split '..' cannot name a folder"),
    ("x1,1,3,\n", "split '' cannot name a folder"),
])
def test_kinetics_bad_rows_are_one_line_before_any_work(tmp_path, row, message):
    """(Each row goes in the test CSV, which has no label column.)"""
    table, videos = make_kinetics(tmp_path / "k")
    r = _ok(["manifest", "kinetics", table, _kinetics_test_csv(table, row), videos, "-o", tmp_path / "m.csv"], code=2)
    assert message in r.output and not (tmp_path / "m.csv").exists()


def test_lists_zero_based_with_class_ind_unlabeled_and_numeric(tmp_path):
    videos, splits = make_ucf101(tmp_path / "ucf")
    # mmaction2's UCF101 lists: 0-based labels; classInd.txt (1-based) names them
    (tmp_path / "train.txt").write_text("YoYo/v_YoYo_g08_c01.avi 2\nApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 0\n")
    (tmp_path / "test.txt").write_text("Basketball/v_Basketball_g01_c01.avi\n")  # a path alone: unlabeled
    _ok(["manifest", "list", "--split", f"train={tmp_path / 'train.txt'}", "--split", f"test={tmp_path / 'test.txt'}",
         "--root", videos, "--classes", splits / "classInd.txt", "-o", tmp_path / "l.csv"])
    assert (tmp_path / "l.csv").read_text() == (
        "split,path,label,index\ntrain,YoYo/v_YoYo_g08_c01.avi,YoYo,2\n"
        "train,ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi,ApplyEyeMakeup,0\ntest,Basketball/v_Basketball_g01_c01.avi,,\n")
    assert json.loads((tmp_path / "l.classes.json").read_text()) == list(UCF_CLASSES)
    for classes in ([], ["--classes", "numeric"]):  # no names: each class is its number, 0..max
        r = _ok(["manifest", "list", "--split", f"train={tmp_path / 'train.txt'}", "--root", videos, *classes,
                 "-o", tmp_path / "n.csv"])
        assert json.loads((tmp_path / "n.classes.json").read_text()) == ["0", "1", "2"]
        assert ("no --classes names them" in r.output) == (not classes)


def test_allow_missing_is_one_summary_line_and_a_file(tmp_path):
    table, videos = make_kinetics(tmp_path / "k")
    r = _ok(["manifest", "kinetics", table, videos, "-o", tmp_path / "m.csv", "--allow-missing"])
    assert "vcp: missing:" not in r.output
    assert "1 listed videos are missing (train/yoga/deadlink000_000000_000010.mp4 (kinetics.csv line 5))" in r.output
    assert (tmp_path / "m.missing.txt").read_text() == "train/yoga/deadlink000_000000_000010.mp4 (kinetics.csv line 5)\n"


def test_manifest_output_never_replaces_what_is_not_its_own(tmp_path):
    import os

    videos, splits = make_ucf101(tmp_path / "ucf")
    fifo, node = tmp_path / "fifo", tmp_path / "null"
    os.mkfifo(fifo)
    os.mknod(node, 0o666 | __import__("stat").S_IFCHR, os.makedev(1, 3))  # a scratch copy of /dev/null
    (tmp_path / "file").write_text("x")
    (tmp_path / "link.csv").symlink_to(tmp_path / "file")
    cases = {
        splits / "trainlist01.txt": "one of this command's inputs",
        videos / "YoYo/v_YoYo_g08_c01.avi": "one of this command's inputs",
        fifo: "not a regular file", node: "not a regular file",
        tmp_path: "a folder", tmp_path / "file/m.csv": "a path under a file",
        tmp_path / "link.csv": "a symbolic link",
    }
    for target, message in cases.items():
        shown = target.parent if message == "a path under a file" else target
        before = shown.lstat()
        r = _ok(["manifest", "ucf101", videos, splits, "-o", target], code=2)
        assert message in r.output and len(r.output.strip().splitlines()) == 1, (target, r.output)
        assert shown.lstat().st_mode == before.st_mode and shown.lstat().st_size == before.st_size
    r = _ok(["manifest", "ucf101", videos, splits, "-o", ""], code=2)
    assert "not a file name" in r.output
    _ok(["manifest", "ucf101", videos, splits, "-o", tmp_path / "file"])  # a regular file of its own: replaced
    assert (tmp_path / "file").read_text().startswith("split,path,label,index\n")


@pytest.mark.parametrize("name, text, message", [
    ("train", '{"id": "1"}', "expected a JSON list of videos"),
    ("train", "[1, 2]", "entry 0: expected an object with an \"id\""),
    ("train", '[{"template": "Putting [something] on a surface"}]', "entry 0: expected an object with an \"id\""),
    ("train", "[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
    ("labels", '{"Putting something on a surface": "1.2", "b": "1.7"}', "expected a JSON object {template: index}"),
    ("labels", '{"Putting something on a surface": "-1"}', "expected a JSON object {template: index}"),
])
def test_malformed_ssv2_files_are_one_line_before_any_work(tmp_path, name, text, message):
    labels, videos = make_ssv2(tmp_path / "s")
    (labels / f"something-something-v2-{name}.json").write_text(text)
    r = _ok(["manifest", "ssv2", labels, videos, "-o", tmp_path / "m.csv"], code=2)
    assert message in r.output and len(r.output.strip().splitlines()) == 1 and not (tmp_path / "m.csv").exists()


@pytest.mark.parametrize("row, message", [
    ("train,a.mp4,x,99999999999999999999\n", "index '99999999999999999999' is not a class index"),
    ("train,a.mp4,x,-1\n", "index '-1' is not a class index"),
    (f"train,a.mp4,{'x' * 300}\n", "300 bytes long, over the 255 bytes a file system allows in a name"),
    (f"{'s' * 256},a.mp4,x\n", "over the 255 bytes"),
])
def test_manifest_values_a_file_system_or_a_loss_cannot_take(tmp_path, row, message):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "m.csv").write_text("split,path,label,index\n" + row if row.count(",") == 3 else "split,path,label\n" + row)
    r = _ok(["tensorize", "--manifest", tmp_path / "m.csv", tmp_path / "out", "--dry-run"], code=2)
    assert message in r.output and not (tmp_path / "out").exists()
