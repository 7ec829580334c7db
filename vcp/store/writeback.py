"""Start the disk write-back of a big file while it is still being written.

``PtWriter`` writes a group's clips (50 MB each in float32) through the page cache and
makes them durable with one ``fsync`` at commit. Linux starts writing dirty pages back
on its own only past ``dirty_background_ratio`` (10% of available memory by default:
about 12 GiB on a 128 GiB machine), so a group of a few hundred videos sat in memory until the commit, and
the commit's ``fsync`` then waited for the whole archive at disk speed while nothing was
decoded. :class:`WriteBack` asks the kernel to start writing each range as soon as it has
been written (``sync_file_range(SYNC_FILE_RANGE_WRITE)``, what RocksDB's ``bytes_per_sync``
does), from a thread of its own so the writer never waits for the disk queue: the disk
works while the next clips are decoded, and the commit's ``fsync`` finds little left.

It is only a hint: durability still comes from the ``fsync`` at commit, the pages stay in
the page cache (a following ``vcp extract`` reads them from memory), and where the call
does not exist or fails (not Linux, a file system that refuses it) nothing is started and
nothing else changes.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import functools
import sys

SYNC_FILE_RANGE_WRITE = 2  # <fcntl.h>: start write-back of the range's dirty pages, do not wait
MIN_BYTES = 16 << 20  # ranges are handed over in pieces of at least this size


@functools.cache
def _sync_file_range():
    """libc's ``sync_file_range`` (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


def start_writeback(fd: int, offset: int, nbytes: int) -> bool:
    """Ask the kernel to start writing ``[offset, offset + nbytes)`` of ``fd`` to disk;
    False where it cannot (no such call, or the call failed)."""
    call = _sync_file_range()
    return call is not None and call(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE) == 0


class WriteBack:
    """``wb.written(start, end)`` after each write to ``fd``; ``wb.close()`` before the fsync.

    Written ranges are merged until they reach ``min_bytes``, then handed to one thread
    that starts their write-back (ctypes releases the GIL for the call). The first failed
    call turns it off for this file.
    """

    def __init__(self, fd: int, *, min_bytes: int = MIN_BYTES, start=start_writeback):
        self.fd, self.min_bytes, self._start = fd, min_bytes, start
        self.enabled = _sync_file_range() is not None or start is not start_writeback
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._futures: list[concurrent.futures.Future] = []
        self._pending: tuple[int, int] | None = None  # [start, end) not handed over yet

    def written(self, start: int, end: int) -> None:
        """Bytes ``[start, end)`` of the file have been written (and flushed to the OS)."""
        if not self.enabled or end <= start:
            return
        if self._pending is not None and self._pending[1] == start:
            start = self._pending[0]
        elif self._pending is not None:
            self._submit(*self._pending)
        self._pending = (start, end)
        if end - start >= self.min_bytes:
            self._submit(start, end)
            self._pending = None

    def _submit(self, start: int, end: int) -> None:
        for future in [f for f in self._futures if f.done()]:
            self._futures.remove(future)
            if future.exception() is not None or not future.result():
                self.enabled = False  # e.g. a file system that refuses the call: stop asking
        if not self.enabled:
            return
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vcp-writeback")
        self._futures.append(self._pool.submit(self._start, self.fd, start, end - start))

    def close(self) -> None:
        """Wait for the calls handed over (each returns as soon as its write-back has
        started); the rest is the caller's fsync's."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._futures, self._pending = [], None
        self.enabled = False  # the descriptor may be closed and reused from here on
