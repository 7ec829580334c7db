"""Probing containers: codec, size, rate and the real frame count, without decoding.

The frame count is the number of non-empty video packets the demuxer returns (one
packet per frame for every codec we read), less those an edit list hides and those before
the first keyframe, not the count a header claims: the frames players show. Files the
demuxer cannot open, files without a video stream and truncated files are rejected here
with a one-line reason, before any decoder sees them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ._colour import COLORSPACE_NAMES, RANGE_NAMES
from ._errors import VideoError, ffmpeg_reason
from ._packets import Packets, demux, presentation_times

# Codecs DALI's CPU video decoder handles (nvidia-dali 2.4); others go through PyAV on the CPU.
DALI_CPU_CODECS = frozenset({"vp8", "vp9", "mjpeg"})


def local_path(path) -> str:
    """``path`` as FFmpeg must be given a local file: absolute, so that a name such as
    ``http:/x.mp4``, ``pipe:3`` or ``data:...`` (a folder beside the manifest, RAW given as
    ``.``) is never read as a protocol."""
    return os.path.abspath(os.fspath(path))


@dataclass(frozen=True)
class VideoInfo:
    path: str
    codec: str
    width: int
    height: int
    fps: float
    num_frames: int  # non-empty packets demuxed, less hidden and lead-in ones: the frames players show
    pix_fmt: str
    declared_frames: int  # what the header says (0 = unknown); informational only
    rotation: int = 0  # display rotation, degrees counter-clockwise (0/90/180/270), as players apply it
    frames_missing: int = 0  # frames the header promises that are not there (a file cut short)
    warning: str = ""  # why frames_missing is not 0
    frame_times: tuple[float, ...] = ()  # seconds from the stream's start, frame i in presentation order
    stream_index: int | None = None  # the container's index of the stream described (None: its first video stream)
    lead_packets: int = 0  # packets before the first keyframe (a recording started mid-GOP): never decoded
    colorspace: str = ""  # the YCbCr matrix the stream is tagged with ("bt709", ...; "" untagged: BT.601)
    color_range: str = ""  # "tv" (16-235), "pc" (0-255) or "" (untagged: tv, or pc for yuvj formats)
    needs_pyav: str = ""  # why only PyAV, told the stream, decodes this file as players show it (DALI would not)

    def times_of(self, indices) -> list[float]:
        """Seconds of the frames at ``indices`` (from the stream's timestamps; ``i / fps``
        where the container has none), to the microsecond."""
        if len(self.frame_times) == self.num_frames:
            return [self.frame_times[int(i)] for i in indices]
        return [round(int(i) / self.fps, 6) for i in indices]


# FFmpeg opens some non-video files as "video": text as ANSI art (tty), single images.
_NOT_VIDEO_FORMATS = frozenset({"tty", "bin", "xbin", "adf", "idf", "image2", "lavfi"})
_NOT_VIDEO_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})


def probe(path: str | os.PathLike) -> VideoInfo:
    """Open ``path``, demux the video stream players show (never a cover picture) and describe it.

    Raises :class:`VideoError` for a missing, empty, non-video, stream-less or
    truncated file.
    """
    import av

    path = Path(path)
    _check_regular_file(path)
    try:
        container = av.open(local_path(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise VideoError(path, f"not a readable video container ({ffmpeg_reason(exc)})") from None
    with container:
        stream, fps, other_streams = _video_stream(path, container)
        # no duration of its own (Matroska): the other streams' packets say where the file ends
        packets = demux(path, container, stream, others=not stream.duration and len(container.streams) > 1)
        ctx = stream.codec_context
        if not ctx.width or not ctx.height:
            raise VideoError(path, "video stream has no frame size")
        missing_s = _check_not_truncated(path, container, stream, fps, packets)
        declared = int(stream.frames or 0)
        present = packets.count + packets.hidden + packets.before_key  # the header counts every packet
        if declared and present < 0.9 * declared and declared - present > fps:
            raise VideoError(path, f"truncated: header says {declared} frames, only {present} present")
        missing, warnings = 0, []
        if declared > present:
            missing = declared - present
            warnings.append(f"cut short: header says {declared} frames, {present} present")
        elif missing_s * fps >= 1.5:
            missing = round(missing_s * fps)
            warnings.append(f"cut short: {missing_s:.2f} s of the declared duration missing")
        if packets.last_corrupt and packets.count > 1:  # a partial last frame: never sampled (stale pixels)
            packets.count -= 1
            packets.stamps.pop()
            missing += 1
            warnings.append("last frame incomplete (dropped)")
        return VideoInfo(
            path=str(path), codec=ctx.name, width=ctx.width, height=ctx.height, fps=fps,
            num_frames=packets.count, pix_fmt=ctx.pix_fmt or "unknown", declared_frames=declared,
            rotation=packets.rotation or 0, frames_missing=missing, warning="; ".join(warnings),
            frame_times=presentation_times(packets.stamps, stream), stream_index=stream.index,
            lead_packets=packets.before_key, needs_pyav=_needs_pyav(other_streams, packets),
            colorspace=COLORSPACE_NAMES.get(ctx.colorspace, ""), color_range=RANGE_NAMES.get(ctx.color_range, ""),
        )


def _check_regular_file(path: Path) -> None:
    """A readable, non-empty regular file (a broken link, a FIFO... is named as such) whose
    name the outputs can store (UTF-8)."""
    if not utf8_name(path):
        raise VideoError(path, "file name is not valid UTF-8 (rename it; names are stored as UTF-8)")
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise VideoError(path, f"broken symbolic link (its target {os.readlink(path)} does not exist)") from None
        raise VideoError(path, "file not found") from None
    except OSError as exc:
        raise VideoError(path, f"cannot read file ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device or special file"
        raise VideoError(path, f"not a regular file ({kind})")
    if st.st_size == 0:
        raise VideoError(path, "empty file (0 bytes)")


def utf8_name(path: Path) -> bool:
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, kept by Python as surrogates
        return False
    return True


def _video_stream(path: Path, container):
    """The video stream players show (FFmpeg's best, never a cover picture), its frame rate
    and a note when DALI might decode another stream; files FFmpeg only pretends are video are refused."""
    import av

    every = list(container.streams.video)
    videos = [s for s in every if not s.disposition & av.stream.Disposition.attached_pic]
    if not videos:
        raise VideoError(path, "no video stream in container" + (" (only a cover picture)" if every else ""))
    best = container.streams.best("video")
    stream = next((s for s in videos if best is not None and s.index == best.index), videos[0])
    # DALI's CPU decoder takes the first video stream, its GPU decoder FFmpeg's best by its
    # own reckoning: safe only when the stream shown is the first and no other is a candidate
    note = ""
    if len(videos) > 1 or stream.index != every[0].index:
        note = f"{len(every)} video streams: #{stream.index} decoded, the one players show"
    ctx = stream.codec_context
    # The first frame is decoded only for its display matrix: one thread (frame threading
    # would make the decoder swallow a packet per thread before any frame comes out).
    ctx.thread_count = 1
    fmt = container.format.name
    if fmt in _NOT_VIDEO_FORMATS or fmt.endswith("_pipe") or ctx.name in _NOT_VIDEO_CODECS:
        raise VideoError(path, f"not a video (FFmpeg reads it as {fmt}/{ctx.name})")
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or float(rate) <= 0:
        raise VideoError(path, "video stream has no frame rate")
    return stream, float(rate), note


def _needs_pyav(other_streams: str, packets: Packets) -> str:
    """Why DALI's decoders would not give the frames players show (they pick a file's video
    stream themselves, number the frames an edit list hides and decode from the first
    packet), or ""."""
    return "; ".join(filter(None, [
        other_streams,
        packets.hidden and f"an edit list hides {packets.hidden} frame(s) at its start",
        packets.before_key and f"{packets.before_key} frame(s) before its first keyframe cannot decode",
    ]))


def _check_not_truncated(path, container, stream, fps, packets: Packets) -> float:
    """Matroska/WebM files cut short still demux cleanly: compare against the header.

    The header's duration (segment info) survives truncation; the packets do not. A file
    whose packets cover less than 90% of the declared duration (and more than a second
    less) is reported as truncated instead of silently giving a shorter clip. Where only
    the container declares a duration, the file's end is its latest packet of any stream
    (``packets.end_s``, when the others were demuxed): a cut short file loses every stream's
    end, a video shorter than its audio is whole. Returns the seconds missing (0 when the
    packets cover the declared duration).
    """
    declared_s = None
    if stream.duration and stream.time_base:
        declared_s = float(stream.duration * stream.time_base)
    elif container.duration:
        declared_s = container.duration / 1_000_000
    if not declared_s or packets.last_pts is None or not stream.time_base:
        return 0.0
    start = float((stream.start_time or 0) * stream.time_base)
    present_s = float(packets.last_pts * stream.time_base) - start + 1.0 / fps
    if not stream.duration:
        present_s = max(present_s, packets.end_s)
    if present_s < 0.9 * declared_s and declared_s - present_s > 1.0:
        raise VideoError(
            path,
            f"truncated: header says {declared_s:.2f} s, only {present_s:.2f} s of frames present",
        )
    return max(0.0, declared_s - present_s)


def _probe_outcome(path: str) -> tuple:
    """``probe`` for a worker process: a picklable ("ok", info) or ("error", path, reason)."""
    try:
        return ("ok", probe(path))
    except VideoError as exc:
        return ("error", exc.path, exc.reason)


def outcome_of(future_or_outcome) -> VideoInfo:
    """The VideoInfo from a :class:`Prober` future (raises its VideoError)."""
    outcome = future_or_outcome.result() if hasattr(future_or_outcome, "result") else future_or_outcome
    if outcome[0] == "error":
        raise VideoError(outcome[1], outcome[2])
    return outcome[1]


class Prober:
    """Probes files in worker processes, ahead of decoding, off the decoding threads' GIL.

    Probing demuxes every packet in Python; done in the threads that drive DALI it held the
    GIL they need between DALI calls. ``submit(path)`` returns a future for :func:`outcome_of`.
    """

    def __init__(self, workers: int):
        import concurrent.futures
        import multiprocessing

        # fork, as torch's DataLoader workers: the children only demux with PyAV and never touch
        # CUDA (spawn would re-run a user's script that lacks a __main__ guard)
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        self._pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context)
        # Forked children keep every file the parent had open when they were made, flock
        # locks included (HDF5's, vcp's output lock): they are made here, all at once (a
        # fork pool starts all its workers at the first task), so a caller that makes the
        # prober before opening its outputs leaves them nothing to hold.
        self._pool.submit(int).result()

    def submit(self, path: str):
        return self._pool.submit(_probe_outcome, str(path))

    def close(self, wait: bool = True) -> None:
        """Stop the processes (``wait``: and wait for them to exit)."""
        self._pool.shutdown(wait=wait, cancel_futures=True)
