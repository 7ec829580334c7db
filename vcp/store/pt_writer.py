"""The ``processed_data.pt`` writer: bounded memory, atomic commit.

Clips are appended to a raw disk buffer as they arrive, so memory does not grow with
the number of videos. At commit, the contract dict is written with
``torch.serialization.skip_data`` (the archive's layout without the storage bytes) and
the storages are then filled in place from the buffer in fixed-size chunks, CRCs
patched, and the file renamed into place. The result is an ordinary ``torch.save``
archive: ``torch.load(path, weights_only=True)`` (and ``mmap=True``) read it.

When the caller says up front which clips it expects (``expected``), the buffer *is* the
archive: its layout for those clips is written first (sparse, no bytes yet) and the clips
go straight into the ``videos`` storage, so the common case (every video decodes) never
copies the data. If what arrived differs (a video failed), commit falls back to a fresh
archive filled from the clips already written. The bytes go through
:class:`vcp.store.appender.ClipAppender`: the disk starts writing each clip as soon as it is
written, so the commit's ``fsync`` does not wait for the whole group at the end, and a clip
that arrives on the GPU is staged and written by a thread while the caller goes on (a
failed write comes out of a later ``add`` or of ``commit``, and then nothing is committed).

Contract (docs/design.md): ``videos`` float32 ``[N, T, 3, H, W]``, ``labels`` int64 ``[N]``,
``filenames`` list[str], ``category_mapping`` {name: index}. Extra keys make the archive
self-describing: ``storage`` (float32 | float16 | uint8), ``normalization`` (the mean/std
the stored values were normalized with) and ``pair_id``, an id of the archive's content
(the metadata's input fingerprint, names, labels and the clips' CRC: the same inputs
give the same id, and the same bytes) that the ``metadata.json`` written with it repeats.

The pair is committed in an order that a kill at any instant cannot corrupt: the
metadata is written to a temp file first, then the archive is renamed into place (the
commit point), then the metadata. If the process dies between the two renames, the
pending metadata (same ``pair_id``) is still there and :func:`settle_pair` rolls it
forward; a metadata file whose ``pair_id`` differs from its archive's is never trusted.

A checkpoint is trusted only as a regular file of the group's folder (never a link, FIFO
or folder; buffers are opened with ``O_NOFOLLOW``) whose record adds up and whose bytes
match their CRC (:mod:`vcp.store.pt_resume`); anything else is set aside with one line
and the group redone. (A little longer than 300 lines: claiming a checkpoint shares the
writer's buffer and its state, so it lives with it.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from vcp.common.report import one_line
from vcp.store._archive import (
    BytesSource,
    FileSource,
    InPlace,
    fill_storages,
    patch_pickle,
    read_layout,
)
from vcp.store.appender import ClipAppender
from vcp.store.atomic import name_write_error, replace_into, tmp_path_for
from vcp.store.contract import (
    IMAGENET,
    META_NAME,
    PT_NAME,
    pt_archive,
    pt_checkpoint_names,
    storage_name,
)
from vcp.store.folders import open_own, own_file_problem, remove_entry
from vcp.store.pair import fsync_dir, write_durable_json
from vcp.store.pt_resume import bytes_problem, record_problem
from vcp.store.readers import read_json


class PtWriter:
    """``with PtWriter(dir, ...) as w: w.add(clip, name, label); w.commit(metadata)``.

    Leaving the block without :meth:`commit` (an exception, a kill) leaves no output.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        frames: int,
        size: int,
        category_mapping: dict[str, int],
        dtype: torch.dtype = torch.float32,
        normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
        name: str = PT_NAME,
        meta_name: str = META_NAME,
        expected: list[tuple[str, int]] | None = None,
        writeback: bool = True,
        staged: bool | None = None,
        resume: str | None = None,
        state_problem=None,
    ):
        """``normalization`` is ``(mean, std)`` of the stored values (ImageNet's if None);
        ``writeback``: start the disk writing each clip as it is written (:mod:`vcp.store.writeback`);
        ``staged``: copy each clip into a host staging buffer and write it from a thread
        (None: for clips that arrive on the GPU, whose copy to the host is needed anyway);
        ``resume``: the fingerprint of what is being written: :meth:`checkpoint` commits the
        clips added so far, and a writer opened later with the same fingerprint and
        ``expected`` list goes on from there (:attr:`resumed` is the state it checkpointed);
        ``state_problem(state, clips)`` says why a checkpointed state does not fit its clips
        (None: it does), and such a checkpoint is set aside."""
        self.directory = Path(directory)
        mean, std = normalization or (IMAGENET.mean, IMAGENET.std)
        self.normalization = {"mean": [float(x) for x in mean], "std": [float(x) for x in std]}
        self.pair_id = _PAIR_PLACEHOLDER  # the real id is known at commit
        self.meta_name = meta_name
        self.shape = (frames, 3, size, size)
        self.category_mapping = dict(category_mapping)
        self.dtype = dtype
        self.filenames: list[str] = []
        self.labels: list[int] = []
        self.final = self.directory / name
        self._buffer_path = tmp_path_for(self.directory / (name + ".buffer"))
        self._buffer = None
        self._expected = list(expected) if expected else None
        self._data_offset = 0  # where the clips start in the buffer file
        self._staged = staged
        self._writeback = writeback
        self._appender: ClipAppender | None = None  # the clips' bytes, CRC and write-back
        self._resume_fp = resume
        self._state_problem = state_problem
        link, record = pt_checkpoint_names(name)
        self._resume_link = self.directory / link  # the buffer as last checkpointed (a hard link)
        self._resume_meta = self.directory / record
        self.resumed: dict | None = None

    def __enter__(self) -> PtWriter:
        self.directory.mkdir(parents=True, exist_ok=True)
        checkpoint = self._claim_checkpoint() if self._resume_fp is not None else None
        if checkpoint is not None:
            why = self._open_buffer(checkpoint)
            if why is None:
                self._appender.crc, self._appender.written = checkpoint["crc"], checkpoint["written"]
                self.filenames, self.labels = list(checkpoint["filenames"]), list(checkpoint["labels"])
                self.resumed = checkpoint["state"]
                return self
            self._set_aside(why)
            self._close_buffer()  # the claimed buffer removed: a new one is laid out
        self._open_buffer(None)
        return self

    def _open_buffer(self, checkpoint: dict | None) -> str | None:
        """The buffer opened for appending: new, or (``checkpoint``) the claimed one, verified
        byte for byte against its record; why it does not verify, or None."""
        try:
            if self._expected:
                if checkpoint is None:
                    names, labels = zip(*self._expected, strict=True)
                    _save_skeleton(self._skeleton(list(names), list(labels)), self._buffer_path)
                layout, _central_dir = read_layout(self._buffer_path)
                self._data_offset = layout["videos"][0]
            self._buffer = open_own(self._buffer_path, "rb+" if checkpoint or self._expected else "wb")
        except Exception as exc:  # a checkpoint that is not an archive of this group: redone
            if checkpoint is None:
                raise
            return f"not this group's archive ({type(exc).__name__})"
        if checkpoint is not None:
            why = bytes_problem(self._buffer, self._data_offset, checkpoint["written"], checkpoint["crc"])
            if why:
                return why
            if not self._expected:
                self._buffer.truncate(checkpoint["written"])
        self._appender = ClipAppender(self._buffer, self._data_offset, self.dtype, writeback=self._writeback)
        self._buffer.seek(self._data_offset + (checkpoint["written"] if checkpoint else 0))
        return None

    # -- checkpoints: a group in progress survives a stopped run -----------------------------------
    def _checkpoint_key(self) -> dict:
        return {"fingerprint": self._resume_fp, "expected": [list(e) for e in self._expected or []],
                "storage": storage_name(self.dtype), "shape": list(self.shape)}

    def _claim_checkpoint(self) -> dict | None:
        """The checkpoint of this very write (same fingerprint, clips, storage and shape, its
        counts consistent), its buffer moved to this writer's own; anything else there is
        dropped as stale, and what is not a regular file of this folder (a link, a FIFO, a
        folder) or does not add up is set aside with one line."""
        meta = read_json(self._resume_meta)
        if meta is None or not all(meta.get(k) == v for k, v in self._checkpoint_key().items()):
            problem = own_file_problem(self._resume_link)
            if os.path.lexists(self._resume_link) and problem not in (None, "no such file"):
                self._set_aside(problem)
            self._drop_checkpoint()
            return None
        problem = own_file_problem(self._resume_link) or record_problem(
            meta, self.shape, self.dtype, self._expected, self._state_problem)
        if problem:
            self._set_aside(problem)
            return None
        os.replace(self._resume_link, self._buffer_path)
        return meta

    def _set_aside(self, why: str) -> None:
        """A checkpoint that cannot be trusted: removed (a link itself, never what it points
        to), said in one line, and the group redone."""
        print(one_line(f"vcp: warning: {self._resume_link}: checkpoint set aside ({why}); the group is redone"),
              file=sys.stderr, flush=True)
        self._drop_checkpoint()

    def checkpoint(self, state: dict) -> None:
        """Commit the clips added so far with ``state`` (JSON-able): the buffer made durable
        and hard-linked under a name no cleanup of dead processes' temp files removes, then
        a record of how far it is valid, renamed into place."""
        if self._resume_fp is None:
            return
        self._appender.settle()
        self._buffer.flush()
        os.fsync(self._buffer.fileno())
        if not os.path.lexists(self._resume_link):
            try:
                os.link(self._buffer_path, self._resume_link)
            except OSError as exc:  # a file system without hard links: the run goes on, without checkpoints
                print(f"vcp: warning: {self.directory}: no checkpoints ({exc.strerror or exc}): "
                      "a stopped run will redo this group", file=sys.stderr, flush=True)
                self._resume_fp = None
                return
        record = {**self._checkpoint_key(), "written": self._appender.written, "crc": self._appender.crc,
                  "filenames": self.filenames, "labels": self.labels, "state": state}
        tmp = tmp_path_for(self._resume_meta)
        write_durable_json(tmp, record)
        os.replace(tmp, self._resume_meta)

    def _drop_checkpoint(self) -> None:
        for path in (self._resume_meta, self._resume_link):
            remove_entry(path)

    def _skeleton(self, filenames: list[str], labels: list[int]) -> dict:
        return pt_archive(
            # Never touched: only its shape/dtype are serialized under skip_data.
            videos=torch.empty((len(filenames), *self.shape), dtype=self.dtype),
            labels=torch.tensor(labels, dtype=torch.int64),
            filenames=filenames,
            category_mapping=self.category_mapping,
            normalization=self.normalization,
            pair_id=self.pair_id,
        )

    def __exit__(self, exc_type, exc, tb) -> None:
        name_write_error(exc, self.final)
        self._close_buffer()

    def _close_buffer(self) -> None:
        self._stop_appending()
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None
        with contextlib.suppress(FileNotFoundError):
            self._buffer_path.unlink()

    def add(self, clip: torch.Tensor, filename: str, label: int) -> None:
        if tuple(clip.shape) != self.shape:
            raise ValueError(f"clip shape {tuple(clip.shape)} != expected {self.shape}")
        clip = clip.detach()
        if self.dtype == torch.uint8:
            clip = clip.round().clamp_(0, 255)
        staged = self._staged if self._staged is not None else clip.is_cuda
        self._appender.append(clip.to(self.dtype), staged=staged)
        self.filenames.append(filename)
        self.labels.append(int(label))

    def _content_id(self, metadata: dict) -> str:
        payload = json.dumps(
            [metadata.get("fingerprint"), self.filenames, self.labels, self._appender.crc, self._appender.written,
             storage_name(self.dtype), self.normalization, self.category_mapping],
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def commit(self, metadata: dict) -> Path:
        """Write the pair: pending metadata, then the archive (the commit point), then the
        metadata renamed into place. ``metadata`` gets this archive's ``pair_id``."""
        self._appender.settle()  # every clip written (a failed write raises here: no commit)
        meta_tmp = tmp_path_for(self.directory / self.meta_name)
        self.pair_id = self._content_id(metadata)
        try:
            write_durable_json(meta_tmp, {**metadata, "pair_id": self.pair_id})
        except BaseException:
            self._close_buffer()
            with contextlib.suppress(FileNotFoundError):
                meta_tmp.unlink()
            raise
        crc, written = self._appender.crc, self._appender.written
        self._stop_appending()
        self._buffer.close()
        self._buffer = None
        skeleton = self._skeleton(self.filenames, self.labels)
        labels = BytesSource(skeleton["labels"].numpy().tobytes())
        laid_out = self._expected == list(zip(self.filenames, self.labels, strict=True))
        tmp = self._buffer_path if laid_out else tmp_path_for(self.final)
        try:
            if laid_out:  # the clips are already in place: labels, the id and CRCs only
                fill_storages(tmp, {"videos": InPlace(crc, written), "labels": labels})
                patch_pickle(tmp, _PAIR_PLACEHOLDER, self.pair_id)
            else:
                _save_skeleton(skeleton, tmp)
                videos = FileSource(self._buffer_path, crc, offset=self._data_offset, size=written)
                fill_storages(tmp, {"videos": videos, "labels": labels})
            replace_into(tmp, self.final)
        except BaseException:
            for path in (tmp, meta_tmp):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            raise
        finally:
            self._close_buffer()
        os.replace(meta_tmp, self.directory / self.meta_name)
        self._drop_checkpoint()
        fsync_dir(self.directory)
        return self.final

    def _stop_appending(self) -> None:
        """Before the buffer is closed: the writer thread and write-back calls are done."""
        if self._appender is not None:
            self._appender.close()
            self._appender = None


# Same length as a real id: replacing it in the pickle keeps every offset of the archive.
_PAIR_PLACEHOLDER = "vcp-pair-id-not-yet-known-000000"


def _save_skeleton(archive: dict, path: Path) -> None:
    """The archive's layout without the storage bytes. Saved through a file object, so the
    records are named ``archive/...`` whatever the (temp) file is called: identical inputs
    give identical bytes."""
    with open(path, "wb") as fh, torch.serialization.skip_data():
        torch.save(archive, fh)


