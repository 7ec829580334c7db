import json
import os
import zipfile

import pytest
import torch

import vcp.store.appender
import vcp.store.pt_writer
from vcp.store.appender import ClipAppender
from vcp.store.pt_writer import META_NAME, PT_NAME, PtWriter

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
        assert set(d) == {"videos", "labels", "filenames", "category_mapping", "classes", "storage", "normalization",
                          "pair_id"}
        assert d["storage"] == "float32" and d["normalization"] == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
        assert d["pair_id"] == json.loads((tmp_path / META_NAME).read_text())["pair_id"]
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

    monkeypatch.setattr(vcp.store.pt_writer.FileSource, "copy_to", no_copy)
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


def _pair(directory, fill, *, dtype=torch.float32, normalization=None):
    with PtWriter(directory, frames=2, size=4, category_mapping={"a": 0}, dtype=dtype, normalization=normalization) as w:
        w.add(torch.full((2, 3, 4, 4), float(fill)), "a.mp4", 0)
        w.commit({"fill": fill})
    return json.loads((directory / META_NAME).read_text())["pair_id"]


def test_kill_between_the_two_renames_is_rolled_forward(tmp_path, monkeypatch):
    """The archive is renamed first; a kill before the metadata's rename leaves the pending
    metadata, which settle_pair puts in place: the new pair, whole."""
    from vcp.store.pair import settle_pair

    _pair(tmp_path, 1)
    real_replace = os.replace

    def die_on_metadata(src, dst):
        if str(dst).endswith(META_NAME):
            raise KeyboardInterrupt  # the process dies here
        real_replace(src, dst)

    monkeypatch.setattr(vcp.store.pt_writer.os, "replace", die_on_metadata)
    with pytest.raises(KeyboardInterrupt):
        _pair(tmp_path, 2)
    monkeypatch.setattr(vcp.store.pt_writer.os, "replace", real_replace)
    new_id = torch.load(tmp_path / PT_NAME, weights_only=True)["pair_id"]
    assert json.loads((tmp_path / META_NAME).read_text())["fill"] == 1  # old metadata, new archive
    pending = [p for p in tmp_path.iterdir() if p.name.startswith(f".{META_NAME}.")]
    assert len(pending) == 1
    # the pending file names a live pid (ours): make it a dead one, as after a kill
    dead = pending[0].with_name(f".{META_NAME}.999999999.tmp")
    pending[0].rename(dead)
    meta = settle_pair(tmp_path)
    assert meta["fill"] == 2 and meta["pair_id"] == new_id
    assert json.loads((tmp_path / META_NAME).read_text())["pair_id"] == new_id
    assert sorted(p.name for p in tmp_path.iterdir()) == [META_NAME, PT_NAME]


