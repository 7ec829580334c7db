"""Reused host memory: decode buffers (:class:`FramePool`) and DALI's outputs lent per batch
(:class:`OutputPool` -> :class:`Lease`, held by a :class:`Batch`).

A consumer never calls a buffer protocol: a :class:`Batch` used in a ``with`` block hands
its memory back for the next batches when the block ends; a batch that is simply dropped
ends its lease too (its clips then keep their memory for as long as they are referenced,
and the pool makes new memory for later batches).
"""

from __future__ import annotations

import math
import threading
import weakref

import numpy as np


class FramePool:
    """Reused decode buffers, one per batch slot, grown to the largest clip seen.

    A 64-frame 720p clip is 177 MB of RGB; allocating it afresh per video costs page
    faults every time and, now and then, a long stall in the kernel (docs/benchmarks.md).
    Not thread-safe: one pool per loader thread.
    """

    def __init__(self):
        self._slots: dict[int, np.ndarray] = {}

    def take(self, slot: int, shape: tuple) -> np.ndarray:
        need = math.prod(shape)
        flat = self._slots.get(slot)
        if flat is None or flat.size < need:
            flat = self._slots[slot] = np.empty(need, np.uint8)
        return flat[:need].reshape(shape)


class OutputPool:
    """CPU buffers for DALI's outputs, lent one per batch (:meth:`lease`).

    A buffer comes back for reuse only when its lease is released (the holder will not
    read it again); a lease that is dropped just stops counting. With ``limit``, a lease
    waits while that many are out, so a producer running ahead of its consumer holds a
    fixed amount of memory — except while the consumer itself waits for the producer, or
    has stopped (:meth:`waive`): then nothing waits, so no consumer can hang its producer.
    Thread-safe: the producer leases in its thread while the consumer releases in its own.
    """

    def __init__(self, limit: int | None = None):
        self.limit = limit
        self._free: list = []
        self._out = 0  # leases not yet ended
        self._cond = threading.Condition()  # re-entrant: a lease's finalizer may run inside
        self._waived = False

    @property
    def leased(self) -> int:
        return self._out

    def lease(self, numel: int, dtype, capacity: int | None = None) -> Lease:
        """A buffer of at least ``numel`` elements (new ones get ``capacity``)."""
        import torch

        with self._cond:
            # Polled as well as notified: a dropped lease may end by garbage collection.
            while self.limit is not None and self._out >= self.limit and not self._waived:
                self._cond.wait(timeout=0.05)
            for i, buf in enumerate(self._free):
                if buf.dtype == dtype and buf.numel() >= numel:
                    buf = self._free.pop(i)
                    break
            else:
                if self._free:  # none fits: free one instead of keeping it
                    self._free.pop(0)
                buf = torch.empty(max(numel, capacity or 0), dtype=dtype)
            self._out += 1
        return Lease(self, buf)

    def waive(self, waived: bool) -> None:
        """True while the consumer waits for the producer (or has stopped): no lease waits."""
        with self._cond:
            self._waived = waived
            self._cond.notify_all()

    def _end(self, buf) -> None:
        with self._cond:
            self._out -= 1
            if buf is not None:
                self._free.append(buf)
            self._cond.notify_all()


class Lease:
    """One buffer lent by an :class:`OutputPool`; ends when released or dropped."""

    def __init__(self, pool: OutputPool, buf):
        self.buf = buf
        self._pool = pool
        self._ended = weakref.finalize(self, pool._end, None)  # dropped: counted back, not reused

    def release(self) -> None:
        """The holder will not read :attr:`buf` again: it may hold the next batches."""
        if self._ended.detach() is not None:
            self._pool._end(self.buf)


class Batch(list):
    """The results of one decode run, in input order; a ``list`` of ``ClipResult``.

    ``with batch: ...`` — when the block ends the clips' memory goes back to the loader for
    the next batches, and each result's ``clip`` is set to None (it must not be read after).
    Keep a clip past the block with ``clip.clone()``, or do not use ``with``: a dropped batch
    frees nothing its clips still use.
    """

    def __init__(self, results=(), lease: Lease | None = None):
        super().__init__(results)
        self.lease = lease

    def release(self) -> None:
        for result in self:
            result.clip = None
        if self.lease is not None:
            self.lease.release()
            self.lease = None

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
