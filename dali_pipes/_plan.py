"""Before anything decodes: probe, sample, route, and cut the items into batches.

:class:`Router` is the routing rule (``_nvdec.route``) plus what a run has learnt: whether
NVDEC is usable at all, and which kinds of stream it keeps rejecting. :class:`Planner`
turns ``(path, relpath)`` items into planned :class:`ClipResult` batches, sized by
``max_batch`` and, on a GPU, by free VRAM.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ._nvdec import CapsTable, Route, route, stream_key
from ._probe import DALI_CPU_CODECS, VideoError, VideoInfo, outcome_of, probe
from ._samplers import SamplingSpec
from ._vram import batch_size_for, free_vram_bytes


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


@dataclass
class LoaderStats:
    batch_sizes: Counter = field(default_factory=Counter)
    fallbacks: list[str] = field(default_factory=list)


class Router:
    """Which front decodes a stream, given the card's caps and this run's experience."""

    # After this many rejections of one kind of stream (codec, chroma, depth, size class)
    # and no success with that kind, streams of that kind go to the CPU front first time.
    NVDEC_GIVE_UP_AFTER = 3

    def __init__(self, device: str, cpu_decoder: str, caps: CapsTable | None, stats: LoaderStats):
        self.device, self.cpu_decoder, self.caps, self.stats = device, cpu_decoder, caps, stats
        self.nvdec_usable = device == "gpu"
        self._accepted: Counter = Counter()  # stream_key -> files NVDEC decoded
        self._rejected: Counter = Counter()  # stream_key -> files NVDEC rejected
        self._blocked: set = set()  # kinds rejected NVDEC_GIVE_UP_AFTER times and never taken

    def route(self, info: VideoInfo) -> Route:
        return route(
            info.codec, info.pix_fmt, info.width, info.height, device=self.device, cpu_decoder=self.cpu_decoder,
            caps=self.caps, nvdec_usable=self.nvdec_usable, blocked=frozenset(self._blocked),
            dali_cpu_codecs=DALI_CPU_CODECS, needs_pyav=info.needs_pyav,
        )

    def accepted(self, info: VideoInfo) -> None:
        self._accepted[_key(info)] += 1

    def rejected(self, info: VideoInfo) -> None:
        key = _key(info)
        self._rejected[key] += 1
        if not self._accepted[key] and self._rejected[key] >= self.NVDEC_GIVE_UP_AFTER and key not in self._blocked:
            self._blocked.add(key)
            codec, chroma, depth, size = key
            self.stats.fallbacks.append(
                f"NVDEC rejected {self._rejected[key]} {codec} {chroma} {depth}-bit streams up to {size}px and took none: "
                "streams of that kind decode on the CPU from now on"
            )

    def nvdec_unusable(self, why: str) -> None:
        self.nvdec_usable = False
        self.stats.fallbacks.append(f"NVDEC unusable on this GPU ({why}): decoding on the CPU")


def _key(info: VideoInfo) -> tuple:
    return stream_key(info.codec, info.pix_fmt, info.width, info.height)


class Planner:
    """Items -> batches of planned results (probed, sampled, routed; bad files with their error)."""

    def __init__(self, router: Router, *, max_batch: int, size: int, device_id: int, vram_fraction: float):
        self.router, self.max_batch, self.size = router, max_batch, size
        self.device_id, self.vram_fraction = device_id, vram_fraction

    def plan(self, item: tuple, spec: SamplingSpec) -> ClipResult:
        """``item``: ``(path, relpath)``, or with a third element, a probe started ahead."""
        path, relpath = item[0], item[1]
        result = ClipResult(path=str(path), relpath=relpath)
        try:
            result.info = outcome_of(item[2]) if len(item) > 2 else probe(path)
            result.indices, result.flip = spec.plan(result.info.num_frames, result.info.fps, relpath)
            chosen = self.router.route(result.info)
            result.front, result.note = chosen.front, chosen.reason
        except VideoError as exc:
            result.error = exc
        return result

    def batches(self, items: Iterable[tuple], spec: SamplingSpec) -> Iterator[list[ClipResult]]:
        """At most ``max_batch`` good files a batch (fewer on a GPU when free VRAM says so)."""
        batch: list[ClipResult] = []
        cap = self.max_batch
        for item in items:
            result = self.plan(item, spec)
            if result.ok and self.router.device == "gpu":
                cap = min(cap, self._vram_cap(result.info, spec.frames))
            batch.append(result)
            if sum(r.ok for r in batch) >= cap:
                yield batch
                batch, cap = [], self.max_batch
        if batch:
            yield batch

    def _vram_cap(self, info: VideoInfo, frames: int) -> int:
        return batch_size_for(
            free_vram_bytes(self.device_id), frames=frames, width=info.width, height=info.height,
            size=self.size, cap=self.max_batch, fraction=self.vram_fraction,
        )