def test_kill_before_the_archive_rename_keeps_the_old_pair(tmp_path, monkeypatch):
    from vcp.store.pair import settle_pair

    old_id = _pair(tmp_path, 1)
    monkeypatch.setattr(vcp.store.pt_writer, "replace_into", lambda tmp, final: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        _pair(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [META_NAME, PT_NAME]  # temps removed
    meta = settle_pair(tmp_path)
    assert meta["fill"] == 1 and meta["pair_id"] == old_id
    assert torch.load(tmp_path / PT_NAME, weights_only=True)["videos"].unique().tolist() == [1.0]


def test_metadata_of_another_archive_is_not_trusted(tmp_path):
    from vcp.store.pair import settle_pair

    _pair(tmp_path / "a", 1)
    _pair(tmp_path / "b", 2)
    (tmp_path / "a" / META_NAME).write_bytes((tmp_path / "b" / META_NAME).read_bytes())
    assert settle_pair(tmp_path / "a") is None
    assert settle_pair(tmp_path / "b")["fill"] == 2


# -- write-back of the archive while it is written ---------------------------------------------
class _Recorder:
    """Stands in for sync_file_range: records (fd, offset, nbytes) and answers ``ok``."""

    def __init__(self, ok=True):
        self.calls, self.ok = [], ok

    def __call__(self, fd, offset, nbytes):
        self.calls.append((fd, offset, nbytes))
        return self.ok


def test_writeback_merges_ranges_and_hands_them_over_in_order():
    from vcp.store.writeback import WriteBack

    rec = _Recorder()
    wb = WriteBack(7, min_bytes=100, start=rec)
    for start in range(0, 350, 50):  # seven contiguous writes of 50 bytes
        wb.written(start, start + 50)
    wb.written(1000, 1010)  # not contiguous: the 300..350 range still pending goes first
    wb.written(2000, 2200)
    wb.close()
    assert rec.calls == [(7, 0, 100), (7, 100, 100), (7, 200, 100), (7, 300, 50), (7, 1000, 10), (7, 2000, 200)]
    wb.written(3000, 4000)  # after close nothing is handed over (the descriptor may be gone)
    assert len(rec.calls) == 6


def test_writeback_stops_asking_after_a_failed_call():
    from vcp.store.writeback import WriteBack

    rec = _Recorder(ok=False)
    wb = WriteBack(3, min_bytes=10, start=rec)
    wb.written(0, 10)
    wb._futures[0].result()  # the first call has run and failed
    wb.written(10, 20)
    wb.written(20, 30)
    wb.close()
    assert rec.calls == [(3, 0, 10)] and not wb.enabled


@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="sync_file_range is Linux's")
def test_writeback_call_works_on_a_real_file(tmp_path):
    from vcp.store.writeback import start_writeback

    path = tmp_path / "f.bin"
    with open(path, "wb") as fh:
        fh.write(b"x" * 65536)
        fh.flush()
        assert start_writeback(fh.fileno(), 0, 65536)
    assert not start_writeback(-1, 0, 10)  # a bad descriptor fails quietly
    assert path.read_bytes() == b"x" * 65536


@pytest.mark.parametrize("expected", [None, EXPECTED], ids=["buffer", "laid-out"])
def test_writer_starts_writeback_of_exactly_the_clips_bytes(tmp_path, monkeypatch, expected):
    """Each clip's bytes are handed to the kernel's write-back as written: the ranges cover
    the clips' storage in the file and nothing else, and the archive is byte for byte the
    one written without it."""
    import vcp.store.writeback
    from vcp.store._archive import read_layout

    clips = [torch.randn(5, 3, 8, 8) for _ in range(4)]
    per_clip = clips[0].numel() * 4

    def write(directory, writeback):
        with PtWriter(directory, frames=5, size=8, category_mapping={"a": 0, "b": 1}, expected=expected,
                      writeback=writeback) as w:
            for i, c in enumerate(clips):
                w.add(c, f"v{i}.mp4", i % 2)
            w.commit({"hello": 1})

    rec = _Recorder()
    monkeypatch.setattr(vcp.store.appender, "WriteBack", lambda fd: vcp.store.writeback.WriteBack(fd, min_bytes=per_clip, start=rec))
    write(tmp_path / "with", True)
    assert len(rec.calls) == 4
    write(tmp_path / "without", False)
    assert len(rec.calls) == 4  # none while off
    first = read_layout(tmp_path / "with" / PT_NAME)[0]["videos"][0] if expected else 0
    assert [(offset, nbytes) for _fd, offset, nbytes in rec.calls] == [(first + k * per_clip, per_clip) for k in range(4)]
    assert (tmp_path / "with" / PT_NAME).read_bytes() == (tmp_path / "without" / PT_NAME).read_bytes()


@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="sync_file_range is Linux's")
def test_writer_with_the_real_writeback_call_writes_a_good_archive(tmp_path, monkeypatch):
    """The kernel's write-back really started for every clip (no stand-in), and the
    archive is the same as ever."""
    import vcp.store.writeback

    calls = []

    def start(fd, offset, nbytes):
        ok = vcp.store.writeback.start_writeback(fd, offset, nbytes)
        calls.append(ok)
        return ok

    monkeypatch.setattr(vcp.store.appender, "WriteBack", lambda fd: vcp.store.writeback.WriteBack(fd, min_bytes=1, start=start))
    clips = [torch.randn(5, 3, 8, 8) for _ in range(4)]
    with PtWriter(tmp_path, frames=5, size=8, category_mapping={"a": 0, "b": 1}, expected=EXPECTED) as w:
        for (name, label), c in zip(EXPECTED, clips, strict=True):
            w.add(c, name, label)
        w.commit({})
    assert calls == [True] * 4
    assert torch.equal(torch.load(tmp_path / PT_NAME, weights_only=True)["videos"], torch.stack(clips))
    assert zipfile.ZipFile(tmp_path / PT_NAME).testzip() is None


