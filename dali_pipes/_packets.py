"""Walking a video stream's packets without decoding them: the frames that exist (non-empty
packets), those an edit list hides from players (packets flagged discard: the lead-in of
a clip cut without re-encoding), their presentation times, the first frame's display
rotation, and where the file ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ._errors import VideoError, ffmpeg_reason

# Packets fed to the decoder for the first frame's display matrix before giving up (rotation
# 0): a stream whose frames never decode must not be decoded whole by the probe.
ROTATION_PACKETS = 32


@dataclass
class Packets:
    count: int = 0  # non-empty packets: the frames that exist
    stamps: list = field(default_factory=list)  # presentation timestamps, in demux order
    last_pts: int | None = None
    last_corrupt: bool = False
    rotation: int | None = None  # from the first decoded frame's display matrix
    hidden: int = 0  # non-empty packets flagged discard: frames an edit list hides from players
    before_key: int = 0  # non-empty packets before the first keyframe: frames that cannot decode
    end_s: float = 0.0  # where the latest packet of any stream ends, s from the container's start (others=True)

    def add(self, packet) -> None:
        """One packet of the stream, from its first keyframe on, in demux order."""
        if self.rotation is None and self.count + self.hidden < ROTATION_PACKETS:  # hidden frames decode too
            self.rotation = first_frame_rotation(packet)
        if packet.is_discard:  # before an edit list's start (a clip cut without re-encoding)
            self.hidden += 1
            return
        self.count += 1
        self.stamps.append(packet.pts)
        self.last_corrupt = packet.is_corrupt
        if packet.pts is not None:
            self.last_pts = packet.pts if self.last_pts is None else max(self.last_pts, packet.pts)


def demux(path: Path, container, stream, *, others: bool = False) -> Packets:
    """The stream's packets (``others``: every stream's, for where the file ends).

    Packets before the first keyframe (a recording started mid-GOP) cannot decode: decoders
    drop them or fail, and players start at the keyframe; they are counted apart
    (``before_key``). A stream whose demuxer flags no keyframe at all keeps every packet.
    """
    import av

    seen, lead = Packets(), []
    origin = (container.start_time or 0) / 1_000_000
    try:
        for packet in container.demux() if others else container.demux(stream):
            if others and packet.pts is not None and packet.time_base:
                end = float((packet.pts + (packet.duration or 0)) * packet.time_base) - origin
                seen.end_s = max(seen.end_s, end)
            if packet.stream_index != stream.index or not packet.size:
                continue
            if lead is not None:  # no keyframe yet
                if not packet.is_keyframe:
                    lead.append(packet)
                    continue
                seen.before_key, lead = len(lead), None
            seen.add(packet)
    except av.FFmpegError as exc:
        raise VideoError(path, f"corrupt or truncated stream after {seen.count} frames ({ffmpeg_reason(exc)})") from None
    for packet in lead or ():  # no keyframe flagged anywhere: the decoder decides
        seen.add(packet)
    if seen.count == 0:
        raise VideoError(path, "video stream has no frames")
    return seen


def presentation_times(stamps: list, stream) -> tuple[float, ...]:
    """Frame i's time in seconds from the stream's start: the i-th smallest packet
    timestamp (packets come in decode order; frames are numbered in presentation order).
    Empty when some packet has no timestamp (the caller then uses ``i / fps``)."""
    if not stamps or any(s is None for s in stamps) or not stream.time_base:
        return ()
    base = float(stream.time_base)
    start = stream.start_time if stream.start_time is not None else min(stamps)
    return tuple(round((s - start) * base, 6) for s in sorted(stamps))


def first_frame_rotation(packet) -> int | None:
    """The display rotation of the frame this packet completes (None: no frame yet).

    0, 90, 180 or 270 degrees counter-clockwise: what FFmpeg's players apply. Other angles
    (rare) are not applied (0).
    """
    import av

    try:
        frames = packet.decode()
    except (av.FFmpegError, ValueError):
        return None
    for frame in frames:
        angle = float(frame.rotation or 0) % 360
        snapped = int(round(angle / 90)) % 4 * 90
        return snapped if abs(angle - snapped) < 1 or abs(angle - snapped - 360) < 1 else 0
    return None
