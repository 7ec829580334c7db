"""The sink both extract sources feed: clips in, one HDF5 row per video out.

Clips come as :class:`~vcp.stages.records.Clip` (and :class:`~vcp.stages.records.Failed`)
objects, in input order, from a source (:mod:`vcp.stages.sources`); :func:`write_features`
runs packed forwards (:mod:`vcp.stages.packing`), the three-scale rule
(:func:`vcp.stages.multiscale.video_rows`), and writes one row per video, committing its
progress as segments as it goes. What the file records about its making is
:mod:`vcp.stages.provenance`'s.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from vcp.common.progress import make_progress
from vcp.common.report import one_line
from vcp.stages import stage
from vcp.stages.encoder import FrameEncoder, per_video_rows
from vcp.stages.interrupt import check_stop, checkpoint_seconds, stop_requested
from vcp.stages.multiscale import output_rows
from vcp.stages.packing import PackedEncoder
from vcp.stages.provenance import run_attrs
from vcp.stages.records import Failed
from vcp.stages.row_sink import RowSink
from vcp.stages.settings import ExtractConfig
from vcp.stages.stage import SplitResult
from vcp.store.atomic import remove_stale_tmp
from vcp.store.contract import RESUME_DIR
from vcp.store.folders import remove_entry
from vcp.store.h5_writer import H5Writer, remove_segments


def max_rows(frame_counts, config: ExtractConfig) -> int:
    rows = (output_rows(t, config.scales) if config.multi_scale else t for t in frame_counts)
    return max(rows, default=0)


SEGMENT_BYTES = 256 << 20  # a segment is also committed once the rows since the last one reach this (held in memory)


def write_features(
    split, out_path: Path, clips, *, result: SplitResult, total: int, frame_counts, mapping,
    config: ExtractConfig, encoder: FrameEncoder, fp: str, attrs: dict, console,
) -> SplitResult:
    """Backbone + scales over ``clips(resume_at)`` (:class:`Clip` and :class:`Failed`, in
    input order from position ``resume_at``) -> HDF5.

    ``result.failures`` holds what the source rejected up front; inputs that fail on the
    way come as :class:`Failed`. Both are recorded in the ``failed_files`` attr at commit,
    with ``result.upstream_failures`` (videos tensorize could not use). A clip holding
    NaN/Inf rejects its whole group: the group's rows already written are taken back.

    Progress is committed as segments every :func:`~vcp.stages.interrupt.checkpoint_seconds`
    and when a stop is asked (SIGTERM/SIGINT: the clips in flight are finished first,
    then :class:`~vcp.stages.interrupt.Stopped` is raised); a run with the same fingerprint
    resumes from them, and its file equals an uninterrupted run's.
    """
    started = time.perf_counter()
    remove_stale_tmp(out_path.parent, [out_path.name])
    resume_dir = out_path.parent / RESUME_DIR
    if resume_dir.is_symlink() or (resume_dir.exists() and not resume_dir.is_dir()):  # never written through
        print(one_line(f"vcp: warning: {resume_dir} is not a folder of its own: set aside"), file=sys.stderr, flush=True)
        remove_entry(resume_dir)
    prefix = resume_dir / f"{out_path.name}.{fp[:16]}"
    remove_segments(resume_dir, out_path.name, keep=prefix.name)  # other settings' segments are stale
    upfront = list(result.failures)
    with (
        H5Writer(
            out_path, max_frames=max_rows(frame_counts, config), feature_dim=encoder.model.feature_dim,
            category_mapping=mapping, multi_scale=config.multi_scale, views=config.stored_views, attrs=run_attrs(config, encoder, fp, attrs),
            with_order=config.shard.active, compress_threads=compress_threads(encoder.device.type), segments=prefix,
        ) as writer,
        make_progress(console, "frames") as progress,
    ):
        task = progress.add_task(f"extract {split}{stage.shard_label(config.shard)}", total=total)

        def advanced() -> None:
            elapsed = time.perf_counter() - started
            progress.update(task, advance=1, rate=result.frames / elapsed if elapsed else None)

        sink = RowSink(writer, result, advanced, made_by=f"backbone {config.backbone} at {config.precision}")
        state = writer.resumed
        if state is not None:
            sink.restore(state)
            result.failures = upfront + sink.failed
            progress.update(task, completed=result.videos + len(sink.failed))
            print(one_line(f"vcp: resuming {split}{stage.shard_label(config.shard)}: {result.videos} of {total} videos "
                           "already written"), file=sys.stderr, flush=True)

        _feed(clips(sink.next_order), PackedEncoder(encoder, config.forward_batch, per_video_rows(config)), sink, writer)
        progress.update(task, total=result.videos + len(result.failures), completed=result.videos + len(result.failures))
        writer.attrs["failed_files"] = json.dumps(sorted(result.failures + result.upstream_failures))
        writer.attrs["tensorize_failed_files"] = json.dumps(result.upstream_failures)
        writer.attrs["cuda_graph"] = bool(encoder.graph_used)
        writer.commit()
    remove_segments(resume_dir, out_path.name)
    result.output = out_path
    result.seconds = time.perf_counter() - started
    return result


def _feed(items, packer: PackedEncoder, sink: RowSink, writer: H5Writer) -> None:
    """Every input through the packer into the sink, committing a segment every
    checkpoint interval, and at once (the clips in flight finished) when a stop is asked."""
    interval, last_save = checkpoint_seconds(), time.monotonic()
    for item in items:
        if isinstance(item, Failed):
            sink.take(packer.mark(item))
        elif item.group not in sink.rejected:
            sink.take(packer.put(item, item.frames, item.stored) if item.chunks is None else _put_chunks(packer, item))
        if stop_requested() is not None:
            sink.take(packer.finish())
            writer.checkpoint(sink.state())
            check_stop()
        elif time.monotonic() - last_save >= interval or writer.unsaved_bytes >= SEGMENT_BYTES:
            writer.checkpoint(sink.state())
            last_save = time.monotonic()
    sink.take(packer.finish())


def _put_chunks(packer: PackedEncoder, clip) -> list:
    """A clip whose windows come a chunk at a time (memory holds one chunk): each chunk into
    the packer; a video that fails part way hands back its :class:`Failed` record instead."""
    from dali_pipes import VideoError

    ready, chunk = [], None
    chunks = iter(clip.chunks)
    try:
        chunk = next(chunks)
        for following in chunks:
            ready += packer.put(clip, chunk, clip.stored, more=True)
            chunk = following
    except VideoError as exc:
        failed = Failed(clip.order, clip.path or clip.filename, exc.reason)
        return ready + (packer.abort(failed) if packer.more_of(clip) else packer.mark(failed))
    return ready + packer.put(clip, chunk, clip.stored)


def compress_threads(device_type: str) -> int:
    """Threads gzip-compressing HDF5 rows beside the backbone: on CUDA the CPU is free and a
    fast card produces rows faster than one zlib thread compresses them; on the CPU the
    backbone has the cores, one thread is enough to overlap."""
    cores = os.cpu_count() or 1
    return min(8, max(1, cores // 2)) if device_type == "cuda" else 1


