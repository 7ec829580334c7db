"""The manifest: parsing, class indices, and every bad input as one line naming file and row."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dali_pipes import SamplingSpec, VideoError
from dali_pipes._plan import sample_segment
from dali_pipes._probe import VideoInfo
from vcp.cli import app
from vcp.common.errors import LayoutError
from vcp.inputs.classes import read_classes
from vcp.inputs.manifest import read_manifest, read_rows

runner = CliRunner()


def _manifest(tmp_path, text: str, files=("a.mp4", "b.mp4", "c.mp4"), name="m.csv"):
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes(b"x")
    path = tmp_path / name
    path.write_text(text)
    return path


def test_rows_make_groups_with_the_official_indices(tmp_path):
    m = _manifest(tmp_path, "split,path,label,index,category,subcategory,start,end\n"
                            "train,a.mp4,YoYo,1,,,1.5,\n"
                            "train,b.mp4,Apply Eye[Makeup],0,,close up,,\n"
                            "test,c.mp4,YoYo,1,,,,4\n")
    tree = read_manifest(m)
    assert tree.category_mapping == {"Apply Eye[Makeup]": 0, "YoYo": 1}
    assert [(g.split, g.category, g.subcategory, [(v.path, v.segment) for v in g.videos]) for g in tree.groups] == [
        ("train", "Apply Eye[Makeup]", "close up", [("b.mp4", None)]),
        ("train", "YoYo", "YoYo", [("a.mp4", (1.5, None))]),
        ("test", "YoYo", "YoYo", [("c.mp4", (None, 4.0))]),
    ]
    assert tree.groups[0].files == (tmp_path / "b.mp4",)
    assert [tree.item(v) for v in tree.groups[1].videos] == [(str(tmp_path / "a.mp4"), "a.mp4", (1.5, None))]
    assert tree.groups[1].rows == ["YoYo", ["a.mp4"], [(1.5, None)]]  # what the group's fingerprint counts


@pytest.mark.parametrize("classes, want", [
    ("1 YoYo\n2 Archery\n", {"YoYo": 0, "Archery": 1}),  # UCF101's classInd (1-based: made 0-based)
    ("0 YoYo\n1 Archery\n", {"YoYo": 0, "Archery": 1}),  # numbered from 0: kept
    ("YoYo\nArchery\n", {"YoYo": 0, "Archery": 1}),  # names, one a line
    ('{"YoYo": "1", "Archery": "0"}', {"Archery": 0, "YoYo": 1}),  # SSv2's labels.json
])
def test_classes_file_gives_the_indices(tmp_path, classes, want):
    (tmp_path / "classes.txt").write_text(classes)
    m = _manifest(tmp_path, "split,path,label\ntrain,a.mp4,YoYo\ntrain,b.mp4,Archery\n")
    assert read_manifest(m, classes=str(tmp_path / "classes.txt")).category_mapping == want
    assert read_manifest(m).category_mapping == {"Archery": 0, "YoYo": 1}  # without: sorted names


BAD = [
    ("", "empty file"),
    ("train,a.mp4,x\n", "line 1: no header line"),
    ("split,path\ntrain,a.mp4\n", "line 1: missing column(s) label"),
    ("split,path,label,lable\ntrain,a.mp4,x,y\n", "unknown column(s) lable"),
    ("split,path,label\n", "no rows"),
    ("split,path,label\ntrain,a.mp4,x\ntrain,a.mp4,x\n", "line 3: duplicate row: train a.mp4 is also line 2"),
    ("split,path,label,start,end\ntrain,a.mp4,x,1,2\ntrain,a.mp4,x,3,4\n", "line 3: a.mp4 is in split train twice"),
    ("split,path,label,start\ntrain,a.mp4,x,abc\n", "line 2: start 'abc' is not a time"),
    ("split,path,label,start\ntrain,a.mp4,x,-1\n", "line 2: start '-1' is not a time"),
    ("split,path,label,start,end\ntrain,a.mp4,x,5,5\n", "line 2: end 5 is not after start 5"),
    ("split,path,label,end\ntrain,a.mp4,x,nan\n", "line 2: end 'nan' is not a time"),
    ("split,path,label,index\ntrain,a.mp4,x,1\ntrain,b.mp4,x,2\n", "line 3: label 'x' has index 2 here and 1 above"),
    ("split,path,label,index\ntrain,a.mp4,x,0\ntrain,b.mp4,y,2\n", "no class has index 1): labels are 0..K-1"),
    ("split,path,label,index\ntrain,a.mp4,x,1\ntrain,b.mp4,y,2\n", "no class has index 0"),  # 1-based: refused, not shifted
    ("split,path,label,index\ntrain,a.mp4,x,\u00b2\n", "line 2: index '\u00b2' is not a class index"),
    ("split,path,label,index\ntrain,a.mp4,,3\n", "line 2: index 3 without a label"),
    ("split,path,label,index\ntrain,a.mp4,x,1\ntrain,b.mp4,y,1\n", "line 3: index 1 is given to 'y' and 'x'"),
    ("split,path,label,index\ntrain,a.mp4,x,\n", "line 2: empty index"),
    ("split,path,label\ntrain,a.mp4,a/b\n", "line 2: label 'a/b' cannot name a folder"),
    ("split,path,label\ntrain,a.mp4\n", "line 2: 2 values for 3 columns"),
    ("split,path,label\ntrain,,x\n", "line 2: empty path"),
    ("split,path,label\nno,such.mp4,x\n", "none of the 1 paths"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_bad_manifests_are_one_line_naming_the_row(tmp_path, text, message):
    m = _manifest(tmp_path, text)
    with pytest.raises(LayoutError) as err:
        read_manifest(m)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(m) in str(err.value)


def test_not_utf8_names_the_line(tmp_path):
    m = tmp_path / "m.csv"
    m.write_bytes(b"split,path,label\ntrain,a.mp4,x\ntrain,caf\xe9.mp4,x\n")
    with pytest.raises(LayoutError, match="line 3: not valid UTF-8"):
        read_rows(m)


def test_root_confines_paths(tmp_path):
    root = tmp_path / "videos"
    (root / "in").mkdir(parents=True)
    (root / "in/a.mp4").write_bytes(b"x")
    (tmp_path / "secret.mp4").write_bytes(b"x")
    (root / "in/link.mp4").symlink_to(tmp_path / "secret.mp4")
    for path, line in (("../secret.mp4", 3), (str(tmp_path / "secret.mp4"), 3), ("in/link.mp4", 3)):
        m = tmp_path / "m.csv"
        m.write_text(f"split,path,label\ntrain,in/a.mp4,x\ntrain,{path},x\n")
        with pytest.raises(LayoutError, match=f"line {line}: path .* leads outside --root"):
            read_manifest(m, root=root)
        (root / "m.csv").write_text(m.read_text())
        assert len(read_manifest(root / "m.csv").groups[0].files) == 2  # without --root: the manifest's own folder, trusted
    m.write_text("split,path,label\ntrain,in/a.mp4,x\n")
    assert read_manifest(m, root=root).groups[0].files == (root / "in/a.mp4",)


def test_group_rules(tmp_path):
    m = _manifest(tmp_path, "split,path,label,category\ntrain,a.mp4,x,c\ntrain,b.mp4,y,c\n")
    with pytest.raises(LayoutError, match="line 3: train/c/c holds labels 'x' and 'y'"):
        read_manifest(m)
    m = _manifest(tmp_path, "split,path,label\ntrain,d1/a.mp4,x\ntrain,d2/a.mp4,x\n", files=("d1/a.mp4", "d2/a.mp4"))
    with pytest.raises(LayoutError, match="line 3: train/x/x has two files named a.mp4"):
        read_manifest(m)


def test_overlap_between_splits_is_a_warning(tmp_path, capsys):
    m = _manifest(tmp_path, "split,path,label\ntrain,a.mp4,x\ntest,a.mp4,x\ntest,b.mp4,x\n")
    read_manifest(m)
    err = capsys.readouterr().err
    assert "1 video(s)" in err and "train and test" in err and "--allow-overlap" in err
    read_manifest(m, allow_overlap=True)
    assert capsys.readouterr().err == ""


def test_unknown_class_and_bad_classes_files(tmp_path):
    m = _manifest(tmp_path, "split,path,label\ntrain,a.mp4,x\ntrain,b.mp4,zz\n")
    (tmp_path / "c.txt").write_text("0 x\n1 y\n")
    with pytest.raises(LayoutError, match="line 3: label 'zz' is not in --classes"):
        read_manifest(m, classes=str(tmp_path / "c.txt"))
    (tmp_path / "d.txt").write_text("0 x\n0 y\n")
    with pytest.raises(LayoutError, match="index 0 is given to 'x' and 'y'"):
        read_classes(str(tmp_path / "d.txt"), names=[])
    with pytest.raises(LayoutError, match="are not integers"):
        read_classes("numeric", names=["1", "cat"])


def test_numeric_class_folders_warn_and_classes_numeric(tmp_path, videos):
    raw = tmp_path / "raw"
    for k in (0, 1, 2, 10):
        videos.copy_to(raw / "train" / str(k) / "v.mp4", codec="mjpeg", num_frames=4)
    plan = runner.invoke(app, ["tensorize", str(raw), str(tmp_path / "o"), "--dry-run"])
    assert "the class folders are numbers" in plan.output and "10 -> 2, 2 -> 3" in plan.output
    r = runner.invoke(app, ["tensorize", str(raw), str(tmp_path / "o"), "--classes", "numeric", "-T", "2", "--size", "16"])
    assert r.exit_code == 0, r.output
    assert "class folders are numbers" not in r.output
    meta = json.loads((tmp_path / "o/train/10/10/metadata.json").read_text())
    # every number up to the largest is a class (3..9 have no video): labels a loss of width 11 takes
    assert meta["label"] == 10 and meta["category_mapping"] == {str(i): i for i in range(11)}
    assert meta["classes"] == [str(i) for i in range(11)]


def _info(times):
    return VideoInfo(path="v.mp4", codec="h264", width=8, height=8, fps=10.0, num_frames=len(times), pix_fmt="yuv420p",
                     declared_frames=0, frame_times=tuple(times))


def test_segment_sampling_counts_only_the_frames_inside():
    info = _info([i / 10 for i in range(60)])  # 6 s at 10 fps
    idx, _ = sample_segment(SamplingSpec("uniform", frames=4), info, "v", (1.0, 3.0))
    assert idx.tolist() == [10, 16, 22, 29]  # n = 20 frames in [1, 3): 10 + linspace(0, 19, 4)
    idx, _ = sample_segment(SamplingSpec("segment", frames=4), info, "v", (None, 2.0))
    assert idx.tolist() == [2, 7, 12, 17]
    idx, _ = sample_segment(SamplingSpec("center", frames=3, clip_duration=1.0), info, "v", (4.0, None))
    assert idx.tolist() == [45, 49, 54]  # w = 10 of the 20 frames in [4, 6): start 5 -> 45
    vfr = _info([0.0, 0.5, 0.6, 0.61, 2.0, 2.2, 3.5])  # a phone's variable rate: by time, not index
    assert sample_segment(SamplingSpec("uniform", frames=3), vfr, "v", (0.55, 2.1))[0].tolist() == [2, 3, 4]
    with pytest.raises(VideoError, match=r"segment \[7, 9\) holds no frame \(the video's last frame is at 5.900 s\)"):
        sample_segment(SamplingSpec("uniform", frames=4), info, "v", (7.0, 9.0))


def test_100k_rows_parse(tmp_path):
    """Every row of a 100,000-row manifest comes back right (its time: make bench)."""
    m = tmp_path / "big.csv"
    m.write_text("split,path,label,start,end\n" + "".join(f"train,v/{i:06d}_x.mp4,c{i % 400},1,2\n" for i in range(100_000)))
    rows = read_rows(m)
    assert len(rows) == 100_000 and rows[-1].path == "v/099999_x.mp4" and rows[-1].segment == (1.0, 2.0)
    assert np.unique([r.label for r in rows]).size == 400


def test_the_class_list_is_whole_and_agrees_with_the_index_column(tmp_path):
    """A subset's mapping is the dataset's whole list (from --classes or the sidecar), and an
    index column that contradicts it is refused row by row."""
    m = _manifest(tmp_path, "split,path,label,index\ntrain,a.mp4,b,1\ntrain,b.mp4,d,3\n")
    (tmp_path / "all.json").write_text(json.dumps(["a", "b", "c", "d"]))
    tree = read_manifest(m, classes=str(tmp_path / "all.json"))
    assert tree.category_mapping == {"a": 0, "b": 1, "c": 2, "d": 3}
    assert [tree.label_of(g) for g in tree.groups] == [1, 3]
    (tmp_path / "m.classes.json").write_text(json.dumps(["a", "b", "c", "d"]))  # what vcp manifest writes beside m.csv
    assert read_manifest(m).category_mapping == {"a": 0, "b": 1, "c": 2, "d": 3}
    (tmp_path / "m.classes.json").write_text(json.dumps(["a", "c", "b", "d"]))
    with pytest.raises(LayoutError, match=r"line 2: label 'b' has index 1 here but index 2 in --classes .*m.classes.json"):
        read_manifest(m)
    m2 = _manifest(tmp_path, "split,path,label\ntrain,a.mp4,d\n", name="n.csv")
    assert read_manifest(m2, classes=str(tmp_path / "all.json")).category_mapping == {"a": 0, "b": 1, "c": 2, "d": 3}


@pytest.mark.parametrize("text, message", [
    ('["a", "b", "a"]', "class 'a' is listed twice"),
    ('{"a": 0, "b": 1, "a": 2}', "class 'a' is listed twice"),
    ("1 a\n2 b\n2 c\n", "index 2 is given to 'b' and 'c'"),
    ("1 a\n2 b\n1 a\n", "line 3: class 'a' is listed twice"),
    ('{"a": 0, "b": 2}', "no class has index 1"),
    ('{"a": 5, "b": 6}', "indices start at 5"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"a": "\u00b2"}', "is not a class index"),
])
def test_bad_class_lists(tmp_path, text, message):
    (tmp_path / "c.txt").write_text(text)
    with pytest.raises(LayoutError, match=message):
        read_classes(str(tmp_path / "c.txt"), names=[])


def test_unlabeled_rows_and_numeric_labels(tmp_path, capsys):
    m = _manifest(tmp_path, "split,path,label\ntrain,a.mp4,10\ntrain,b.mp4,2\ntest,c.mp4,\n")
    tree = read_manifest(m)
    assert "the class folders are numbers" in capsys.readouterr().err  # text-sorted numbers: said
    assert tree.category_mapping == {"10": 0, "2": 1}
    test = tree.groups_of("test")[0]
    assert (test.category, tree.label_of(test)) == ("unlabeled", -1)
    assert read_manifest(m, classes="numeric").category_mapping == {str(i): i for i in range(11)}


def test_overlap_compares_the_files_not_the_spelling(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d/a.mp4").write_bytes(b"x")
    (tmp_path / "link.mp4").symlink_to(tmp_path / "d/a.mp4")
    for other in ("./d/a.mp4", "d//a.mp4", "link.mp4"):
        m = _manifest(tmp_path, f"split,path,label\ntrain,d/a.mp4,x\ntest,{other},x\n", files=())
        read_manifest(m)
        assert "1 video(s)" in capsys.readouterr().err, other
