"""Stage 2, ``vcp extract PROCESSED FEATURES``: frozen backbone, three scales, gzip HDF5.

:class:`PtSource`: every ``processed_data.pt`` validated (memory-mapped, ``weights_only``)
when the tree is opened, each split's clips handed to the sink in row order;
:func:`vcp.stages.sources.run_extract` does the rest (the backbone once per distinct
frame, the scales by indexing, one row per video into the HDF5).
"""

from __future__ import annotations

import collections
import functools
import json
import sys
from pathlib import Path

import torch
from rich.console import Console

from backbones.spec import InputSpec
from vcp.common.errors import UsageError
from vcp.common.progress import console as progress_console
from vcp.common.report import file_error, one_line
from vcp.stages.encoder import FrameEncoder, load_backbone
from vcp.stages.features import max_rows
from vcp.stages.provenance import fingerprint
from vcp.stages.records import Clip
from vcp.stages.settings import ExtractConfig
from vcp.stages.shard import contiguous_ranges
from vcp.stages.sources import SplitJob, run_extract
from vcp.stages.space import features_bytes
from vcp.stages.stage import RunResult, SplitResult
from vcp.store.pt_reader import (
    ClipReader,
    TensorFile,
    check_mappings,
    discover_processed,
    open_split,
)


def extract(
    processed: str | Path,
    features: str | Path,
    config: ExtractConfig,
    *,
    model: torch.nn.Module | None = None,
    console: Console | None = None,
) -> RunResult:
    """Run the stage over every split found (or ``config.splits``)."""
    source = PtSource(processed, config)
    encoder = FrameEncoder(model if model is not None else load_backbone(config), config, owned=model is None)
    return run_extract(source, Path(features), config, encoder, inputs_root=None,
                       console=console or progress_console(stderr=True))


class PtSource:
    """Clips from a processed tree's ``processed_data.pt`` groups (memory-mapped; on CUDA read
    into pinned memory ahead of use), each checked once when the tree is opened."""

    tree = None

    def __init__(self, processed: str | Path, config: ExtractConfig, splits: list[str] | None = None):
        if config.temporal is not None:
            raise UsageError(f"{config.backbone} is a clip backbone: it reads windows of consecutive frames from the "
                             "videos (--from-videos RAW); the frames in .pt files are sampled, not consecutive")
        self.config = config
        self.by_split = discover_processed(Path(processed), splits if splits is not None else config.splits)
        self.opened = {split: open_split(files) for split, files in self.by_split.items()}
        check_mappings([tf for tfs, _ in self.opened.values() for tf in tfs])
        self.splits = list(self.by_split)
        self.pinned = config.device.startswith("cuda")

    def __enter__(self) -> PtSource:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def fingerprint(self, split: str) -> str:
        return fingerprint(self.by_split[split], self.config)

    def _shapes(self, split: str) -> list:
        return [tf.data["videos"].shape for tf in self.opened[split][0]]

    def output_bytes(self, split: str, dim: int) -> int:
        shapes = self._shapes(split)
        videos = sum(s[0] for s in shapes) // max(1, self.config.shard.count)
        return features_bytes(videos, max_rows([s[1] for s in shapes if s[0]], self.config), dim)

    def plan_row(self, split: str) -> tuple[int, int, list[str]]:
        """The clips of the readable groups; each unreadable group named with why."""
        tensor_files, refused = self.opened[split]
        n = sum(tf.data["videos"].shape[0] for tf in tensor_files)
        return n, n, [one_line(f"{path}: {why}") for path, why in refused]

    def job(self, split: str, result: SplitResult) -> SplitJob | None:
        """This rank's rows of the split: consecutive rows of about equal frame count."""
        tensor_files, failures = self.opened[split]
        for path, reason in failures:
            result.failures.append((str(path), reason))
            file_error(path, reason)
        result.upstream_failures = sorted(f for tf in tensor_files for f in tf.upstream_failures)
        if not tensor_files:
            return None
        if self.config.uses_model_recipe:
            _warn_squashed(split, tensor_files)
        rows = [(tf, i) for tf in tensor_files for i in range(tf.data["videos"].shape[0])]
        start, end = 0, len(rows)
        if self.config.shard.active:
            start, end = contiguous_ranges([tf.data["videos"].shape[1] for tf, _ in rows], self.config.shard.count)[self.config.shard.index]

        def clips(resume_at: int):
            with ClipReader(self.pinned) as reader:
                window = collections.deque()
                for order in range(max(start, resume_at), end):
                    tf, i = rows[order]
                    window.append((order, tf, i, reader.submit(tf, i)))
                    if len(window) > READ_AHEAD:
                        yield _clip_of(*window.popleft())
                while window:
                    yield _clip_of(*window.popleft())

        return SplitJob(
            clips=clips, total=end - start, mapping=dict(tensor_files[0].data["category_mapping"]),
            frame_counts=[tf.data["videos"].shape[1] for tf in tensor_files if tf.data["videos"].shape[0]],
            attrs={"source_files": json.dumps([tf.path.as_posix() for tf in tensor_files])},
        )


def _warn_squashed(split: str, tensor_files) -> None:
    """A ``.pt`` holds every video squashed to a square: a model's crop of a non-square video
    can then only be approximated. Said once per split, with the way to the exact recipe."""
    shapes = [(r.get("width"), r.get("height")) for tf in tensor_files for r in tf.records.values()]
    odd = [(w, h) for w, h in shapes if isinstance(w, int) and isinstance(h, int) and w != h]
    if odd:
        side = tensor_files[0].data["videos"].shape[-1]
        print(one_line(
            f"vcp: warning: {len(odd)} of {len(shapes)} videos of split {split} are not square (e.g. {odd[0][0]}x{odd[0][1]}) "
            f"and were stored squashed to {side}x{side}: the model's resize and centre crop is only approximated; "
            "extract --from-videos applies it to the original frames"), file=sys.stderr, flush=True)


READ_AHEAD = 6  # clips read ahead of the backbone (CUDA: into pinned memory, by threads)


def _clip_of(order: int, tf: TensorFile, i: int, frames) -> Clip:
    labels, names = tf.data["labels"], tf.data["filenames"]
    frames = frames.result() if hasattr(frames, "result") else frames
    record = tf.records.get(names[i], {})
    return Clip(
        order, frames, stored_spec(tf.normalization), int(labels[i]), f"{tf.rel}/{names[i]}", str(tf.path),
        fps=record.get("fps"), frame_indices=record.get("frame_indices"), frame_times=record.get("frame_times"),
        path=record.get("path") if isinstance(record.get("path"), str) else None,
        segment=_segment(record.get("segment")),
    )


@functools.lru_cache(maxsize=32)
def stored_spec(normalization) -> InputSpec:
    """A ``.pt`` group's stored normalization as the encoder takes it (an :class:`InputSpec`
    without a size: frames as stored)."""
    return InputSpec(mean=tuple(normalization.mean), std=tuple(normalization.std))


def _segment(value) -> tuple | None:
    """A record's ``segment`` ([start, end], either null) or None when absent or malformed."""
    if isinstance(value, list) and len(value) == 2 and all(v is None or isinstance(v, (int, float)) for v in value):
        return tuple(value)
    return None


__all__ = ["PtSource", "extract"]
