"""Windows of consecutive frames for clip backbones: the temporal plan, and a reader that
decodes a video once, in order, and hands its windows out a few at a time.

The plan is torchvision's ``VideoClips`` (``datasets/video_utils.py``): the video's ``n``
frames at ``fps`` are resampled to ``frame_rate`` (source frame ``floor(k * fps /
frame_rate)`` for ``k < floor(n * frame_rate / fps)``, computed in float32 as it does; an
integer step keeps every ``step``-th frame, as its slice does), then cut into windows of
``window`` frames every ``stride``. A partial last window is dropped; a video shorter than
one window gives one window, its last frame repeated (``short``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ._errors import VideoError, ffmpeg_reason
from ._geometry import Geometry
from ._graph import feed_geometry, views_frame_major
from ._plan import check_pixels, frames_in_segment, place
from ._probe import VideoInfo, local_path


def resample(num_frames: int, fps: float, frame_rate: float | None) -> np.ndarray:
    """Source frame indices of a ``num_frames`` video at ``fps`` resampled to ``frame_rate``
    (None: its own rate). Worked example: n=10 at 25 fps to 15 -> step 5/3 -> [0, 1, 3, 5, 6, 8]."""
    if frame_rate is None or num_frames < 1 or fps <= 0:
        return np.arange(max(num_frames, 0), dtype=np.int64)
    step = fps / frame_rate
    if float(step).is_integer():
        return np.arange(0, num_frames, int(step), dtype=np.int64)
    total = int(np.floor(num_frames * frame_rate / fps))
    return np.floor(np.arange(total, dtype=np.float32) * np.float32(step)).astype(np.int64)


def plan_windows(num_frames: int, fps: float, *, window: int, stride: int,
                 frame_rate: float | None) -> tuple[np.ndarray, bool]:
    """``(frames [W, window] source indices, short)``: every full window of the resampled
    video, ``stride`` resampled frames apart; ``short`` when there was none and the one
    window given repeats the last frame."""
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got {window}, {stride}")
    seq = resample(num_frames, fps, frame_rate)
    if seq.size == 0:
        seq = np.zeros(1, np.int64)
    if seq.size < window:
        return np.concatenate([seq, np.full(window - seq.size, seq[-1])])[None, :].astype(np.int64), True
    starts = np.arange(0, seq.size - window + 1, stride)
    return seq[starts[:, None] + np.arange(window)[None, :]], False


def window_times(info: VideoInfo, frames: np.ndarray, frame_rate: float) -> np.ndarray:
    """``[W, 2]`` seconds: each window's first frame's time, its last frame's + 1 / frame_rate."""
    first, last = info.times_of(frames[:, 0]), info.times_of(frames[:, -1])
    return np.stack([np.asarray(first, np.float64), np.asarray(last, np.float64) + 1.0 / frame_rate], axis=1)


def plan_video(info: VideoInfo, geometry: Geometry, *, window: int, stride: int, frame_rate: float | None,
               segment=None, max_pixels: int | None = None) -> WindowPlan:
    """One video's :class:`WindowPlan` (its manifest ``segment`` ``[start, end)`` seconds,
    either end None: only the frames shown in it are resampled; indices stay the file's own;
    frames larger than ``max_pixels`` refused, as the clip loader refuses them)."""
    if max_pixels is not None:
        check_pixels(info, max_pixels)
    inside = frames_in_segment(info, segment)
    count = info.num_frames if inside is None else int(inside.size)
    frames, short = plan_windows(count, info.fps, window=window, stride=stride, frame_rate=frame_rate)
    if inside is not None:
        frames = inside[frames]
    resize_to, crop_at = place(geometry, info)
    return WindowPlan(info, frames.astype(np.int64), short, resize_to, crop_at)


@dataclass
class WindowPlan:
    """One video's windows: its probe, the source frames of each window, and the chunks of
    windows (at most ``per_chunk`` each) they are decoded in."""

    info: VideoInfo
    frames: np.ndarray  # [W, window] int64
    short: bool
    resize_to: tuple[int, int] | None = None
    crop_at: tuple[int, int] | None = None

    def chunks(self, per_chunk: int) -> list[slice]:
        count = self.frames.shape[0]
        return [slice(i, min(i + per_chunk, count)) for i in range(0, count, per_chunk)]


