"""Frames of several videos in one forward pass, results handed back in video order.

One video is T frames (64 by default); a GPU wants a few hundred per forward to reach
the network's own speed. :class:`PackedEncoder` takes clips one at a time, queues their
prepared frames, runs the network on ``batch`` frames at a time across video boundaries,
gives every video its rows back once all its frames have been through, applies the
per-video step (the three-scale rule) on the device, and copies the result to the host
without waiting. :meth:`PackedEncoder.put` returns the videos whose results have
arrived; :meth:`PackedEncoder.finish` the rest. A frame's features do not depend on
what else is in its batch, so the rows equal a per-video pass (within float rounding).

Frames are copied into the batch being filled as they come, in the network's memory
format. On CUDA the last, partial batch is padded to ``batch`` frames, so every forward has the
same shape (cuDNN's algorithm choice and ``torch.compile`` see one shape), and the host
stays at most ``QUEUED_FORWARDS`` forwards ahead of the card: before launching another it
waits for the forward that many back. Without that bound, how far it ran ahead (and so
how many clips sat on the card and in pinned memory) was set only by the driver's launch
queue, which holds more forwards of a CUDA graph (one launch each) than of an eager
network (hundreds each).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

QUEUED_FORWARDS = 3  # forwards queued on the card ahead of the host: slack for its jitter, no more


class _NotFinite:
    """What :meth:`PackedEncoder.put` hands back for a clip whose frames were finite but
    whose features are not (NaN/Inf from the network: fp16 overflow, a broken plugin)."""

    def __repr__(self) -> str:
        return "NOT_FINITE"


NOT_FINITE = _NotFinite()


@dataclass
class _Job:
    key: object
    finite: torch.Tensor | None  # device bool, or None (storage cannot hold NaN)
    count: int
    launched: int = 0
    parts: list = field(default_factory=list)  # [n, D] slices of forward outputs
    rows: torch.Tensor | None = None  # the video's result (host, pinned on CUDA)
    finite_host: torch.Tensor | None = None
    rows_finite: torch.Tensor | None = None  # the features' own finiteness (device, then host)
    done: object | None = None  # CUDA event: the copy to the host has finished
    after: list = field(default_factory=list)  # keys of mark() calls made after this put, before the next
    collected: bool = False
    more: bool = False  # more of its frames are still to come (a long video's windows, chunk by chunk)
    failed: object | None = None  # handed back instead of its key: it failed part way (abort())


class PackedEncoder:
    """``put(key, frames, stored)`` -> ``[(key, rows ndarray | None | NOT_FINITE)]`` ready so
    far (None: the clip held NaN/Inf; :data:`NOT_FINITE`: its features did); ``mark(key)`` -> a key with no frames, handed back in
    the same order; ``finish()`` -> the rest. Order is ``put`` (and ``mark``) order.

    Each clip's frames are copied straight into the batch being filled, already in the
    network's memory format (channels-last by default): one pass over the frames on the
    device, where converting each clip and then concatenating a batch took two.
    """

    def __init__(
        self, encoder, batch: int, per_video: Callable[[torch.Tensor], torch.Tensor], *,
        queued_forwards: int = QUEUED_FORWARDS, event=None,
    ):
        """``event``: what marks a forward's end (``torch.cuda.Event`` on CUDA; tests pass
        their own to watch the bound work on the CPU)."""
        self.encoder, self.batch, self.per_video = encoder, batch, per_video
        self.cuda = encoder.device.type == "cuda"
        self.pad = self.cuda  # partial batches padded to one shape (cuDNN, graphs, torch.compile)
        self.queued_forwards = queued_forwards
        self._format = encoder.memory_format if encoder.config.channels_last else torch.contiguous_format
        self._event = event if event is not None else (torch.cuda.Event if self.cuda else None)
        self._forwards: deque = deque()  # an event per forward still running on the card, oldest first
        self._filling: torch.Tensor | None = None  # the next forward's frames, [batch, C, H, W]
        self._pieces: list[tuple[_Job, int]] = []  # (job, frames of it) in _filling, in order
        self._filled = 0
        self._copying: deque[_Job] = deque()  # all frames through, results on their way to the host
        self._last: _Job | None = None  # the job of the latest put

    @torch.inference_mode()
    def put(self, key, frames: torch.Tensor, stored, *, more: bool = False) -> list[tuple[object, np.ndarray | None]]:
        """``more``: ``frames`` are a part of ``key``'s; the next put with the same key adds
        to them (a long video's windows come a chunk at a time: memory holds one chunk)."""
        prepared, finite = self.encoder.prepare(frames, stored, layout=False)
        if prepared.shape[0] == 0:
            raise ValueError("a clip with no frames")
        job = self._last if self._last is not None and self._last.more and self._last.key is key else None
        if job is None:
            job = self._last = _Job(key, finite, 0)
        elif finite is not None:
            job.finite = finite if job.finite is None else job.finite & finite
        job.count += prepared.shape[0]
        job.more = more
        if self._filling is not None and self._filling.shape[1:] != prepared.shape[1:]:
            self._launch()  # frames of another size never share a forward
        start, count = 0, prepared.shape[0]
        while start < count:
            take = min(self.batch - self._filled, count - start)
            chunk = prepared[start : start + take]
            if take == self.batch and chunk.is_contiguous(memory_format=self._format):
                self._forward(chunk, [(job, take)], take)  # a whole batch as it is: no copy
            else:
                if self._filling is None:
                    self._filling = torch.empty((self.batch, *prepared.shape[1:]), dtype=prepared.dtype,
                                                device=prepared.device, memory_format=self._format)
                self._filling[self._filled : self._filled + take].copy_(chunk)
                self._pieces.append((job, take))
                self._filled += take
                if self._filled == self.batch:
                    self._launch()
            start += take
        return self._collect(block=False)

    def more_of(self, key) -> bool:
        """Whether ``key``'s clip is being put in parts (more of it to come)."""
        return self._last is not None and self._last.more and self._last.key is key

    def abort(self, failed) -> list[tuple[object, np.ndarray | None]]:
        """The clip being put in parts failed part way: ``failed`` is handed back in its
        place (with no rows), its frames already queued thrown away."""
        job = self._last
        if job is None or not job.more:
            raise ValueError("no clip is being put in parts")
        job.more, job.failed = False, failed
        if job.launched == job.count:
            self._complete(job)
        return self._collect(block=False)

    def mark(self, key) -> list[tuple[object, np.ndarray | None]]:
        """Hand ``key`` back in put order with no rows (an input that never reaches the
        network, e.g. a video that failed to decode), after every clip put before it."""
        if self._last is None or self._last.collected:
            return [(key, None)]
        self._last.after.append(key)
        return self._collect(block=False)

    @torch.inference_mode()
    def finish(self) -> list[tuple[object, np.ndarray | None]]:
        if self._filled:
            self._launch()
        return self._collect(block=True)

    def _launch(self) -> None:
        """Run the forward being filled (on CUDA a partial one padded with zeros, so every
        forward has one shape)."""
        batch, n, pieces = self._filling, self._filled, self._pieces
        self._filling, self._filled, self._pieces = None, 0, []
        if n < self.batch:
            if self.pad:
                batch[n:].zero_()
            else:
                batch = batch[:n]
        self._forward(batch, pieces, n)

    def _forward(self, batch: torch.Tensor, pieces: list[tuple[_Job, int]], n: int) -> None:
        out = self.encoder.forward(batch)[:n]
        self._bound_lead()
        offset = 0
        for job, count in pieces:
            job.parts.append(out[offset : offset + count])
            offset += count
            job.launched += count
            if job.launched == job.count and not job.more:
                self._complete(job)

    def _bound_lead(self) -> None:
        """Mark this forward's end; wait for the forward ``queued_forwards`` back."""
        if self._event is None:
            return
        done = self._event()
        done.record()
        self._forwards.append(done)
        while len(self._forwards) > self.queued_forwards:
            self._forwards.popleft().synchronize()

    def _complete(self, job: _Job) -> None:
        if job.failed is not None:
            job.parts = []
            self._copying.append(job)
            return
        feats = job.parts[0] if len(job.parts) == 1 else torch.cat(job.parts)
        job.parts = []
        rows = self.per_video(feats).float()
        rows_finite = torch.isfinite(rows).all()  # one reduction on the device, read with the rows
        if not self.cuda:
            job.rows, job.finite_host, job.rows_finite = rows, job.finite, rows_finite
        else:
            job.rows = torch.empty(rows.shape, dtype=rows.dtype, pin_memory=True)
            job.rows.copy_(rows, non_blocking=True)
            if job.finite is not None:
                job.finite_host = torch.empty((), dtype=torch.bool, pin_memory=True)
                job.finite_host.copy_(job.finite, non_blocking=True)
            job.rows_finite = torch.empty((), dtype=torch.bool, pin_memory=True)
            job.rows_finite.copy_(rows_finite, non_blocking=True)
            job.done = torch.cuda.Event()
            job.done.record()
        self._copying.append(job)

    def _collect(self, block: bool) -> list[tuple[object, np.ndarray | None]]:
        out = []
        while self._copying and (block or self._copying[0].done is None or self._copying[0].done.query()):
            job = self._copying.popleft()
            if job.failed is not None:
                out += [(job.failed, None)] + [(key, None) for key in job.after]
                job.collected = True
                continue
            if job.done is not None:
                job.done.synchronize()
            finite = job.finite_host is None or bool(job.finite_host)
            out.append((job.key, (job.rows.numpy() if bool(job.rows_finite) else NOT_FINITE) if finite else None))
            out += [(key, None) for key in job.after]
            job.collected = True
        return out
