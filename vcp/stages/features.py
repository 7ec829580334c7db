"""The sink both extract sources feed: settings, the backbone, fingerprints, the HDF5 write.

Clips come as :class:`Clip` (and :class:`~vcp.stages.row_sink.Failed`) objects, in input
order, from a source (:mod:`vcp.stages.sources`); :func:`write_features` runs packed
forwards, the three-scale rule, and writes one HDF5 row per video, committing its progress
as it goes.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import torch

from backbones.spec import IMAGENET, InputSpec
from backbones.weights import NoWeights, Weights, WeightsFile
from vcp.common.progress import human_bytes, make_progress
from vcp.common.report import one_line
from vcp.common.versions import versions
from vcp.stages import stage
from vcp.stages.encoder import FrameEncoder
from vcp.stages.interrupt import check_stop, checkpoint_seconds, stop_requested
from vcp.stages.multiscale import combine_scales, output_rows
from vcp.stages.packing import PackedEncoder
from vcp.stages.row_sink import Failed, RowSink
from vcp.stages.settings import ExtractConfig
from vcp.stages.stage import SplitResult
from vcp.store.atomic import remove_stale_tmp
from vcp.store.contract import PARTS_DIR, RESUME_DIR, feature_part_name, features_filename
from vcp.store.folders import file_stamp, remove_entry
from vcp.store.h5_writer import H5Writer, remove_segments


def video_features(encoder: FrameEncoder, video: torch.Tensor, config: ExtractConfig, stored=IMAGENET) -> torch.Tensor:
    """One video ``[T, 3, H, W]`` -> its rows: three-scale ``[max_L, D]`` or ``[T, D]``."""
    feats = encoder(video, stored)
    return combine_scales(feats, config.scales) if config.multi_scale else feats


def fingerprint(files: list[Path], config: ExtractConfig, *, names: list[str] | None = None, **extra) -> str:
    """What a split's features depend on. Inputs count by their name inside the input tree
    (``names``; by default a ``.pt`` group's ``<split>/<category>/<subcategory>/<file>``),
    so the same tree spelled another way (relative, absolute, through a link) is the same input."""
    names = names if names is not None else [Path(*p.parts[-4:]).as_posix() for p in files]
    payload = {
        **extra,
        "inputs": [[name, *file_stamp(p)] for name, p in zip(names, files, strict=True)],
        "backbone": config.backbone, "weights": _weights_identity(config.weights), "multi_scale": config.multi_scale,
        "scales": list(config.scales), "precision": config.precision,
    }
    if config.random_init:  # the network is the seed's
        payload["init_seed"] = config.seed
    if config.uses_model_recipe:  # the model's own input recipe (frames as stored: no key, as before it existed)
        payload["recipe"] = ["model", config.input_size]
    return stage.fingerprint(payload)


def _weights_identity(weights: Weights) -> str:
    """A weights file counts by content stamp (size, mtime), a release by its name."""
    if isinstance(weights, NoWeights):
        return "None"
    path = Path(str(weights))
    if isinstance(weights, WeightsFile) and path.is_file():
        st = path.stat()
        return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    return str(weights)


def output_target(features: Path, split: str, config: ExtractConfig, fp: str) -> tuple[Path, SplitResult | None]:
    """Where this process writes the split (the final file, or its shard's part), and the
    result already there when that file (or the final one) is up to date — a query: it
    writes nothing and changes nothing."""
    final = features / features_filename(split, config.multi_scale)
    part = features / PARTS_DIR / feature_part_name(final.name, config.shard.tag) if config.shard.active else None
    return stage.pick_target(final, part, lambda path: current_result(path, fp, split), overwrite=config.overwrite)


def current_result(path: Path, fp: str, split: str) -> SplitResult | None:
    """The result recorded in ``path`` when it was made from these inputs (``fp``), else None."""
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("fingerprint") != fp:
                return None
            upstream = [tuple(x) for x in json.loads(h5.attrs.get("tensorize_failed_files", "[]"))]
            failures = [tuple(x) for x in json.loads(h5.attrs.get("failed_files", "[]")) if tuple(x) not in upstream]
            return SplitResult(split, videos=int(h5.attrs["num_videos"]), output=path, skipped=1,
                               failures=failures, upstream_failures=upstream)
    except OSError:
        return None


def load_backbone(config: ExtractConfig) -> torch.nn.Module:
    """The configured backbone; random init (``weights=None``) is seeded by ``config.seed``
    without touching the caller's global RNG state, so reruns get the same network."""
    from backbones import get_backbone

    if not config.random_init:
        return get_backbone(config.backbone, config.weights, input_size=config.input_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return get_backbone(config.backbone, None, input_size=config.input_size)


@dataclass
class Clip:
    """One video on its way into the HDF5: ``group`` names what is rejected with it."""

    order: int  # row position in a single-process run
    frames: torch.Tensor  # [T, 3, H, W]
    stored: InputSpec
    label: int
    filename: str  # <category>/<subcategory>/<file>
    group: str
    fps: float | None = None  # the source video's, and the frames it was sampled at (when known)
    frame_indices: list[int] | None = None
    frame_times: list[float] | None = None
    path: str | None = None  # the manifest's path (or relative to RAW) of the source video
    segment: tuple | None = None  # [start, end) seconds it was sampled in, if given


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
            category_mapping=mapping, multi_scale=config.multi_scale, attrs=_run_attrs(config, encoder, fp, attrs),
            with_order=config.shard.active, compress_threads=compress_threads(encoder.device.type), segments=prefix,
        ) as writer,
        make_progress(console, "frames") as progress,
    ):
        task = progress.add_task(f"extract {split}{stage.shard_label(config.shard)}", total=total)

        def advanced() -> None:
            elapsed = time.perf_counter() - started
            progress.update(task, advance=1, rate=result.frames / elapsed if elapsed else None)

        sink = RowSink(writer, result, advanced, made_by=f"backbone {config.backbone} at {config.precision}")
        state = writer.load_segments()
        if state is not None:
            sink.restore(state)
            result.failures = upfront + sink.failed
            progress.update(task, completed=result.videos + len(sink.failed))
            print(one_line(f"vcp: resuming {split}{stage.shard_label(config.shard)}: {result.videos} of {total} videos "
                           "already written"), file=sys.stderr, flush=True)

        _feed(clips(sink.next_order), PackedEncoder(encoder, config.forward_batch, functools.partial(_per_video, config=config)),
              sink, writer)
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
            sink.take(packer.put(item, item.frames, item.stored))
        if stop_requested() is not None:
            sink.take(packer.finish())
            writer.save_segment(sink.state())
            check_stop()
        elif time.monotonic() - last_save >= interval or writer.unsaved_bytes >= SEGMENT_BYTES:
            writer.save_segment(sink.state())
            last_save = time.monotonic()
    sink.take(packer.finish())


def _per_video(feats: torch.Tensor, *, config: ExtractConfig) -> torch.Tensor:
    return combine_scales(feats, config.scales) if config.multi_scale else feats


def _run_attrs(config: ExtractConfig, encoder: FrameEncoder, fp: str, extra: dict) -> dict:
    """The HDF5 attrs that say how the features were made (None values are left out)."""
    return {
        "backbone": config.backbone,
        "weights": encoder.model.weights_source,
        "scales": json.dumps(list(config.scales) if config.multi_scale else [1.0]),
        "precision": config.precision,
        "versions": json.dumps(versions(), sort_keys=True),
        "fingerprint": fp,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "shard_index": config.shard.index if config.shard.active else None,
        "shard_count": config.shard.count if config.shard.active else None,
        "init_seed": config.seed if config.random_init else None,
        "frames_per_forward": config.forward_batch,
        "compiled": bool(encoder.compiled),
        "weights_cast_once": encoder.weights_cast if encoder.dtype is not None else None,
        "cudnn_benchmark": bool(encoder.cuda),
        "tf32_convolutions": bool(torch.backends.cudnn.allow_tf32) if encoder.cuda and config.precision == "fp32" else None,
        **recipe_attrs(encoder),
        **extra,
    }


def recipe_attrs(encoder: FrameEncoder) -> dict:
    """How each frame was made ready for the network: ``recipe`` ``model`` (the model's own
    resize, crop, interpolation, mean/std, all recorded) or ``stored`` (the frames as stored,
    only re-normalized with the model's mean/std)."""
    target = encoder.target
    record = target.record() if encoder.recipe is not None else {"mean": list(target.mean), "std": list(target.std)}
    return {"recipe": "model" if encoder.recipe is not None else "stored",
            **{k: json.dumps(v) if isinstance(v, list) else v for k, v in record.items()}}


def compress_threads(device_type: str) -> int:
    """Threads gzip-compressing HDF5 rows beside the backbone: on CUDA the CPU is free and a
    fast card produces rows faster than one zlib thread compresses them; on the CPU the
    backbone has the cores, one thread is enough to overlap."""
    cores = os.cpu_count() or 1
    return min(8, max(1, cores // 2)) if device_type == "cuda" else 1


def _rate(r: SplitResult) -> str:
    return "up to date" if r.skipped else (f"{r.frames / r.seconds:.1f}" if r.seconds else "-")


def _output(r: SplitResult) -> str:
    size = human_bytes(r.output.stat().st_size) if r.output and r.output.exists() else "-"
    return f"{r.output.name if r.output else '-'} ({size})"


COLUMNS: list[stage.Column] = [
    ("split", lambda r: r.split, "left"),
    ("videos", lambda r: str(r.videos), "right"),
    ("frames/s", _rate, "right"),
    ("failed files", lambda r: str(len(r.failures)), "right"),
    ("seconds", lambda r: f"{r.seconds:.1f}", "right"),
    ("output", _output, "left"),
]


def summary_table(results: list[SplitResult], *, tree=None):
    return stage.summary_table("vcp extract", results, COLUMNS, tree=tree)
