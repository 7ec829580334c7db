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

from ._colour import correction
from ._geometry import Geometry, stored_window
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
    scale_to: tuple[int, int] | None = None  # PyAV: frames scaled to (width, height) as they decode
    clip: object | None = None  # torch.Tensor [T, 3, S, S] float32
    error: VideoError | None = None
    segment: tuple[float | None, float | None] | None = None  # [start, end) seconds sampled from, if given
    resize_to: tuple[int, int] | None = None  # a model's recipe: the (height, width) the stored frames are resized to
    crop_at: tuple[int, int] | None = None  # and the crop's (top, left) in them (negative: padding; [V, 2]: per view)

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


MAX_PIXELS = 7680 * 4320  # the largest frame decoded by default (8K UHD); ClipLoader(max_pixels=) raises it
CLIP_BYTES = 1 << 30  # a CPU clip whose frames at full size need more is decoded by PyAV, scaled as it decodes
CPU_BATCH_BYTES = 2 << 30  # decoded frames of one CPU batch, at most (one clip always goes)


def decoded_bytes(frames: int, width: int, height: int) -> int:
    """RGB bytes of ``frames`` decoded frames (what the decode front holds before the resize)."""
    return frames * width * height * 3


def check_pixels(info: VideoInfo, max_pixels: int) -> None:
    """A stream whose frames are larger than ``max_pixels`` is refused before decoding."""
    if info.width * info.height > max_pixels:
        raise VideoError(info.path, f"frames of {info.width}x{info.height} are larger than the limit of "
                                    f"{max_pixels} pixels (8K is 7680x4320); --max-pixels raises it")


def frames_in_segment(info: VideoInfo, segment) -> np.ndarray | None:
    """The frames (the file's own indices) whose presentation time falls in the segment
    ``[start, end)`` (either end None: open); None for the whole video. A segment that holds
    no frame is a :class:`VideoError`."""
    if segment is None or tuple(segment) == (None, None):
        return None
    start, end = segment
    times = np.asarray(info.times_of(range(info.num_frames)), np.float64)
    inside = np.flatnonzero((times >= (start if start is not None else -np.inf)) & (times < (end if end is not None else np.inf)))
    if inside.size == 0:
        shown = f"[{_seconds(start)}, {_seconds(end)})"
        last = f"{times[-1]:.3f} s" if times.size else "no frames"
        raise VideoError(info.path, f"segment {shown} holds no frame (the video's last frame is at {last})")
    return inside


def sample_segment(spec: SamplingSpec, info: VideoInfo, relpath: str, segment) -> tuple[np.ndarray, bool]:
    """``spec.plan`` over the whole video, or over the frames shown in the segment
    (:func:`frames_in_segment`): n is then the number of those frames, and the indices stay
    the file's own."""
    inside = frames_in_segment(info, segment)
    if inside is None:
        return spec.plan(info.num_frames, info.fps, relpath)
    indices, flip = spec.plan(int(inside.size), info.fps, relpath)
    return inside[indices].astype(np.int64), flip


