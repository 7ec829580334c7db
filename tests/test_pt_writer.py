import zipfile

import pytest
import torch

from vcp.pt_writer import META_NAME, PT_NAME, PtWriter


def test_roundtrip_schema_and_valid_zip(tmp_path):
    clips = [torch.randn(5, 3, 8, 8) for _ in range(4)]
    with PtWriter(tmp_path, frames=5, size=8, category_mapping={"a": 0, "b": 1}) as w:
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
