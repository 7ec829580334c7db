"""Videos in, normalized clips out: :class:`ClipLoader` (decode -> resize -> normalize, CPU or GPU).

Why this file is longer than the others (~475 lines): it is one class's state — batching
by VRAM, the decode fronts, NVDEC fallbacks, parallel pipelines, output buffers. Its
parts with a life of their own are elsewhere: the routing rule (``nvdec.py``), the DALI
graph (``_graph.py``), the reused buffers (``_buffers.py``), probing (``probe.py``).

Two decode fronts feed one post-decode graph (``_graph.build_pipeline``):

* ``"dali"``: encoded bytes + the sampled indices go to ``fn.decoders.video``
  (``device="mixed"`` = NVDEC on the GPU, ``"cpu"`` = libavcodec for VP8/VP9/MJPEG).
* ``"frames"``: frames decoded by PyAV on the CPU (codecs DALI's CPU decoder lacks,
  streams NVDEC rejects, GPUs without NVDEC) enter through ``external_source``; on the
  GPU they are copied up and resized/normalized there.

:class:`ClipLoader` turns ``(path, relpath)`` items into normalized float32 clips
``[T, 3, S, S]`` in input order, one :class:`ClipResult` per video, bad files included
(with their error). Pipelines run synchronously with ``feed_input`` so an output can
never belong to another input than the one just fed (the prefetch trap of
``source=`` callbacks).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ._buffers import FramePool, OutputPool
from ._graph import Device, Front, build_pipeline
from .ffmpeg_log import ensure_ffmpeg_logging
from .nvdec import CapsTable, Route, dali_error_line, route, stream_key
from .probe import DALI_CPU_CODECS, Prober, VideoError, VideoInfo, outcome_of, probe
from .pyav_front import FrameCountMismatch, decode_frames
from .samplers import SamplingSpec
from .vram import batch_size_for, free_vram_bytes


@dataclass
class ClipResult:
    """One video's outcome: ``clip`` on success, ``error`` otherwise."""

    path: str
    relpath: str
    info: VideoInfo | None = None
    indices: np.ndarray | None = None
    flip: bool = False
    front: str = ""
    note: str = ""  # why it did not go to NVDEC in GPU mode (one line), if it did not
    clip: object | None = None  # torch.Tensor [T, 3, S, S] float32
    error: VideoError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _graph_flip(item: ClipResult) -> np.int32:
    """The graph mirrors unrotated frames; a rotated video is flipped after its rotation."""
    return np.int32(item.flip and not item.info.rotation)


