"""Stage 2, ``vcp extract PROCESSED FEATURES``: frozen backbone, three scales, gzip HDF5.

Per split: validate every ``processed_data.pt`` (memory-mapped, ``weights_only``), run
the backbone once per distinct frame, build the scales by indexing (see
:mod:`vcp.multiscale`) and stream one row per video into :class:`H5Writer`.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import torch
from rich.console import Console
from rich.table import Table

from backbones.spec import IMAGENET, InputSpec

from .atomic import remove_stale_tmp
from .contract import PARTS_DIR, feature_part_name, features_filename
from .devices import UsageError
from .encoder import PRECISIONS, FrameEncoder, NonFiniteClip
from .h5_writer import H5Writer
from .layout import file_stamp, prepare_output_dir
from .lock import output_lock
from .multiscale import DEFAULT_SCALES, combine_scales, output_rows
from .packing import PackedEncoder
from .progress import human_bytes, make_progress
from .pt_reader import (
    ClipReader,
    PtSchemaError,
    TensorFile,
    _group_name,
    check_mappings,
    discover_processed,
    open_split,
    open_tensor_file,
)
from .report import file_error
from .shard import Shard, contiguous_ranges
from .versions import versions

# Frames per forward when --batch-size is not given: on the CPU small batches stay in the
# caches; on CUDA a few hundred frames fill the card (measurements: docs/benchmarks.md,
# "Numbers behind the defaults").
AUTO_BATCH = {"cpu": 8, "cuda": 256}



@dataclass(frozen=True)
class ExtractConfig:
    backbone: str = "efficientnet_v2_s"
    weights: str | None = "DEFAULT"
    device: str = "cpu"  # resolved: "cpu", "cuda" or "cuda:<local rank>"
    multi_scale: bool = True
    scales: tuple[float, ...] = DEFAULT_SCALES
    batch_size: int | None = None  # frames per forward; None: AUTO_BATCH for the device
    splits: tuple[str, ...] | None = None
    precision: str = "fp32"
    overwrite: bool = False
    channels_last: bool = True
    fuse_conv_bn: bool = True  # fold eval-mode BatchNorm into convs (same numbers, ~15% faster)
    compile: bool = False  # torch.compile the network (fixed shapes: the last batch is padded on CUDA)
    shard: Shard = Shard()
    seed: int = 0  # seeds random init (weights=None)

    @property
    def random_init(self) -> bool:
        """No weights: a randomly initialized network (seeded by ``seed``)."""
        return self.weights is None or str(self.weights).lower() == "none"

    @property
    def forward_batch(self) -> int:
        """Frames per forward pass: ``batch_size`` or the device's default."""
        return self.batch_size or AUTO_BATCH["cuda" if self.device.startswith("cuda") else "cpu"]

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise UsageError(f"Invalid precision ({self.precision!r}). Supported values are: fp32, bf16, fp16.")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.scales or any(s <= 0 for s in self.scales):
            raise UsageError(f"scales must be positive numbers, got {self.scales}")


@dataclass
class SplitResult:
    split: str
    videos: int = 0
    frames: int = 0
    seconds: float = 0.0
    output: Path | None = None
    skipped: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)
    upstream_failures: list[tuple[str, str]] = field(default_factory=list)  # tensorize's, recorded only


def video_features(encoder: FrameEncoder, video: torch.Tensor, config: ExtractConfig, stored=IMAGENET) -> torch.Tensor:
    """One video ``[T, 3, H, W]`` -> its rows: three-scale ``[max_L, D]`` or ``[T, D]``."""
    feats = encoder(video, stored)
    return combine_scales(feats, config.scales) if config.multi_scale else feats


def fingerprint(files: list[Path], config: ExtractConfig, **extra) -> str:
    payload = {
        **extra,
        "inputs": [[p.as_posix(), *file_stamp(p)] for p in files],
        "backbone": config.backbone, "weights": _weights_identity(config.weights), "multi_scale": config.multi_scale,
        "scales": list(config.scales), "precision": config.precision,
    }
    if config.random_init:  # the network is the seed's
        payload["init_seed"] = config.seed
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _weights_identity(weights) -> str:
    """A weights file counts by content stamp (size, mtime), a release by its name."""
    path = Path(str(weights))
    if weights is not None and path.is_file():
        st = path.stat()
        return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    return str(weights)