class WindowReader:
    """Decodes a video in order once (PyAV) and turns each chunk of windows into normalized
    ``[b, 3, window, H, W]`` float32 (the frames resized, cropped and normalized in a DALI
    graph, as the loader's clips are: on the GPU when ``device="gpu"``). Memory holds one
    chunk's frames, whatever the video's length."""

    def __init__(self, *, geometry: Geometry, mean, std, device: str = "cpu", device_id: int = 0,
                 num_threads: int | None = None):
        self.geometry, self.mean, self.std = geometry, tuple(mean), tuple(std)
        self.device, self.device_id, self.num_threads = device, device_id, num_threads
        self._pipe = None

    def _pipeline(self):
        if self._pipe is None:
            from ._graph import build_pipeline

            self._pipe = build_pipeline("pyav", device=self.device, batch_size=1, size=self.geometry.size[0],
                                        mean=self.mean, std=self.std, num_threads=self.num_threads,
                                        device_id=self.device_id, geometry=self.geometry)
        return self._pipe

    def windows(self, plan: WindowPlan, per_chunk: int) -> Iterator:
        """``[b, 3, window, H, W]`` tensors, chunk by chunk (:class:`VideoError` when the
        stream fails or ends before a planned frame)."""
        import torch

        frames = _Frames(plan.info)
        try:
            for part in plan.chunks(per_chunk):
                wanted = plan.frames[part]
                unique, inverse = np.unique(wanted, return_inverse=True)
                frames.forget_below(int(unique[0]))
                rgb = frames.take(unique)
                normalized = self._normalize(rgb, plan)  # [V * k, 3, H, W], view after view
                if plan.info.rotation:
                    normalized = torch.rot90(normalized, plan.info.rotation // 90, dims=(-2, -1))
                views = self.geometry.views
                normalized = views_frame_major(normalized, views, self.geometry.flipped()).view(len(unique), views, *normalized.shape[1:])
                clip = normalized[torch.from_numpy(inverse.reshape(wanted.shape))]  # [b, window, V, 3, H, W]
                # [b * V, 3, window, H, W]: window after window, each window's views in order
                yield clip.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, wanted.shape[1], *normalized.shape[-2:])
        finally:
            frames.close()

    def _normalize(self, rgb: np.ndarray, plan: WindowPlan):
        import torch

        pipe = self._pipeline()
        pipe.feed_input("frames", [rgb], layout="FHWC")
        pipe.feed_input("flip", [np.int32(0)])
        feed_geometry(pipe, self.geometry, self.device, [(plan.resize_to, plan.crop_at)])
        (out,) = pipe.run()
        return torch.from_dlpack(out.as_tensor())[0].clone()  # DALI reuses its output buffer at the next run


class _Frames:
    """A video's frames in presentation order, decoded once: :meth:`take` returns the frames
    at ``indices``, RGB uint8. Frames taken are kept until :meth:`forget_below` (overlapping
    windows of the next chunk take some again); the decoder only moves forward."""

    def __init__(self, info: VideoInfo):
        self.info = info
        self._container = None
        self._iter = None
        self._next = 0  # the index of the frame the decoder gives next
        self._kept: dict[int, np.ndarray] = {}

    def forget_below(self, index: int) -> None:
        for k in [k for k in self._kept if k < index]:
            del self._kept[k]

    def _open(self):
        import av

        from ._pyav import iter_frames

        self._container = av.open(local_path(self.info.path), metadata_errors="ignore")
        stream = (self._container.streams.video[0] if self.info.stream_index is None
                  else self._container.streams[self.info.stream_index])
        stream.thread_type = "AUTO"
        self._iter = iter_frames(self._container, stream, self.info.lead_packets)

    def take(self, indices: np.ndarray) -> np.ndarray:
        import av

        if self._iter is None:
            self._open()
        out: np.ndarray | None = None
        for row, index in enumerate(indices.tolist()):
            try:
                rgb = self._frame(int(index))
            except av.FFmpegError as exc:
                raise VideoError(self.info.path, f"corrupt stream: decoding failed at frame {self._next} "
                                                 f"({ffmpeg_reason(exc)})") from None
            if out is None:
                out = np.empty((len(indices), *rgb.shape), np.uint8)
            elif rgb.shape != out.shape[1:]:
                raise VideoError(self.info.path, f"frame size changes mid-stream (by frame {index}): "
                                                 "clip backbones need one frame size")
            out[row] = rgb
        return out

    def _frame(self, index: int) -> np.ndarray:
        if index in self._kept:
            return self._kept[index]
        if index < self._next:
            raise ValueError(f"frame {index} was asked after frame {self._next - 1} and not kept")
        for frame in self._iter:
            self._next += 1
            if self._next - 1 == index:
                self._kept[index] = frame.to_ndarray(format="rgb24")
                return self._kept[index]
        raise VideoError(self.info.path, f"only {self._next} of its {self.info.num_frames} frames decode "
                                         f"(frame {index} is planned)")

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
