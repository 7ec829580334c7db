"""The one run path of ``vcp extract``, whatever the clips come from.

A *source* is what a split's clips come from: ``processed_data.pt`` groups
(:class:`vcp.stages.extract.PtSource`) or the decoder (``--from-videos``,
:class:`vcp.stages.stream.VideoSource`). It says its split names, a fingerprint per split,
an estimate of what a split writes, and, per split, a :class:`SplitJob` (the clips of this
rank, as a function of where to resume). :func:`run_extract` does the rest for both: the
output folder, the disk-space check, the lock, per split the up-to-date check and the
sink's :func:`~vcp.stages.features.write_features`, and the summary (:mod:`vcp.stages.summary`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vcp.stages.encoder import FrameEncoder
from vcp.stages.features import write_features
from vcp.stages.provenance import output_target
from vcp.stages.settings import ExtractConfig
from vcp.stages.space import check_space, removed_if_refused
from vcp.stages.stage import RunResult, SplitResult
from vcp.stages.summary import summary_table
from vcp.store.contract import features_filename
from vcp.store.folders import prepare_output_dir
from vcp.store.lock import output_lock


@dataclass
class SplitJob:
    """What a source hands the sink for one split (this rank's part of it)."""

    clips: Callable[[int], Iterable]  # resume position -> Clip / Failed, in input order
    total: int  # this rank's inputs
    frame_counts: list[int]  # the clips' frame counts (the HDF5's row count follows)
    mapping: dict[str, int]
    attrs: dict


class Source(Protocol):
    splits: list[str]
    tree: object | None  # a RawTree, for what discovery ignored (None: no tree)

    def fingerprint(self, split: str) -> str: ...

    def output_bytes(self, split: str, dim: int) -> int: ...

    def plan_row(self, split: str) -> tuple[int, int, list[str]]:
        """For the dry run: the split's videos, those a run would process, and one line per
        input refused on sight."""
        ...

    def job(self, split: str, result: SplitResult) -> SplitJob | None: ...

    def __enter__(self): ...

    def __exit__(self, *exc): ...


def split_groups(tree, split: str) -> list:
    """A split's groups in row order (category, subcategory)."""
    return sorted(tree.groups_of(split), key=lambda g: (g.category, g.subcategory))


def video_plan_row(tree, split: str) -> tuple[int, int, list[str]]:
    """A split of videos in the dry run: every file found, those a run would process, and
    those refused on sight (empty, not regular, a broken link...) named."""
    from vcp.inputs.sight import rejected_lines

    everything = [f for g in tree.groups_of(split) for f in g.files]
    rejected = rejected_lines(everything)
    return len(everything), len(everything) - len(rejected), rejected


def bytes_to_write(source: Source, features: Path, config: ExtractConfig, dim: int) -> dict[str, int]:
    """Estimated bytes per split this process will write: the splits not up to date."""
    return {split: source.output_bytes(split, dim) for split in source.splits
            if output_target(features, split, config, source.fingerprint(split))[1] is None}


def run_extract(source: Source, features: Path, config: ExtractConfig, encoder: FrameEncoder, *,
                inputs_root: Path | None, console) -> RunResult:
    """Every split of ``source`` into ``features`` (the one run path of both extract sources)."""
    from vcp.common.precision import bf16_hint

    hint = bf16_hint(config.precision, config.device, encoder.model)
    if hint:
        print(f"vcp: {hint}", file=sys.stderr, flush=True)
    existed = features.exists()
    features = prepare_output_dir(features, inputs=inputs_root, what="FEATURES")
    with removed_if_refused(features, existed):
        check_space(features, sum(bytes_to_write(source, features, config, encoder.model.feature_dim).values()),
                    skip=not config.space_check)
    # the source (a loader and its probe processes) before the lock and any output is opened
    with source, output_lock(features, config.shard):
        results = RunResult(extract_split_of(source, split, features, config, encoder, console=console)
                            for split in source.splits)
    console.print(summary_table(results, tree=source.tree))
    return results


def extract_split_of(source: Source, split: str, features: Path, config: ExtractConfig, encoder: FrameEncoder, *,
                     console) -> SplitResult:
    """One split: skipped when its file is up to date, else written from ``source``'s job."""
    fp = source.fingerprint(split)
    out_path, previous = output_target(features, split, config, fp)
    if previous is not None:
        return previous
    result = SplitResult(split)
    job = source.job(split, result)
    if job is None:  # nothing usable: no features file, and none from older inputs left looking current
        final = features / features_filename(split, config.multi_scale)
        if final.exists() and not config.shard.active:
            final.unlink()
            print(f"vcp: removed {final}: none of the split's inputs is usable any more", file=sys.stderr, flush=True)
        return result
    return write_features(split, out_path, job.clips, result=result, total=job.total, frame_counts=job.frame_counts,
                          mapping=job.mapping, config=config, encoder=encoder, fp=fp, attrs=job.attrs, console=console)
