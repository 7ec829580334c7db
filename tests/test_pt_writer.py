import zipfile

import pytest
import torch

import vcp.pt_writer
from vcp.pt_writer import META_NAME, PT_NAME, PtWriter

EXPECTED = [(f"v{i}.mp4", i % 2) for i in range(4)]


@pytest.mark.parametrize("expected", [None, EXPECTED], ids=["buffer", "laid-out"])
def test_roundtrip_schema_and_valid_zip(tmp_path, expected):
    clips = [torch.randn(5, 3, 8, 8) for _ in range(4)]
    with PtWriter(tmp_path, frames=5, size=8, category_mapping={"a": 0, "b": 1}, expected=expected) as w:
        for i, c in enumerate(clips):
            w.add(c, f"v{i}.mp4", i % 2)
        w.commit({"hello": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [META_NAME, PT_NAME]
    for mmap in (False, True):
        d = torch.load(tmp_path / PT_NAME, weights_only=True, mmap=mmap)
        assert set(d) == {"videos", "labels", "filenames", "category_mapping"}
        assert d["videos"].dtype == torch.float32 and d["videos"].shape == (4, 5, 3, 8, 8)
        assert torch.equal(d["videos"], torch.stack(clips))
        assert d["labels"].dtype == torch.int64 and d["labels"].tolist() == [0, 1, 0, 1]
        assert d["filenames"] == ["v0.mp4", "v1.mp4", "v2.mp4", "v3.mp4"]
        assert d["category_mapping"] == {"a": 0, "b": 1}
    assert zipfile.ZipFile(tmp_path / PT_NAME).testzip() is None  # CRCs are right


def test_empty_group_still_loads(tmp_path):
    with PtWriter(tmp_path, frames=2, size=4, category_mapping={"a": 0}) as w:
        w.commit({})
    d = torch.load(tmp_path / PT_NAME, weights_only=True)
    assert d["videos"].shape == (0, 2, 3, 4, 4) and d["labels"].shape == (0,)


def test_no_file_left_when_interrupted(tmp_path):
    with pytest.raises(RuntimeError), PtWriter(tmp_path, frames=2, size=4, category_mapping={"a": 0}) as w:
        w.add(torch.zeros(2, 3, 4, 4), "a.mp4", 0)
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_wrong_shape_rejected(tmp_path):
    with PtWriter(tmp_path, frames=2, size=4, category_mapping={"a": 0}) as w, pytest.raises(ValueError, match="clip shape"):
        w.add(torch.zeros(3, 3, 4, 4), "a.mp4", 0)


def test_laid_out_archive_is_not_copied_when_everything_arrives(tmp_path, monkeypatch):
    def no_copy(*args, **kwargs):
        raise AssertionError("the clips were copied")

    monkeypatch.setattr(vcp.pt_writer._FileSource, "copy_to", no_copy)
    clips = [torch.randn(5, 3, 8, 8) for _ in range(4)]
    with PtWriter(tmp_path, frames=5, size=8, category_mapping={"a": 0, "b": 1}, expected=EXPECTED) as w:
        seen = {p.name for p in tmp_path.iterdir()}
        for (name, label), c in zip(EXPECTED, clips, strict=True):
            w.add(c, name, label)
        w.commit({})
    assert len(seen) == 1 and next(iter(seen)).endswith(".tmp")  # only the laid-out archive while writing
    assert sorted(p.name for p in tmp_path.iterdir()) == [META_NAME, PT_NAME]
    assert torch.equal(torch.load(tmp_path / PT_NAME, weights_only=True)["videos"], torch.stack(clips))


@pytest.mark.parametrize("arrive", [[0, 2, 3], [1, 0, 2, 3], []], ids=["one-failed", "reordered", "none"])
def test_laid_out_archive_falls_back_when_clips_differ(tmp_path, arrive):
    clips = [torch.randn(5, 3, 8, 8) for _ in range(4)]
    with PtWriter(tmp_path, frames=5, size=8, category_mapping={"a": 0, "b": 1}, expected=EXPECTED) as w:
        for i in arrive:
            w.add(clips[i], *EXPECTED[i])
        w.commit({})
    assert sorted(p.name for p in tmp_path.iterdir()) == [META_NAME, PT_NAME]
    assert zipfile.ZipFile(tmp_path / PT_NAME).testzip() is None
    d = torch.load(tmp_path / PT_NAME, weights_only=True)
    assert d["filenames"] == [EXPECTED[i][0] for i in arrive]
    assert d["labels"].tolist() == [EXPECTED[i][1] for i in arrive]
    assert d["videos"].shape == (len(arrive), 5, 3, 8, 8)
    if arrive:
        assert torch.equal(d["videos"], torch.stack([clips[i] for i in arrive]))


def test_laid_out_archive_leaves_nothing_when_interrupted(tmp_path):
    with pytest.raises(RuntimeError), PtWriter(tmp_path, frames=2, size=4, category_mapping={"a": 0}, expected=[("a.mp4", 0)]) as w:
        w.add(torch.zeros(2, 3, 4, 4), "a.mp4", 0)
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
