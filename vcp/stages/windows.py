"""``vcp extract --from-videos`` with a clip backbone: windows of consecutive frames.

Each video (or its manifest segment) is resampled to the backbone's frame rate and cut
into windows (:func:`dali_pipes.plan_video`, torchvision's ``VideoClips`` rule); a
:class:`dali_pipes.WindowReader` decodes it once, in order, and hands its windows out a
chunk at a time, resized, cropped and normalized by the release's own preset, so memory
follows the chunk, not the video's length. Rows are windows: ``num_frames`` counts rows,
``window_frames`` / ``window_times`` say where each window came from.
"""

from __future__ import annotations

import functools
from pathlib import Path

from dali_pipes import DECODE_RULES, VideoError, WindowReader, plan_video, probe, window_times
from vcp.common.errors import UsageError
from vcp.inputs.layout import Group, RawTree, discover_raw
from vcp.stages import stage
from vcp.stages.features import max_rows
from vcp.stages.provenance import fingerprint
from vcp.stages.recipe import geometry_of
from vcp.stages.records import Clip, Failed
from vcp.stages.settings import decode_mode
from vcp.stages.sources import SplitJob, split_groups, video_plan_row
from vcp.stages.space import features_bytes
from vcp.stages.stage import SplitResult
from vcp.stages.temporal import Temporal

FRAMES_PER_CHUNK = 512  # decoded frames held for one chunk of windows (at least one window)


class WindowSource:
    """A split's videos as windows for a clip backbone (probed once per split, when its
    size or job is first asked for)."""

    def __init__(self, raw, config, decode, *, tree: RawTree | None = None, temporal: Temporal):
        from backbones import default_registry

        self.tree = tree or discover_raw(raw, splits=list(config.splits) if config.splits else None)
        if decode.mode != decode_mode(config.device):
            raise UsageError(f"decode mode {decode.mode!r} does not match the backbone's device {config.device!r}")
        self.config, self.decode, self.mapping, self.splits = config, decode, self.tree.category_mapping, self.tree.splits
        self.stored = default_registry().spec(config.backbone).input  # its recipe (the built model's, once entered)
        self.temporal = temporal
        self._plans: dict[str, list] = {}
        self.reader = None

    def __enter__(self) -> WindowSource:
        self.reader = WindowReader(geometry=self.geometry, mean=self.stored.mean, std=self.stored.std,
                                   device=self.decode.mode, device_id=self.decode.device_id)
        return self

    def __exit__(self, *exc) -> None:
        self.reader = None

    @property
    def geometry(self):
        """The backbone's recipe (``stored``, set before entering) as the crop boxes of its views."""
        return geometry_of(self.stored, self.config.views)

    def plan_row(self, split: str) -> tuple[int, int, list[str]]:
        return video_plan_row(self.tree, split)

    def fingerprint(self, split: str) -> str:
        groups = split_groups(self.tree, split)
        t = self.temporal
        settings = {"classes": self.tree.classes_id, "windows": [t.window, t.stride, t.frame_rate],
                    "decode": DECODE_RULES, "max_pixels": self.decode.max_pixels}
        if any(g.rows is not None for g in groups):
            settings["rows"] = [g.rows for g in groups]
        return fingerprint([f for g in groups for f in g.files], self.config, names=[
            f"{g.rel_dir.as_posix()}/{f.name}" for g in groups for f in g.files], stream=settings)

    def plans(self, split: str) -> list[tuple[int, Group, object, object]]:
        """``(row, group, video, WindowPlan or VideoError)`` for this rank's videos, in row
        order (``row``: the video's position in a single-process run)."""
        if split not in self._plans:
            groups = split_groups(self.tree, split)
            everything = [f for g in groups for f in g.files]
            order = {f: i for i, f in enumerate(everything)}
            mine = stage.owned_files(everything, self.config.shard)
            self._plans[split] = [(order[v.file], g, v, self._plan(v)) for g in groups for v in g.videos if v.file in mine]
        return self._plans[split]

    def _plan(self, video):
        t = self.temporal
        try:
            return plan_video(probe(video.file), self.geometry, window=t.window,
                              stride=t.stride, frame_rate=t.frame_rate, segment=video.segment,
                              max_pixels=self.decode.max_pixels)
        except VideoError as exc:
            return exc

    def _counts(self, split: str) -> list[int]:
        return [len(p.frames) for *_, p in self.plans(split) if not isinstance(p, VideoError)] or [1]

    def output_bytes(self, split: str, dim: int) -> int:
        return features_bytes(len(self.plans(split)), max_rows(self._counts(split), self.config), dim * self.config.stored_views)

    def job(self, split: str, result: SplitResult) -> SplitJob:
        plans = self.plans(split)
        attrs = {"source": "videos", "raw_root": str(self.tree.root), **self.temporal.attrs(),
                 **({"manifest": str(self.tree.manifest)} if self.tree.manifest else {})}
        return SplitJob(clips=functools.partial(self.clips, plans), total=len(plans),
                        frame_counts=self._counts(split), mapping=self.mapping, attrs=attrs)

    def clips(self, plans: list, resume_at: int = 0):
        """Each video's :class:`Clip` (its windows to come in chunks) or :class:`Failed`, in
        row order from ``resume_at``."""
        window = self.temporal.window
        per_chunk = max(1, min(self.config.forward_batch, FRAMES_PER_CHUNK // window))
        for order, group, video, plan in plans:
            if order < resume_at:
                continue
            if isinstance(plan, VideoError):
                yield Failed(order, self.tree.name_of(video), plan.reason)
                continue
            info = plan.info
            rate = self.temporal.frame_rate or info.fps
            yield Clip(
                order, None, self.stored, self.tree.label_of(group), f"{group.category}/{group.subcategory}/{Path(video.file).name}",
                str(group.rel_dir), fps=info.fps, path=self.tree.name_of(video), segment=video.segment,
                chunks=self.reader.windows(plan, per_chunk), windows=plan.frames,
                window_times=window_times(info, plan.frames, rate), short=plan.short,
            )
