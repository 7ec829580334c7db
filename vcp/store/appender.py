"""Appending clips to the ``.pt`` writer's open file: the CRC-32 kept beside each write,
the disk's write-back started as it goes (:mod:`vcp.store.writeback`), and clips that arrive on
the GPU staged in pinned memory and written by a thread.

On the GPU, tensorize's main thread used to copy each clip off the card and then into the
page cache itself, one clip after the other (on the H100 the copy into the page cache was
about a quarter of the main thread's time, docs/gpu.md). Staged, the main thread only
copies the clip into one of two staging buffers and goes on; the writer thread writes
it. At most two clips wait for the writer, so host memory does not grow with a slow disk.
"""

from __future__ import annotations

import concurrent.futures
import functools
import zlib

import torch

from vcp.store.writeback import WriteBack

WRITE_SLOTS = 2  # staging buffers: one clip being written while the next is copied in


class ClipAppender:
    """``append(clip, staged=...)`` in clip order; ``settle()`` before reading ``crc`` and
    ``written``; ``close()`` before closing the file (it never closes the file itself).

    A staged write that failed (a full disk) is raised by a later ``append`` or by
    ``settle``; ``close`` waits for the writer and raises nothing.
    """

    def __init__(self, fh, offset: int, dtype: torch.dtype, *, writeback: bool = True):
        self.fh, self.offset, self.dtype = fh, offset, dtype
        self.crc = 0  # CRC-32 of the clips written (the zip record needs it)
        self.written = 0  # bytes of clips written
        self._writeback = WriteBack(fh.fileno()) if writeback else None
        self._slots: list[list] = []  # [host buffer, future of the write that reads it]
        self._next_slot = 0
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None

    def append(self, clip: torch.Tensor, *, staged: bool) -> None:
        """``clip`` (already of the stored dtype) after the clips before it."""
        if staged:
            slot, host = self._stage(clip.contiguous())
            if self._thread is None:
                self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vcp-write")
            slot[1] = self._thread.submit(self._write, memoryview(host.numpy()).cast("B"))
        else:
            self.settle()  # in file order, after any staged clip still being written
            self._write(memoryview(clip.to("cpu").contiguous().numpy()).cast("B"))

    def _stage(self, clip: torch.Tensor) -> tuple[list, torch.Tensor]:
        """(the slot, ``clip`` copied into its buffer): the next staging buffer (pinned where
        CUDA is), once the write that last read it has finished (its error raised here)."""
        if not self._slots:
            self._slots = [[None, None] for _ in range(WRITE_SLOTS)]
        slot = self._slots[self._next_slot]
        self._next_slot = (self._next_slot + 1) % len(self._slots)
        if slot[1] is not None:
            future, slot[1] = slot[1], None
            future.result()
        if slot[0] is None or slot[0].numel() < clip.numel():
            slot[0] = torch.empty(clip.numel(), dtype=self.dtype, pin_memory=torch.cuda.is_available())
        host = slot[0][: clip.numel()].view(clip.shape)
        host.copy_(clip)
        return slot, host

    def _write(self, view: memoryview) -> None:
        """Append one clip's bytes (run by one thread at a time, in clip order)."""
        crc = _crc_thread().submit(zlib.crc32, view, self.crc)  # beside the write: both release the GIL
        self.fh.write(view)
        self.fh.flush()
        if self._writeback is not None:
            start = self.offset + self.written
            self._writeback.written(start, start + view.nbytes)
        self.crc = crc.result()
        self.written += view.nbytes

    def settle(self, *, raise_errors: bool = True) -> None:
        """Wait for every staged clip's write (raising the first error unless told not to)."""
        for slot in self._slots:
            future, slot[1] = slot[1], None
            if future is not None:
                try:
                    future.result()
                except BaseException:
                    if raise_errors:
                        raise

    def close(self) -> None:
        """Nothing more is written: the writer thread and the write-back calls are done."""
        self.settle(raise_errors=False)
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
        if self._writeback is not None:
            self._writeback.close()  # before the descriptor is closed: no call may reach a reused one
            self._writeback = None


@functools.cache
def _crc_thread() -> concurrent.futures.ThreadPoolExecutor:
    """One thread that checksums a clip while the caller writes it (GPU tensorize spent
    ~40% of its writing time in the checksum, one after the other: H100, py-spy)."""
    return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vcp-crc")
