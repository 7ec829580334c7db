"""Stage 2, ``vcp extract PROCESSED FEATURES``: frozen backbone, three scales, gzip HDF5.

Per split: validate every ``processed_data.pt`` (memory-mapped, ``weights_only``), run
the backbone once per distinct frame, build the scales by indexing (see
:mod:`vcp.multiscale`) and stream one row per video into :class:`H5Writer`.
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import torch
from rich.console import Console

from vcp.common.progress import console as progress_console
from vcp.common.report import file_error
from vcp.stages.encoder import FrameEncoder, NonFiniteClip
from vcp.stages.features import (  # the sink; re-exported for callers of the stage
    Clip,
    fingerprint,
    load_backbone,
    max_rows,
    output_target,
    summary_table,
    video_features,
    write_features,
)
from vcp.stages.settings import AUTO_BATCH, ExtractConfig
from vcp.stages.shard import contiguous_ranges
from vcp.stages.space import check_space, features_bytes
from vcp.stages.stage import RunResult, SplitResult
from vcp.store.contract import features_filename
from vcp.store.folders import prepare_output_dir
from vcp.store.lock import output_lock
from vcp.store.pt_reader import (
    ClipReader,
    PtSchemaError,
    TensorFile,
    _group_name,
    check_mappings,
    discover_processed,
    open_split,
    open_tensor_file,
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
    console = console or progress_console(stderr=True)
    processed = Path(processed)
    by_split = discover_processed(processed, config.splits)
    features = prepare_output_dir(features, inputs=None, what="FEATURES")
    opened = {split: open_split(files) for split, files in by_split.items()}
    check_mappings({_group_name(tf): dict(tf.data["category_mapping"]) for tfs, _ in opened.values() for tf in tfs})
    encoder = FrameEncoder(model if model is not None else load_backbone(config), config)
    needed = bytes_to_write(opened, by_split, features, config, encoder.model.feature_dim)
    check_space(features, sum(needed.values()), skip=not config.space_check)
    with output_lock(features, config.shard):
        results = RunResult(
            extract_split(split, files, features, config, encoder, console=console, opened=opened[split])
            for split, files in by_split.items()
        )
    console.print(summary_table(results))
    return results


def bytes_to_write(opened: dict, by_split: dict, features: Path, config: ExtractConfig, dim: int) -> dict[str, int]:
    """Estimated bytes per split this process will write (uncompressed: :mod:`vcp.space`)."""
    out = {}
    for split, files in by_split.items():
        if output_target(features, split, config, fingerprint(files, config))[1] is not None:
            continue
        shapes = [tf.data["videos"].shape for tf in opened[split][0]]
        videos = sum(s[0] for s in shapes) // max(1, config.shard.count)
        out[split] = features_bytes(videos, max_rows([s[1] for s in shapes if s[0]], config), dim)
    return out


def extract_split(
    split, files, features: Path, config: ExtractConfig, encoder: FrameEncoder, *, console, opened=None
) -> SplitResult:
    result = SplitResult(split)
    fp = fingerprint(files, config)
    out_path, previous = output_target(features, split, config, fp)
    if previous is not None:
        return previous
    tensor_files, failures = opened if opened is not None else open_split(files)
    check_mappings({_group_name(tf): dict(tf.data["category_mapping"]) for tf in tensor_files})
    for path, reason in failures:
        result.failures.append((str(path), reason))
        file_error(path, reason)
    result.upstream_failures = sorted(f for tf in tensor_files for f in tf.upstream_failures)
    if not tensor_files:  # nothing usable: no features file, and none from older inputs left looking current
        final = features / features_filename(split, config.multi_scale)
        if final.exists() and not config.shard.active:
            final.unlink()
            print(f"vcp: removed {final}: none of the split's inputs is usable any more", file=sys.stderr, flush=True)
        return result
    mapping = dict(tensor_files[0].data["category_mapping"])
    rows = [(tf, i) for tf in tensor_files for i in range(tf.data["videos"].shape[0])]
    frame_counts = [tf.data["videos"].shape[1] for tf in tensor_files if tf.data["videos"].shape[0]]
    start, end = 0, len(rows)
    if config.shard.active:  # consecutive rows of about equal frame count per rank
        start, end = contiguous_ranges([tf.data["videos"].shape[1] for tf, _ in rows], config.shard.count)[config.shard.index]
    n = end - start
    attrs = {"source_files": json.dumps([tf.path.as_posix() for tf in tensor_files])}

    def clips(resume_at: int):
        with ClipReader(encoder.cuda) as reader:
            window = collections.deque()
            for order in range(max(start, resume_at), end):
                tf, i = rows[order]
                window.append((order, tf, i, reader.submit(tf, i)))
                if len(window) > READ_AHEAD:
                    yield _clip_of(*window.popleft())
            while window:
                yield _clip_of(*window.popleft())

    return write_features(
        split, out_path, clips, result=result, total=n, frame_counts=frame_counts,
        mapping=mapping, config=config, encoder=encoder, fp=fp, attrs=attrs, console=console,
    )


READ_AHEAD = 6  # clips read ahead of the backbone (CUDA: into pinned memory, by threads)


def _clip_of(order: int, tf: TensorFile, i: int, frames) -> Clip:
    labels, names = tf.data["labels"], tf.data["filenames"]
    frames = frames.result() if hasattr(frames, "result") else frames
    record = tf.records.get(names[i], {})
    return Clip(
        order, frames, tf.input_spec, int(labels[i]), f"{tf.rel}/{names[i]}", str(tf.path),
        fps=record.get("fps"), frame_indices=record.get("frame_indices"), frame_times=record.get("frame_times"),
    )


__all__ = [
    "AUTO_BATCH", "Clip", "ClipReader", "ExtractConfig", "FrameEncoder", "NonFiniteClip", "PtSchemaError",
    "SplitResult", "TensorFile", "discover_processed", "extract", "extract_split", "fingerprint",
    "load_backbone", "open_tensor_file", "output_target", "summary_table", "video_features", "write_features",
]
