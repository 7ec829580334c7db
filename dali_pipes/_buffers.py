"""Reused host memory for decoded frames (:class:`FramePool`) and DALI's outputs (:class:`OutputPool`)."""

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
    """CPU buffers for DALI's outputs, handed back by :meth:`ClipLoader.recycle`.

    ``take`` returns a free buffer large enough, or a new one. The pool keeps only weak
    references to what it lent, so a consumer that never recycles gets fresh memory per
    batch and frees it by dropping the clips, as with a plain clone. With ``limit``, a
    ``take`` waits while that many buffers are out: memory is then fixed at ``limit``
    buffers — only for consumers that recycle every batch before taking the next, or it
    waits for ever. Thread-safe: the producer takes in the prefetch thread while the
    consumer gives back in its own.
    """

    def __init__(self, limit: int | None = None):
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self._free: list = []
        self._lent = weakref.WeakValueDictionary()  # id -> buffer
        self._cond = threading.Condition()
        self._released = False  # set by unblock(): the consumer stopped, never wait

    def take(self, numel: int, dtype, capacity: int | None = None):
        """A buffer of at least ``numel`` elements (new ones get ``capacity``)."""
        import torch

        with self._cond:
            # Polled as well as notified: a buffer a consumer drops without recycling
            # leaves ``_lent`` by garbage collection, which notifies nobody.
            while self.limit is not None and len(self._lent) >= self.limit and not self._released:
                self._cond.wait(timeout=0.05)
            for i, buf in enumerate(self._free):
                if buf.dtype == dtype and buf.numel() >= numel:
                    buf = self._free.pop(i)
                    break
            else:
                if self._free:  # none fits: free one instead of keeping it
                    self._free.pop(0)
                buf = torch.empty(max(numel, capacity or 0), dtype=dtype)
            self._lent[id(buf)] = buf
        return buf

    def unblock(self) -> None:
        """The consumer has stopped: no take waits from now on, until :meth:`rearm` (a take
        already waiting goes on, and so does one the producer has not reached yet)."""
        with self._cond:
            self._released = True
            self._cond.notify_all()

    def rearm(self) -> None:
        """A new consumer starts: the limit holds again."""
        with self._cond:
            self._released = False

    def give(self, buf) -> bool:
        """Take ``buf`` back if this pool lent it; False otherwise."""
        with self._cond:
            if self._lent.get(id(buf)) is not buf:
                return False
            del self._lent[id(buf)]
            self._free.append(buf)
            self._cond.notify_all()
            return True
