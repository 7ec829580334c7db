"""The CPU decode front for codecs DALI's CPU decoder lacks (H.264, HEVC, MPEG-4...).

PyAV (FFmpeg) decodes the stream in order and keeps only the sampled frames; they are
then fed into the same DALI graph (resize + normalize) as DALI-decoded frames.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._errors import VideoError, ffmpeg_reason
from ._probe import local_path


class FrameCountMismatch(Exception):
    """The stream decoded fewer frames than the probe counted; carries the real count."""

    def __init__(self, decoded: int):
        super().__init__(f"only {decoded} frames decode")
        self.decoded = decoded


def decode_frames(
    path: str, indices: np.ndarray, *, threads: int = 0, alloc: Callable[[tuple], np.ndarray] | None = None,
    stream_index: int | None = None, skip_packets: int = 0, notes: list[str] | None = None,
    scale_to: tuple[int, int] | None = None,
) -> np.ndarray:
    """RGB uint8 ``[len(indices), H, W, 3]`` holding frame ``indices[i]`` at row ``i``.

    Frames are numbered in presentation order from 0, as DALI numbers them. Raises
    :class:`FrameCountMismatch` when the stream ends before ``max(indices)`` (the caller
    resamples with the real count) and :class:`VideoError` when decoding fails.
    ``alloc(shape)`` supplies the output array (a reused buffer: a fresh few hundred MB per
    video costs page faults and, now and then, a long stall in the kernel).
    ``stream_index``: the container's stream to decode (the probe's choice); None, the
    first video stream. ``skip_packets``: its first packets not decoded at all (those before
    its first keyframe, which the probe does not count as frames). A stream whose frame size
    changes (a capture across a broadcast's switch, a WebRTC recording) keeps every frame:
    those of another size are scaled to the first sampled frame's, said in ``notes``.
    ``scale_to``: ``(width, height)`` every kept frame is scaled to (area) as it decodes, so
    a clip of 8K frames never holds them at full size.
    """
    import av

    indices = np.asarray(indices, dtype=np.int64)
    wanted: dict[int, list[int]] = {}
    for row, idx in enumerate(indices.tolist()):
        wanted.setdefault(idx, []).append(row)
    last = int(indices.max())
    out: np.ndarray | None = None
    decoded = 0
    try:
        with av.open(local_path(path), metadata_errors="ignore") as container:
            stream = container.streams.video[0] if stream_index is None else container.streams[stream_index]
            stream.thread_type = "AUTO"
            if threads:
                stream.codec_context.thread_count = threads
            for frame in iter_frames(container, stream, skip_packets):
                rows = wanted.get(decoded)
                if rows is not None:
                    rgb = (frame.to_ndarray(format="rgb24") if scale_to is None else
                           frame.reformat(width=scale_to[0], height=scale_to[1], format="rgb24", interpolation="AREA").to_ndarray())
                    if out is None:
                        shape = (len(indices), *rgb.shape)
                        out = alloc(shape) if alloc else np.empty(shape, np.uint8)
                    elif rgb.shape != out.shape[1:]:
                        rgb = _rescaled(frame, out.shape[2], out.shape[1], decoded, notes)
                    out[rows] = rgb
                decoded += 1
                if decoded > last:
                    break
    except av.FFmpegError as exc:
        raise VideoError(
            path, f"corrupt stream: decoding failed at frame {decoded} ({ffmpeg_reason(exc)})"
        ) from None
    if decoded <= last:
        if decoded == 0:
            raise VideoError(path, "no frame decodes")
        raise FrameCountMismatch(decoded)
    assert out is not None
    return out


def iter_frames(container, stream, skip: int):
    """The stream's frames, its first ``skip`` non-empty packets left out."""
    for packet in container.demux(stream):
        if skip and packet.size:
            skip -= 1
            continue
        yield from packet.decode()


def _rescaled(frame, width: int, height: int, index: int, notes: list[str] | None) -> np.ndarray:
    """``frame`` as RGB at ``width`` x ``height``; the first time, a note of the change."""
    if notes is not None and not any(n.startswith("frame size changes") for n in notes):
        notes.append(f"frame size changes mid-stream ({frame.width}x{frame.height} by frame {index}): "
                     f"such frames scaled to {width}x{height}")
    return frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()
