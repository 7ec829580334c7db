"""``vcp extract --from-videos RAW FEATURES``: DALI straight into the backbone.

No ``.pt`` files: each split's videos go through the same :class:`ClipLoader` as
``vcp tensorize`` (same sampling, same graph) and the clips reach the backbone directly
(on CUDA through DLPack, cloned device-to-device, never through the host).
With the backbone on CUDA, decoding runs in a bounded background thread, so the next
batch decodes while the backbone works on this one; with the backbone on the CPU it runs
in line by default (the two would share the same cores; ``--prefetch`` overrides).
The HDF5 equals tensorize + extract on the same inputs.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, replace
from pathlib import Path

from rich.console import Console

from dali_pipes import DECODE_RULES, MAX_PIXELS
from vcp.common.errors import UsageError
from vcp.common.progress import console as progress_console
from vcp.inputs.layout import RawTree, discover_raw
from vcp.stages import stage
from vcp.stages.encoder import FrameEncoder, load_backbone
from vcp.stages.features import max_rows
from vcp.stages.provenance import fingerprint
from vcp.stages.recipe import geometry_of
from vcp.stages.records import Clip, Failed
from vcp.stages.settings import ClipSettings, DecodeSettings, ExtractConfig, decode_mode
from vcp.stages.sources import SplitJob, run_extract, split_groups, video_plan_row
from vcp.stages.space import features_bytes
from vcp.stages.stage import RunResult, SplitResult
from vcp.stages.windows import WindowSource


def split_fingerprint(groups, config: ExtractConfig, clip: ClipSettings, max_pixels: int = MAX_PIXELS, *,
                      classes_id: str) -> str:
    """What a split's features from videos depend on: its files, the sampling of each group,
    the frame size, the largest frame decoded, the class list (its labels), and the extract
    settings."""
    settings = {
        "classes": classes_id,
        "sampling": {f"{g.category}/{g.subcategory}": asdict(clip.sampling(g)) for g in groups},
        "size": clip.size,
        **({"fit": [clip.fit, clip.interpolation]} if clip.geometry is not None else {}),
        "decode": DECODE_RULES,
        "max_pixels": max_pixels,
    }
    if any(g.rows is not None for g in groups):  # a manifest's rows: paths, classes, segments
        settings["rows"] = [g.rows for g in groups]
    return fingerprint([f for g in groups for f in g.files], config, names=[
        f"{g.rel_dir.as_posix()}/{f.name}" for g in groups for f in g.files], stream=settings)


def extract_from_videos(
    raw: str | Path,
    features: str | Path,
    config: ExtractConfig,
    clip: ClipSettings,
    decode: DecodeSettings,
    *,
    model=None,
    console: Console | None = None,
    tree: RawTree | None = None,
) -> RunResult:
    """``tree``: the videos (a manifest's, or a RAW tree already read); else RAW is read.
    A clip backbone gets windows (:mod:`vcp.stages.windows`), any other backbone frames."""
    source = video_source(raw, config, clip, decode, tree=tree)
    encoder = FrameEncoder(model if model is not None else load_backbone(config), config, owned=model is None)
    # clips are normalized for this backbone directly (and, with its recipe, resized and cropped)
    source.stored = encoder.target if encoder.recipe is not None else replace(encoder.target, size=None)
    return run_extract(source, Path(features), config, encoder, inputs_root=source.tree.root if source.tree.manifest is None else None,
                       console=console or progress_console(stderr=True))


def video_source(raw, config: ExtractConfig, clip: ClipSettings, decode: DecodeSettings, *, tree: RawTree | None = None):
    """The source of ``config``'s backbone: windows for a clip backbone, else sampled frames."""
    temporal = config.temporal
    if temporal is None:
        return VideoSource(raw, config, clip, decode, tree=tree)
    return WindowSource(raw, config, decode, tree=tree, temporal=temporal)


class VideoSource:
    """Clips of each split's videos, straight from the loader (made on entering: a dry run
    asks only for the splits, fingerprints and sizes)."""

    def __init__(self, raw: str | Path | None, config: ExtractConfig, clip: ClipSettings, decode: DecodeSettings,
                 *, tree: RawTree | None = None):
        clip.check()
        self.tree = tree or discover_raw(raw, splits=list(config.splits) if config.splits else None)
        clip.check(self.tree)
        if decode.mode != decode_mode(config.device):  # built once, by the caller: never patched here
            raise UsageError(f"decode mode {decode.mode!r} does not match the backbone's device {config.device!r}: "
                             f"clips from videos are made where the backbone runs (mode {decode_mode(config.device)!r})")
        self.config, self.clip, self.decode, self.mapping = config, clip, decode, self.tree.category_mapping
        self.splits = self.tree.splits
        self.stored = None  # the backbone's normalization, set before entering
        self.loader = None

    def __enter__(self) -> VideoSource:
        on_cuda = self.config.device.startswith("cuda")
        geometry = geometry_of(self.stored, self.config.views) if self.stored.has_recipe else self.clip.geometry
        self.loader = self.decode.loader(self.clip.size, self.stored, geometry)
        self.depth = self.decode.prefetch_depth(default=2 if on_cuda else 0)
        return self

    def __exit__(self, *exc) -> None:
        if self.loader is not None:
            self.loader.close()
            self.loader = None

    def fingerprint(self, split: str) -> str:
        return split_fingerprint(split_groups(self.tree, split), self.config, self.clip, self.decode.max_pixels,
                                 classes_id=self.tree.classes_id)

    def output_bytes(self, split: str, dim: int) -> int:
        videos = sum(len(g.files) for g in self.tree.groups_of(split)) // max(1, self.config.shard.count)
        return features_bytes(videos, max_rows([self.clip.frames], self.config), dim * self.config.stored_views)

    def plan_row(self, split: str) -> tuple[int, int, list[str]]:
        """Every file found; those refused on sight (empty, not regular, a broken link...) named."""
        return video_plan_row(self.tree, split)

    def job(self, split: str, result: SplitResult) -> SplitJob:
        groups = split_groups(self.tree, split)
        everything = [f for g in groups for f in g.files]
        mine = stage.owned_files(everything, self.config.shard)  # balanced by file size
        return SplitJob(clips=functools.partial(self.clips, groups, everything, mine), total=len(mine),
                        frame_counts=[self.clip.frames], mapping=self.mapping,
                        attrs={"source": "videos", "raw_root": str(self.tree.root),
                               **({"manifest": str(self.tree.manifest)} if self.tree.manifest else {})})

    def clips(self, groups: list, everything: list[Path], mine: set[Path], resume_at: int = 0):
        """This rank's clips (and :class:`Failed` videos) in row order, from ``resume_at``."""
        order = {f: i for i, f in enumerate(everything)}  # single-process row order
        for group in groups:
            kept = [v for v in group.videos if v.file in mine and order[v.file] >= resume_at]
            if not kept:
                continue
            items = [self.tree.item(v) for v in kept]
            batches = self.loader.load(items, self.clip.sampling(group), ahead=self.depth)
            for video, r in zip(kept, (r for batch in batches for r in batch), strict=True):
                if r.ok:
                    name = f"{group.category}/{group.subcategory}/{Path(r.path).name}"
                    yield Clip(
                        order[Path(r.path)], r.clip, self.stored, self.tree.label_of(group), name, str(group.rel_dir),
                        fps=r.info.fps, frame_indices=r.indices.tolist(), frame_times=r.info.times_of(r.indices),
                        path=self.tree.name_of(video), segment=r.segment,
                    )
                else:
                    yield Failed(order[Path(r.path)], r.relpath, r.error.reason)