def place(geometry: Geometry, info: VideoInfo):
    """Where a model's recipe puts this video's frames: the (height, width) the stored frames
    are resized to and the crop's (top, left) in them (with several views, ``[V, 2]``: each
    view's), computed on the frame as players show it (after its rotation) so that the box
    is the one the model's own transform would take."""
    k = (info.rotation // 90) % 4
    shown = (info.width, info.height) if k % 2 else (info.height, info.width)
    if k % 2 and geometry.size[0] != geometry.size[1]:
        raise VideoError(info.path, f"rotated {info.rotation} degrees: a non-square model input "
                                    f"({geometry.size[1]}x{geometry.size[0]}) from a rotated video is not supported")
    rh, rw = geometry.resized(*shown)
    stored = (rw, rh) if k % 2 else (rh, rw)
    anchors = [stored_window(top, left, geometry.size, (rh, rw), info.rotation) for top, left in geometry.boxes(rh, rw)]
    return stored, (anchors[0] if geometry.views == 1 else np.asarray(anchors, np.int64))


def _seconds(value) -> str:
    return "" if value is None else f"{value:g}"


class Planner:
    """Items -> batches of planned results (probed, sampled, routed; bad files with their error).

    Memory follows the output, not the source: a stream whose frames are larger than
    ``max_pixels`` is refused before decoding; on the CPU, a clip whose frames at full size
    would need more than :data:`CLIP_BYTES` decodes on PyAV with each frame scaled (area)
    to at most twice the output size as it decodes, and a batch holds at most
    :data:`CPU_BATCH_BYTES` of decoded frames.
    """

    def __init__(self, router: Router, *, max_batch: int, size: int, device_id: int, vram_fraction: float,
                 max_pixels: int = MAX_PIXELS, geometry: Geometry | None = None):
        self.router, self.max_batch, self.size = router, max_batch, size
        self.device_id, self.vram_fraction, self.max_pixels = device_id, vram_fraction, max_pixels
        self.geometry = geometry

    def plan(self, item: tuple, spec: SamplingSpec) -> ClipResult:
        """``item``: ``(path, relpath)``, with a third element the segment ``(start, end)``
        (or None), with a fourth a probe started ahead."""
        path, relpath = item[0], item[1]
        result = ClipResult(path=str(path), relpath=relpath, segment=item[2] if len(item) > 2 else None)
        try:
            result.info = info = outcome_of(item[3]) if len(item) > 3 else probe(path)
            check_pixels(info, self.max_pixels)
            result.indices, result.flip = sample_segment(spec, info, relpath, result.segment)
            if self.geometry is not None:
                result.resize_to, result.crop_at = place(self.geometry, info)
            chosen = self.router.route(info)
            result.front, result.note = chosen.front, chosen.reason
            if self.router.device != "gpu" and result.front == "dali" and correction("dali-cpu", info.colorspace, info.color_range, info.pix_fmt) is not None:
                # DALI's CPU decoder converts with BT.601 and clips before any correction:
                # saturated colours of a BT.709 stream come out wrong; PyAV converts as tagged
                result.front = "pyav"
                result.note = f"{info.codec} {info.colorspace}: decoded by PyAV, which converts its colours as tagged"
            if self.router.device != "gpu" and decoded_bytes(spec.frames, info.width, info.height) > CLIP_BYTES:
                side = 2 * self.size
                result.front, result.scale_to = "pyav", (min(info.width, side), min(info.height, side))
                result.note = (f"{info.codec} {info.width}x{info.height}: frames scaled to {result.scale_to[0]}x"
                               f"{result.scale_to[1]} as they decode (the full-size clip would need "
                               f"{decoded_bytes(spec.frames, info.width, info.height) / 2**30:.1f} GiB)")
        except VideoError as exc:
            result.error = exc
        return result

    def _cpu_bytes(self, result: ClipResult, frames: int) -> int:
        width, height = result.scale_to or (result.info.width, result.info.height)
        return decoded_bytes(frames, width, height)

    def batches(self, items: Iterable[tuple], spec: SamplingSpec) -> Iterator[list[ClipResult]]:
        """At most ``max_batch`` good files a batch (fewer on a GPU when free VRAM says so)."""
        batch: list[ClipResult] = []
        cap, held = self.max_batch, 0
        for item in items:
            result = self.plan(item, spec)
            if result.ok and self.router.device != "gpu":
                size = self._cpu_bytes(result, spec.frames)
                if held and held + size > CPU_BATCH_BYTES:  # this clip starts the next batch
                    yield batch
                    batch, cap, held = [], self.max_batch, 0
                held += size
            if result.ok and self.router.device == "gpu":
                cap = min(cap, self._vram_cap(result.info, spec.frames))
            batch.append(result)
            if sum(r.ok for r in batch) >= cap:
                yield batch
                batch, cap, held = [], self.max_batch, 0
        if batch:
            yield batch

    def _vram_cap(self, info: VideoInfo, frames: int) -> int:
        return batch_size_for(
            free_vram_bytes(self.device_id), frames=frames, width=info.width, height=info.height,
            size=self.size, cap=self.max_batch, fraction=self.vram_fraction,
        )
