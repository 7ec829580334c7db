"""Videos in, normalized clips out: :class:`ClipLoader` (decode -> resize -> normalize, CPU or GPU).

The decode path, in order: ``_plan.Planner`` (probe, sample with ``_samplers``, route with
``_nvdec``, cut into batches) -> ``_runner.BatchRunner`` (DALI pipelines built by
``_graph``; PyAV in ``_pyav`` for what DALI's decoder does not take) -> a
``_buffers.Batch`` whose CPU clips live in a leased buffer. This class wires them, runs
decoding ahead of the consumer in a thread (``ahead``), and fans batches out to several
pipelines.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

from ._buffers import Batch, OutputPool
from ._ffmpeg_log import ensure_ffmpeg_logging
from ._geometry import Geometry
from ._graph import Device
from ._nvdec import CapsTable
from ._plan import MAX_PIXELS, LoaderStats, Planner, Router
from ._prefetch import prefetch
from ._probe import Prober
from ._runner import BatchRunner
from ._samplers import SamplingSpec

# More pipelines than this decoded slower on a 7-NVDEC card, in DALI alone and in vcp
# (docs/benchmarks.md, "Numbers behind the defaults").
MAX_AUTO_PIPELINES = 4
WINDOW_PER_PIPELINE = 3  # chunks decoded or decoding ahead of the consumer, per pipeline


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

        for batch in loader.load(items, spec, ahead=1):
            with batch:          # CPU clips' memory is reused for later batches after the block
                for result in batch: ...
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
        caps: CapsTable | None = None,
        probe_workers: int | None = None,
        max_pixels: int = MAX_PIXELS,
        geometry: Geometry | None = None,
    ):
        if device not in ("cpu", "gpu"):
            raise ValueError(f"Invalid device ({device!r}). Supported values are: cpu, gpu.")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if pipelines is not None and pipelines < 1:
            raise ValueError(f"pipelines must be >= 1, got {pipelines}")
        self._args = dict(
            size=size, mean=tuple(mean), std=tuple(std), device=device, device_id=device_id, max_batch=max_batch,
            num_threads=num_threads, cpu_decoder=cpu_decoder, vram_fraction=vram_fraction, max_pixels=max_pixels,
            geometry=geometry,
        )
        self.device, self.max_batch = device, max_batch
        self.stats = LoaderStats()
        caps = caps if caps is not None else (CapsTable(device_id) if device == "gpu" else None)
        self.router = Router(device, cpu_decoder, caps, self.stats)
        self.planner = Planner(self.router, max_batch=max_batch, size=size, device_id=device_id, vram_fraction=vram_fraction,
                               max_pixels=max_pixels, geometry=geometry)
        self.pool = OutputPool()
        self.runner = BatchRunner(
            router=self.router, stats=self.stats, pool=self.pool, device=device, device_id=device_id,
            max_batch=max_batch, size=size, mean=tuple(mean), std=tuple(std), num_threads=num_threads, geometry=geometry,
        )
        # None: one pipeline per NVDEC engine the card reports (one pipeline keeps about one busy)
        self.pipelines = pipelines if pipelines is not None else default_pipelines(self.nvdec_engines)
        # None: on a GPU, files are probed ahead in a few processes (the CPU is otherwise idle);
        # on the CPU in line (the cores decode)
        if probe_workers is None:
            probe_workers = min(4, max(1, (os.cpu_count() or 1) // 4)) if device == "gpu" else 0
        self.probe_workers = probe_workers
        # made now, not at the first load(): its forked processes keep whatever files are
        # open when they are made, so make the loader before opening outputs (and close it)
        self._prober: Prober | None = Prober(probe_workers) if probe_workers else None
        self.workers: list[ClipLoader] = []
        ensure_ffmpeg_logging()

    @property
    def nvdec_engines(self) -> int:
        """NVDEC engines the card reports (0: unknown, or a CPU loader)."""
        return self.router.caps.engines() if self.router.caps is not None else 0

    def load(self, items: Iterable[tuple[str, str]], spec: SamplingSpec, *, ahead: int = 0) -> Iterator[Batch]:
        """Yield :class:`Batch` es of results (bad files included, with their error), in input order.

        ``items`` are ``(path, relpath)`` or ``(path, relpath, segment)``; ``relpath`` seeds the
        per-file generator; ``segment`` (``(start, end)`` seconds, either None) restricts the
        sampling to the frames shown in ``[start, end)``.
        ``ahead``: batches decoded in a background thread ahead of the consumer (0: in line).
        The CPU clip memory then stays at ``ahead + 1`` batches for a consumer that uses
        each batch in a ``with`` block. With ``pipelines > 1`` several loaders, each with
        its own DALI pipelines (one keeps about one NVDEC busy), decode chunks of ``items``
        in parallel threads, each taking the next chunk when it is free.
        """
        if self.probe_workers:
            if self._prober is None:
                self._prober = Prober(self.probe_workers)
            items = [(item[0], item[1], item[2] if len(item) > 2 else None, self._prober.submit(item[0]))
                     for item in items]
        batches = self._parallel(list(items), spec) if self.pipelines > 1 else self._in_line(items, spec)
        if ahead <= 0:
            self.pool.limit = None  # one thread: a lease that waited would wait for ever
            yield from batches
            return
        self.pool.limit = ahead + 1
        self.pool.waive(False)
        yield from prefetch(batches, depth=ahead, waiting=self.pool.waive)

    def _in_line(self, items: Iterable[tuple], spec: SamplingSpec) -> Iterator[Batch]:
        for planned in self.planner.batches(items, spec):
            yield self.runner.run(planned, spec)

    def _parallel(self, items: list[tuple], spec: SamplingSpec) -> Iterator[Batch]:
        """Chunks of ``max_batch`` items, decoded by whichever pipeline is free; results in order.

        A pipeline takes the next chunk as soon as it is done with its last one (a slow
        batch holds up no other pipeline), but never more than :data:`WINDOW_PER_PIPELINE`
        x ``pipelines`` chunks past the one the consumer waits for, which bounds the clips
        held. (Chunk ``c`` going to pipeline ``c % pipelines`` with one batch of slack left
        the pipelines waiting on each other ~40% of the time on an H100: docs/benchmarks.md.)
        """
        if not self.workers:
            self.workers = [
                ClipLoader(
                    **{**self._args, "vram_fraction": self._args["vram_fraction"] / self.pipelines},
                    caps=self.router.caps, probe_workers=0,  # this loader probes ahead for them
                )
                for _ in range(self.pipelines)
            ]
        chunks = [items[i : i + self.max_batch] for i in range(0, len(items), self.max_batch)]
        order = _InOrder(len(chunks), window=WINDOW_PER_PIPELINE * self.pipelines)

        def work(worker: ClipLoader) -> None:
            while (c := order.take()) is not None:
                try:
                    order.put(c, list(worker.load(chunks[c], spec)))
                except BaseException as exc:  # noqa: BLE001 - raised in the consumer, in order
                    order.put(c, exc)

        threads = [threading.Thread(target=work, args=(w,), name="vcp-decode", daemon=True) for w in self.workers]
        for thread in threads:
            thread.start()
        try:
            for c in range(len(chunks)):
                done = order.get(c)
                if isinstance(done, BaseException):
                    raise done
                yield from done
        finally:
            order.stop()
            for thread in threads:
                thread.join()
            for worker in self.workers:
                self.stats.batch_sizes.update(worker.stats.batch_sizes)
                self.stats.fallbacks.extend(worker.stats.fallbacks)
                worker.stats.batch_sizes.clear()
                worker.stats.fallbacks.clear()

    def close(self) -> None:
        """Stop the probe processes and wait for them (also done when the loader is collected);
        a later :meth:`load` starts new ones."""
        if self._prober is not None:
            self._prober.close()
            self._prober = None

    def __enter__(self) -> ClipLoader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):
            if self._prober is not None:
                self._prober.close(wait=False)  # no waiting inside the garbage collector


class _InOrder:
    """Hands out chunk numbers to decode threads and their results to the consumer in order.

    ``take()`` gives the next chunk to decode (None: none left, or stopped), waiting while
    it is ``window`` or more past the chunk the consumer waits for; ``put(c, result)``
    files a result; ``get(c)`` waits for chunk ``c``'s result and moves the window on.
    """

    def __init__(self, count: int, window: int):
        self.count, self.window = count, max(1, window)
        self._next = 0  # the next chunk to hand out
        self._wanted = 0  # the chunk the consumer waits for
        self._done: dict[int, object] = {}
        self._stopped = False
        self._cond = threading.Condition()

    def take(self) -> int | None:
        with self._cond:
            while not self._stopped and self._next < self.count and self._next >= self._wanted + self.window:
                self._cond.wait()
            if self._stopped or self._next >= self.count:
                return None
            self._next += 1
            return self._next - 1

    def put(self, chunk: int, result) -> None:
        with self._cond:
            self._done[chunk] = result
            self._cond.notify_all()

    def get(self, chunk: int):
        with self._cond:
            while chunk not in self._done:
                self._cond.wait()
            self._wanted = chunk + 1
            self._cond.notify_all()
            return self._done.pop(chunk)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._done.clear()
            self._cond.notify_all()