# -- clips written from a thread through staging buffers (the GPU path) ------------------------
@pytest.mark.parametrize("expected", [None, EXPECTED], ids=["buffer", "laid-out"])
def test_staged_writes_give_the_same_archive_in_order(tmp_path, expected):
    """Clips staged and written by the writer thread — alone, or mixed with clips written
    in place (a sync write waits for the staged ones) — give byte for byte the archive of
    plain writes."""
    clips = [torch.randn(5, 3, 8, 8) for _ in range(4)]

    def write(directory, staged_each):
        with PtWriter(directory, frames=5, size=8, category_mapping={"a": 0, "b": 1}, expected=expected) as w:
            for i, (c, staged) in enumerate(zip(clips, staged_each, strict=True)):
                w._staged = staged
                w.add(c, f"v{i}.mp4", i % 2)
            w.commit({"hello": 1})
        return (directory / PT_NAME).read_bytes()

    plain = write(tmp_path / "plain", [False] * 4)
    assert write(tmp_path / "staged", [True] * 4) == plain
    assert write(tmp_path / "mixed", [True, False, True, True]) == plain
    assert torch.equal(torch.load(tmp_path / "staged" / PT_NAME, weights_only=True)["videos"], torch.stack(clips))


def test_at_most_two_clips_wait_for_the_writer_thread(tmp_path, monkeypatch):
    """add() returns while its clip is written; the third add waits for the first write to
    free its staging buffer, so host memory stays at two clips whatever the disk's speed."""
    import threading

    gate, started = threading.Event(), []
    real = ClipAppender._write

    def held(self, view):
        started.append(len(started))
        assert gate.wait(10), "a write was held in the caller's thread"  # a fail, not a hang
        real(self, view)

    monkeypatch.setattr(ClipAppender, "_write", held)
    clips = [torch.full((2, 3, 4, 4), float(i)) for i in range(3)]
    with PtWriter(tmp_path, frames=2, size=4, category_mapping={"a": 0}, staged=True) as w:
        w.add(clips[0], "v0.mp4", 0)
        w.add(clips[1], "v1.mp4", 0)  # both return with the first write still held
        third = threading.Thread(target=w.add, args=(clips[2], "v2.mp4", 0))
        third.start()
        third.join(0.3)
        assert third.is_alive() and started == [0]  # waits for the first clip's buffer
        gate.set()
        third.join()
        w.commit({})
    assert torch.equal(torch.load(tmp_path / PT_NAME, weights_only=True)["videos"], torch.stack(clips))


@pytest.mark.parametrize("fail_at", [0, 2])
def test_a_failed_staged_write_leaves_no_archive(tmp_path, monkeypatch, fail_at):
    """A write that fails in the writer thread (disk full) comes out of add() or commit(),
    and nothing is left behind."""
    real = ClipAppender._write
    calls = []

    def failing(self, view):
        calls.append(1)
        if len(calls) - 1 == fail_at:
            raise OSError(28, "No space left on device")
        real(self, view)

    monkeypatch.setattr(ClipAppender, "_write", failing)
    with pytest.raises(OSError, match="No space left"), \
            PtWriter(tmp_path, frames=2, size=4, category_mapping={"a": 0}, staged=True, expected=EXPECTED) as w:
        for name, label in EXPECTED:
            w.add(torch.zeros(2, 3, 4, 4), name, label)
        w.commit({})
    assert list(tmp_path.iterdir()) == []