def _orient(item: ClipResult) -> None:
    """Turn the clip as players do (the display matrix), then apply the augmentation flip.

    The clip is S x S, so the turned frames overwrite it in place (a pooled buffer stays
    the clip's memory). Resize then rotate equals rotate then resize: the resize is
    separable and the output square.
    """
    import torch

    clip = item.clip
    turned = torch.rot90(clip, item.info.rotation // 90, dims=(-2, -1))
    if item.flip:
        turned = turned.flip(-1)
    clip.copy_(turned.contiguous())


@dataclass
class LoaderStats:
    batch_sizes: Counter = field(default_factory=Counter)
    fallbacks: list[str] = field(default_factory=list)


# More pipelines than this decoded slower on a 7-NVDEC card, in DALI alone and in vcp
# (docs/benchmarks.md, "Numbers behind the defaults").
MAX_AUTO_PIPELINES = 4


def default_pipelines(nvdec_engines: int) -> int:
    """One DALI pipeline per NVDEC engine, at most :data:`MAX_AUTO_PIPELINES`; 1 where none
    is known (CPU, MIG slice without NVDEC, no driver query)."""
    return max(1, min(nvdec_engines, MAX_AUTO_PIPELINES))


class ClipLoader:
    """Probe, sample, decode, resize and normalize videos in batches.

    ``device="gpu"``: NVDEC for every stream it accepts, CPU decode + GPU normalize for
    the rest; batches sized from 40% of free VRAM, capped at ``max_batch``.
    ``device="cpu"``: DALI's CPU decoder for VP8/VP9/MJPEG, PyAV for the rest
    (``cpu_decoder="pyav"`` sends everything through PyAV).

    CPU clips are views of pooled batch buffers; a consumer that is done with a batch may
    hand it back with :meth:`recycle`. ``output_buffers`` caps how many such buffers are
    out at once (the producer then waits for a recycle) — only for consumers that recycle
    every batch before taking the next one; ignored with ``pipelines > 1``.
    """

    def __init__(
        self,
        *,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        device: Device = "cpu",
        device_id: int = 0,
        max_batch: int = 4,
        num_threads: int | None = None,
        cpu_decoder: Literal["auto", "pyav"] = "auto",
        vram_fraction: float = 0.4,
        pipelines: int | None = 1,
        output_buffers: int | None = None,
        caps: CapsTable | None = None,
        probe_workers: int | None = None,
    ):
        if device not in ("cpu", "gpu"):
            raise ValueError(f"Invalid device ({device!r}). Supported values are: cpu, gpu.")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.size, self.mean, self.std = size, tuple(mean), tuple(std)
        self.device, self.device_id = device, device_id
        self.max_batch, self.num_threads = max_batch, num_threads
        self.cpu_decoder, self.vram_fraction = cpu_decoder, vram_fraction
        if pipelines is not None and pipelines < 1:
            raise ValueError(f"pipelines must be >= 1, got {pipelines}")
        self.stats = LoaderStats()
        self._workers: list[ClipLoader] = []
        self._pipes: dict[Front, object] = {}
        self._nvdec_ok = device == "gpu"
        self._caps = caps if caps is not None else (CapsTable(device_id) if device == "gpu" else None)
        # None: one pipeline per NVDEC engine the card reports (one pipeline keeps about one busy)
        self.pipelines = pipelines if pipelines is not None else default_pipelines(self.nvdec_engines)
        # None: on a GPU, files are probed ahead in a few processes (the CPU is otherwise idle);
        # on the CPU in line (the cores decode)
        if probe_workers is None:
            probe_workers = min(4, max(1, (os.cpu_count() or 1) // 4)) if device == "gpu" else 0
        self.probe_workers = probe_workers
        self._prober: Prober | None = None
        self._accepted: Counter = Counter()  # stream_key -> files NVDEC decoded
        self._rejected: Counter = Counter()  # stream_key -> files NVDEC rejected
        self._blocked: set = set()  # stream keys NVDEC rejected NVDEC_GIVE_UP_AFTER times, never took
        self._frame_pool = FramePool()
        self._output_pool = OutputPool(limit=output_buffers)
        self._batch_out: tuple | None = None  # (pooled buffer, elements used) of the batch in progress
        ensure_ffmpeg_logging()

    # -- pipelines -------------------------------------------------------------------
    def _pipe(self, front: Front):
        if front not in self._pipes:
            self._pipes[front] = build_pipeline(
                front,
                device=self.device,
                batch_size=self.max_batch,
                size=self.size,
                mean=self.mean,
                std=self.std,
                num_threads=self.num_threads,  # None: all cores (a share per pipeline measured slower)
                device_id=self.device_id,
            )
        return self._pipes[front]

    def _drop_pipe(self, front: Front) -> None:
        # A DALI pipeline that raised is no longer valid; the next call builds a new one.
        self._pipes.pop(front, None)

    def _route(self, info: VideoInfo) -> Route:
        return route(
            info.codec, info.pix_fmt, info.width, info.height, device=self.device, cpu_decoder=self.cpu_decoder,
            caps=self._caps, nvdec_usable=self._nvdec_ok, blocked=frozenset(self._blocked),
            dali_cpu_codecs=DALI_CPU_CODECS,
        )

    @property
    def nvdec_engines(self) -> int:
        """NVDEC engines the card reports (0: unknown, or a CPU loader)."""
        return self._caps.engines() if self._caps is not None else 0

    # -- public ----------------------------------------------------------------------
    def load(
        self, items: Iterable[tuple[str, str]], spec: SamplingSpec
    ) -> Iterator[list[ClipResult]]:
        """Yield lists of results (one batch each), in input order.

        ``items`` are ``(path, relpath)``; ``relpath`` seeds the per-file generator.
        With ``pipelines > 1`` several loaders, each with its own DALI pipelines (one keeps
        about one NVDEC busy), decode interleaved slices of ``items`` in parallel threads.
        """
        self._output_pool.rearm()  # the previous consumer's producer has been joined
        if self.probe_workers:
            if self._prober is None:
                self._prober = Prober(self.probe_workers)
            items = [(path, relpath, self._prober.submit(path)) for path, relpath in (item[:2] for item in items)]
        if self.pipelines > 1:
            yield from self._load_parallel(list(items), spec)
            return
        batch: list[ClipResult] = []
        cap = self.max_batch
        for item in items:
            path, relpath = item[0], item[1]
            result = ClipResult(path=str(path), relpath=relpath)
            try:
                info = outcome_of(item[2]) if len(item) > 2 else probe(path)
                result.info = info
                result.indices, result.flip = spec.plan(info.num_frames, info.fps, relpath)
                chosen = self._route(info)
                result.front, result.note = chosen.front, chosen.reason
                if self.device == "gpu":
                    cap = min(cap, self._vram_cap(info, spec.frames))
            except VideoError as exc:
                result.error = exc
            batch.append(result)
            if sum(r.ok for r in batch) >= cap:
                yield self._run(batch, spec)
                batch, cap = [], self.max_batch
        if batch:
            yield self._run(batch, spec)

    def close(self) -> None:
        """Stop the probe processes (also done when the loader is collected)."""
        if self._prober is not None:
            self._prober.close()
            self._prober = None

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()

    def _load_parallel(self, items: list[tuple], spec: SamplingSpec) -> Iterator[list[ClipResult]]:
        """Chunk c of ``max_batch`` items goes to worker ``c % pipelines``; results in order."""
        from .prefetch import prefetch

        if not self._workers:
            self._workers = [
                ClipLoader(
                    size=self.size, mean=self.mean, std=self.std, device=self.device,
                    device_id=self.device_id, max_batch=self.max_batch, num_threads=self.num_threads,
                    cpu_decoder=self.cpu_decoder, vram_fraction=self.vram_fraction / self.pipelines,
                    caps=self._caps, probe_workers=0,  # this loader probes ahead for them
                )
                for _ in range(self.pipelines)
            ]

        chunks = [items[i : i + self.max_batch] for i in range(0, len(items), self.max_batch)]

        def batches_of(worker: ClipLoader, mine: list) -> Iterator[list[ClipResult]]:
            # A function, not a generator expression: one would look ``worker`` up late and
            # every thread would then drive the last worker's pipelines.
            for chunk in mine:
                yield from worker.load(chunk, spec)

        streams = [
            prefetch(batches_of(worker, chunks[w :: self.pipelines]), depth=1)
            for w, worker in enumerate(self._workers)
        ]
        try:
            for c, chunk in enumerate(chunks):
                got = 0
                while got < len(chunk):  # a chunk can come back as several VRAM-sized batches
                    batch = next(streams[c % self.pipelines])
                    got += len(batch)
                    yield batch
        finally:
            for stream in streams:
                stream.close()
            for worker in self._workers:
                self.stats.batch_sizes.update(worker.stats.batch_sizes)
                self.stats.fallbacks.extend(worker.stats.fallbacks)
                worker.stats = LoaderStats()

    def _vram_cap(self, info: VideoInfo, frames: int) -> int:
        return batch_size_for(
            free_vram_bytes(self.device_id),
            frames=frames,
            width=info.width,
            height=info.height,
            size=self.size,
            cap=self.max_batch,
            fraction=self.vram_fraction,
        )

    # -- batch execution -------------------------------------------------------------
    def _run(self, batch: list[ClipResult], spec: SamplingSpec) -> list[ClipResult]:
        good = [r for r in batch if r.ok]
        if good:
            self.stats.batch_sizes[len(good)] += 1
        try:
            dali_items = [r for r in good if r.front == "dali"]
            if dali_items:
                self._run_dali(dali_items)
            frame_items = [r for r in good if r.front == "frames"]
            if frame_items:
                self._run_frames(frame_items, spec)
        finally:
            self._batch_out = None  # the next batch takes a buffer of its own
        for r in good:
            if r.ok and r.info.rotation:
                _orient(r)
        return batch

    def _outputs(self, pipe, n: int) -> list:
        """Run ``pipe``; its batch as torch tensors owned by torch (one copy, same device).

        DALI reuses its output buffers on the next run, which the prefetch thread may start
        while these clips are still being consumed, so the DLPack view is cloned at once:
        device-to-device on the GPU (no host round trip), one memcpy on the CPU.
        """
        import torch

        (out,) = pipe.run()
        dense = out.as_tensor()
        if self.device == "gpu":
            with torch.cuda.device(self.device_id):
                try:
                    clips = torch.from_dlpack(dense).clone()
                except (TypeError, RuntimeError, BufferError):  # older DALI: no stream-aware DLPack
                    from nvidia.dali.plugin.pytorch import feed_ndarray

                    clips = torch.empty(dense.shape(), dtype=torch.float32, device=f"cuda:{self.device_id}")
                    feed_ndarray(dense, clips, cuda_stream=torch.cuda.current_stream(self.device_id))
        else:
            # One pooled buffer per batch (max_batch clips), taken at the first copy-out so
            # that DALI's decode of this batch has already run while the pool may wait.
            src = torch.from_dlpack(dense)
            if self._batch_out is None:
                self._batch_out = (self._output_pool.take(src.numel(), src.dtype, capacity=src.numel() // n * self.max_batch), 0)
            buf, used = self._batch_out
            assert used + src.numel() <= buf.numel(), "more clips in a batch than max_batch"
            clips = buf[used : used + src.numel()].view(src.shape)
            clips.copy_(src)
            self._batch_out = (buf, used + src.numel())
        return list(clips.unbind(0))

    def unblock(self) -> None:
        """The consumer stopped: a producer waiting for a recycle goes on (see ``prefetch``'s
        ``on_stop``)."""
        for pool in self._output_pools():
            pool.unblock()

    def _output_pools(self) -> list[OutputPool]:
        """This loader's pool and its parallel workers' (a batch came from one of them)."""
        return [self._output_pool] + [w._output_pool for w in self._workers]

    def recycle(self, batch: list[ClipResult]) -> None:
        """The consumer is done with ``batch``: its clips' memory may hold the next batches.

        Optional (CPU outputs only). A consumer that calls it after using each batch — and
        keeps no clip — saves a fresh allocation of the batch's clips per DALI run (page
        faults on hundreds of MB, and stalls when memory is fragmented). The clips of a
        recycled batch must not be read again.
        """
        pools = self._output_pools()
        for r in batch:
            base = getattr(r.clip, "_base", None)  # the pool buffer the clip is a view of
            r.clip = None
            if base is None or base.device.type != "cpu":
                continue
            for pool in pools:
                if pool.give(base):  # False: not this pool's, or already back
                    break

    # After this many rejections of one kind of stream (codec, chroma, depth, size class)
    # and no success with that kind, streams of that kind go to the CPU front first time.
    NVDEC_GIVE_UP_AFTER = 3

    def _run_dali(self, items: list[ClipResult]) -> None:
        if self.device == "gpu" and not self._nvdec_ok:
            for item in items:
                item.front, item.note = "frames", item.note or "no usable NVDEC on this GPU"
            return
        try:
            if self._feed_dali(items) and self.device == "gpu":
                for item in items:
                    self._accepted[self._key(item)] += 1
            return
        except Exception as exc:  # noqa: BLE001 - DALI raises RuntimeError for anything
            self._drop_pipe("dali")
            if len(items) == 1:
                if self.device == "gpu":
                    self._note_rejection(items[0])
                self._fallback(items[0], exc)
                return
        for item in items:  # isolate the file the decoder rejected
            self._run_dali([item])

    @staticmethod
    def _key(item: ClipResult) -> tuple:
        return stream_key(item.info.codec, item.info.pix_fmt, item.info.width, item.info.height)

    def _note_rejection(self, item: ClipResult) -> None:
        key = self._key(item)
        self._rejected[key] += 1
        if not self._accepted[key] and self._rejected[key] >= self.NVDEC_GIVE_UP_AFTER and key not in self._blocked:
            self._blocked.add(key)
            codec, chroma, depth, size = key
            self.stats.fallbacks.append(
                f"NVDEC rejected {self._rejected[key]} {codec} {chroma} {depth}-bit streams up to {size}px and took none: "
                "streams of that kind decode on the CPU from now on"
            )

    def _feed_dali(self, items: list[ClipResult]) -> bool:
        """Decode ``items`` with DALI's decoder; False when it cannot even be built (no NVDEC)."""
        try:
            pipe = self._pipe("dali")
        except Exception as exc:  # noqa: BLE001 - e.g. no NVDEC on this GPU / MIG slice
            if self.device != "gpu":
                raise
            self._nvdec_ok = False
            self.stats.fallbacks.append(f"NVDEC unusable on this GPU ({dali_error_line(exc)}): decoding on the CPU")
            for item in items:
                self._fallback(item, exc)
            return False
        encoded = [np.fromfile(item.path, dtype=np.uint8) for item in items]
        pipe.feed_input("encoded", encoded)
        pipe.feed_input("indices", [item.indices.astype(np.int32) for item in items])
        pipe.feed_input("flip", [_graph_flip(item) for item in items])
        for item, clip in zip(items, self._outputs(pipe, len(items)), strict=True):
            item.clip = clip
        return True

    def _fallback(self, item: ClipResult, exc: Exception) -> None:
        """The DALI decoder rejected this file: decode it on the CPU with PyAV instead."""
        info = item.info
        item.note = f"{info.codec} {info.width}x{info.height} {info.pix_fmt}: DALI's decoder rejected it ({dali_error_line(exc)})"
        self.stats.fallbacks.append(f"{item.relpath}: {item.note}")
        item.front = "frames"
        item.clip = None

    def _decode_cpu(self, item: ClipResult, spec: SamplingSpec, slot: int) -> np.ndarray:
        alloc = functools.partial(self._frame_pool.take, slot)
        try:
            return decode_frames(item.path, item.indices, alloc=alloc)
        except FrameCountMismatch as short:
            # The stream decodes fewer frames than it has packets: resample with the real n.
            lost = item.info.num_frames - short.decoded
            note = f"{lost} frame(s) do not decode"
            item.info = dataclasses.replace(
                item.info, frames_missing=item.info.frames_missing + lost,
                warning="; ".join(filter(None, [item.info.warning, note])),
            )
            item.indices, item.flip = spec.plan(short.decoded, item.info.fps, item.relpath)
            return decode_frames(item.path, item.indices, alloc=alloc)

    def _run_frames(self, items: list[ClipResult], spec: SamplingSpec) -> None:
        decoded, ready = [], []
        for item in items:
            try:
                decoded.append(self._decode_cpu(item, spec, slot=len(decoded)))
                ready.append(item)
            except (VideoError, FrameCountMismatch) as exc:
                item.error = exc if isinstance(exc, VideoError) else VideoError(item.path, str(exc))
        if not ready:
            return
        pipe = self._pipe("frames")
        pipe.feed_input("frames", decoded, layout="FHWC")  # read in place (no_copy), see build_pipeline
        pipe.feed_input("flip", [_graph_flip(item) for item in ready])
        for item, clip in zip(ready, self._outputs(pipe, len(ready)), strict=True):
            item.clip = clip


__all__ = ["ClipLoader", "ClipResult", "FramePool", "LoaderStats", "OutputPool", "build_pipeline", "default_pipelines"]