def output_target(features: Path, split: str, config: ExtractConfig, fp: str, result: SplitResult) -> Path | None:
    """Where this process writes the split: the final file, or its shard's part (None: up to date)."""
    final = features / features_filename(split, config.multi_scale)
    if not config.overwrite and skip_if_current(final, fp, result):
        return None
    if not config.shard.active:
        return final
    part = features / PARTS_DIR / feature_part_name(final.name, config.shard.tag)
    if not config.overwrite and skip_if_current(part, fp, result):
        return None
    return part


def skip_if_current(path: Path, fp: str, result: SplitResult) -> bool:
    """True (and ``result`` filled from the file) when ``path`` was made from these inputs."""
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("fingerprint") != fp:
                return False
            result.videos = int(h5.attrs["num_videos"])
            upstream = [tuple(x) for x in json.loads(h5.attrs.get("tensorize_failed_files", "[]"))]
            result.failures = [tuple(x) for x in json.loads(h5.attrs.get("failed_files", "[]")) if tuple(x) not in upstream]
            result.upstream_failures = upstream
    except OSError:
        return False
    result.skipped, result.output = True, path
    return True


def load_backbone(config: ExtractConfig) -> torch.nn.Module:
    """The configured backbone; random init (``weights=None``) is seeded by ``config.seed``
    without touching the caller's global RNG state, so reruns get the same network."""
    from backbones import get_backbone

    if not config.random_init:
        return get_backbone(config.backbone, config.weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return get_backbone(config.backbone, None)


def extract(
    processed: str | Path,
    features: str | Path,
    config: ExtractConfig,
    *,
    model: torch.nn.Module | None = None,
    console: Console | None = None,
) -> list[SplitResult]:
    """Run the stage over every split found (or ``config.splits``)."""
    console = console or Console(stderr=True)
    processed = Path(processed)
    by_split = discover_processed(processed, config.splits)
    features = prepare_output_dir(features, inputs=None, what="FEATURES")
    opened = {split: open_split(files) for split, files in by_split.items()}
    check_mappings({_group_name(tf): dict(tf.data["category_mapping"]) for tfs, _ in opened.values() for tf in tfs})
    encoder = FrameEncoder(model if model is not None else load_backbone(config), config)
    with output_lock(features, config.shard):
        results = [
            extract_split(split, files, features, config, encoder, console=console, opened=opened[split])
            for split, files in by_split.items()
        ]
    console.print(summary_table(results))
    return results


def extract_split(
    split, files, features: Path, config: ExtractConfig, encoder: FrameEncoder, *, console, opened=None
) -> SplitResult:
    result = SplitResult(split)
    fp = fingerprint(files, config)
    out_path = output_target(features, split, config, fp, result)
    if out_path is None:
        return result
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

    def clips():
        with ClipReader(encoder.cuda) as reader:
            window = collections.deque()
            for order in range(start, end):
                tf, i = rows[order]
                window.append((order, tf, i, reader.submit(tf, i)))
                if len(window) > READ_AHEAD:
                    yield _clip_of(*window.popleft())
            while window:
                yield _clip_of(*window.popleft())

    return write_features(
        split, out_path, clips(), result=result, total=n, frame_counts=frame_counts,
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


def max_rows(frame_counts, config: ExtractConfig) -> int:
    rows = (output_rows(t, config.scales) if config.multi_scale else t for t in frame_counts)
    return max(rows, default=0)


def write_features(
    split, out_path: Path, clips, *, result: SplitResult, total: int, frame_counts, mapping,
    config: ExtractConfig, encoder: FrameEncoder, fp: str, attrs: dict, console,
) -> SplitResult:
    """Backbone + scales over ``clips`` (:class:`Clip`) -> HDF5.

    ``result.failures`` may grow while ``clips`` is consumed (the streaming path finds bad
    videos as it goes); they are recorded in the ``failed_files`` attr at commit, with
    ``result.upstream_failures`` (videos tensorize could not use). A clip holding NaN/Inf
    rejects its whole group: the group's rows already written are taken back.
    """
    attrs = {
        "backbone": config.backbone,
        "weights": getattr(encoder.model, "weights_source", str(config.weights)),
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
        "cudnn_benchmark": bool(encoder.cuda),
        "tf32_convolutions": bool(torch.backends.cudnn.allow_tf32) if encoder.cuda and config.precision == "fp32" else None,
        **attrs,
    }
    started = time.perf_counter()
    remove_stale_tmp(out_path.parent, [out_path.name])
    with (
        H5Writer(
            out_path, max_frames=max_rows(frame_counts, config), feature_dim=encoder.model.feature_dim,
            category_mapping=mapping, multi_scale=config.multi_scale, attrs=attrs,
            with_order=config.shard.active, compress_threads=compress_threads(encoder.device.type),
        ) as writer,
        make_progress(console, "frames") as progress,
    ):
        label_suffix = f" [shard {config.shard.index}/{config.shard.count}]" if config.shard.active else ""
        task = progress.add_task(f"extract {split}{label_suffix}", total=total)
        rejected: set[str] = set()
        state = {"group": None, "start": (0, 0, 0)}  # group being written; rows, videos, frames when it began

        def take(ready) -> None:
            for clip, rows in ready:
                if clip.group in rejected:
                    continue
                if clip.group != state["group"]:
                    state["group"], state["start"] = clip.group, (writer.rows, result.videos, result.frames)
                if rows is None:  # NaN/Inf in the clip: the whole group goes, rows written included
                    rejected.add(clip.group)
                    writer.truncate(state["start"][0])
                    result.videos, result.frames = state["start"][1], state["start"][2]
                    reason = f"{clip.filename} holds NaN or Inf values: the whole group is rejected"
                    result.failures.append((clip.group, reason))
                    file_error(clip.group, reason)
                    continue
                writer.append(
                    rows, label=clip.label, filename=clip.filename, order=clip.order,
                    fps=clip.fps, frame_indices=clip.frame_indices, frame_times=clip.frame_times,
                )
                result.videos += 1
                result.frames += clip.frames.shape[0]
                elapsed = time.perf_counter() - started
                progress.update(task, advance=1, rate=result.frames / elapsed if elapsed else None)

        def per_video(feats: torch.Tensor) -> torch.Tensor:
            return combine_scales(feats, config.scales) if config.multi_scale else feats

        packer = PackedEncoder(encoder, config.forward_batch, per_video)
        for clip in clips:
            if clip.group not in rejected:
                take(packer.put(clip, clip.frames, clip.stored))
        take(packer.finish())
        progress.update(task, total=result.videos + len(result.failures), completed=result.videos + len(result.failures))
        writer.attrs["failed_files"] = json.dumps(sorted(result.failures + result.upstream_failures))
        writer.attrs["tensorize_failed_files"] = json.dumps(result.upstream_failures)
        writer.commit()
    result.output = out_path
    result.seconds = time.perf_counter() - started
    return result


def compress_threads(device_type: str) -> int:
    """Threads gzip-compressing HDF5 rows beside the backbone: on CUDA the CPU is free and a
    fast card produces rows faster than one zlib thread compresses them; on the CPU the
    backbone has the cores, one thread is enough to overlap."""
    cores = os.cpu_count() or 1
    return min(8, max(1, cores // 2)) if device_type == "cuda" else 1


def summary_table(results: list[SplitResult]) -> Table:
    table = Table(title="vcp extract")
    for col in ("split", "videos", "frames/s", "failed files", "seconds", "output"):
        table.add_column(col, justify="left" if col in ("split", "output") else "right")
    for r in results:
        rate = "up to date" if r.skipped else (f"{r.frames / r.seconds:.1f}" if r.seconds else "-")
        size = human_bytes(r.output.stat().st_size) if r.output and r.output.exists() else "-"
        table.add_row(r.split, str(r.videos), rate, str(len(r.failures)), f"{r.seconds:.1f}", f"{r.output.name if r.output else '-'} ({size})")
    return table


# Re-exported: callers and tests of the stage find the pieces it is built from here.
__all__ = [
    "Clip", "ClipReader", "ExtractConfig", "FrameEncoder", "NonFiniteClip", "PtSchemaError", "SplitResult",
    "TensorFile", "check_device", "discover_processed", "extract", "extract_split", "load_backbone",
    "open_tensor_file", "video_features", "write_features",
]


def check_device(device: str) -> str:
    from .devices import resolve_mode

    return resolve_mode(device, gpu_name="cuda")

