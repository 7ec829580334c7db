"""Rows arriving in input order on their way into the features file: a NaN/Inf clip takes
its group's rows back, a :class:`Failed` input is recorded, and :meth:`RowSink.state` is
what a stopped run needs to resume from its last committed segment.
"""

from __future__ import annotations

from vcp.common.report import file_error
from vcp.stages.packing import NOT_FINITE
from vcp.stages.records import Failed
from vcp.stages.stage import SplitResult
from vcp.store.h5_writer import H5Writer


class RowSink:
    """Rows arriving in input order -> the writer; a NaN/Inf clip takes its group's rows
    back; a :class:`Failed` input is recorded. :meth:`state` is what a resumed run needs to
    go on from here (:meth:`restore`)."""

    def __init__(self, writer: H5Writer, result: SplitResult, advanced, *, made_by: str = "the backbone"):
        self.writer, self.result, self.advanced = writer, result, advanced
        self.made_by = made_by  # names the network (and precision) when a video's features are not finite
        self.rejected: set[str] = set()
        self.failed: list[tuple[str, str]] = []  # found while the clips came (not up front)
        self.next_order = 0  # every input before this position is done
        self._group, self._start = None, (0, 0, 0)  # the group being written; rows, videos, frames when it began

    def state(self) -> dict:
        return {
            "next_order": self.next_order, "videos": self.result.videos, "frames": self.result.frames,
            "failed": self.failed, "rejected": sorted(self.rejected), "group": self._group, "group_start": list(self._start),
        }

    def restore(self, state: dict) -> None:
        self.next_order = int(state["next_order"])
        self.result.videos, self.result.frames = int(state["videos"]), int(state["frames"])
        self.failed = [tuple(x) for x in state["failed"]]
        self.rejected = set(state["rejected"])
        self._group, self._start = state["group"], tuple(state["group_start"])

    def _fail(self, where: str, reason: str) -> None:
        self.failed.append((where, reason))
        self.result.failures.append((where, reason))
        file_error(where, reason)

    def take(self, ready) -> None:
        writer, result = self.writer, self.result
        for clip, rows in ready:
            self.next_order = max(self.next_order, clip.order + 1)
            if isinstance(clip, Failed):
                self._fail(clip.where, clip.reason)
                continue
            if clip.group in self.rejected:
                continue
            if clip.group != self._group:
                self._group, self._start = clip.group, (writer.rows, result.videos, result.frames)
            if rows is None:  # NaN/Inf in the clip: the whole group goes, rows written included
                self.rejected.add(clip.group)
                writer.truncate(self._start[0])
                result.videos, result.frames = self._start[1], self._start[2]
                self._fail(clip.group, f"{clip.filename} holds NaN or Inf values: the whole group is rejected")
                continue
            if rows is NOT_FINITE:  # the network's doing, not the video's frames: that video only
                self._fail(clip.path or clip.filename, f"its features from {self.made_by} hold NaN or Inf values; "
                                                       "not written")
                continue
            writer.add(
                rows, label=clip.label, filename=clip.filename, order=clip.order,
                fps=clip.fps, frame_indices=clip.frame_indices, frame_times=clip.frame_times,
                path=clip.path, segment=clip.segment, window_frames=clip.windows, window_times=clip.window_times,
                short=clip.short if clip.windows is not None else None,
            )
            result.videos += 1
            result.frames += clip.count
            self.advanced()


