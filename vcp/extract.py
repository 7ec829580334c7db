"""Stage 2, ``vcp extract PROCESSED FEATURES``: frozen backbone, three scales, gzip HDF5.

Per split: validate every ``processed_data.pt`` (memory-mapped, ``weights_only``), run
the backbone once per distinct frame, build the scales by indexing (see
:mod:`vcp.multiscale`) and stream one row per video into :class:`H5Writer`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import hashlib
import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import torch
from rich.console import Console
from rich.table import Table

from backbones.spec import IMAGENET, InputSpec

from .atomic import remove_stale_tmp
from .devices import UsageError
from .h5_writer import H5Writer, features_filename
from .layout import LayoutError, file_stamp, prepare_output_dir
from .lock import output_lock
from .multiscale import DEFAULT_SCALES, combine_scales, output_rows
from .packing import PackedEncoder
from .progress import human_bytes, make_progress
from .pt_writer import META_NAME, PT_NAME, settle_pair
from .report import file_error
from .shard import PARTS_DIR, Shard, contiguous_ranges
from .versions import versions

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# Frames per forward when --batch-size is not given. On the CPU small batches stay in cache:
# efficientnet_v2_s at 256² on the 2-core dev box ran 30 frames/s at batch 32, 44 at 8 and
# 47 at 4 (fp32); 73 / 74 / 67 with bf16 (resnet50: same shape). docs/benchmarks.md.
AUTO_BATCH = {"cpu": 8, "cuda": 256}
UPLOAD_SLOTS = 3  # pinned staging buffers for host->device copies: one filling, two in flight


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
            raise ValueError(f"Invalid precision ({self.precision!r}). Supported values are: fp32, bf16, fp16.")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ValueError(f"scales must be positive numbers, got {self.scales}")


class PtSchemaError(Exception):
    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


class NonFiniteClip(Exception):
    """A stored clip holds NaN or Inf: its whole group is rejected."""


@dataclass
class TensorFile:
    path: Path
    rel: str  # <category>/<subcategory>
    data: dict
    input_spec: InputSpec = IMAGENET
    meta: dict | None = None  # its metadata.json, when present and paired with it

    @functools.cached_property
    def records(self) -> dict[str, dict]:
        """Each video's metadata record (frame indices and times, fps...) by file name."""
        return {r["file"]: r for r in (self.meta or {}).get("videos", []) if "file" in r}

    @property
    def upstream_failures(self) -> list[tuple[str, str]]:
        """Videos tensorize could not use, as ``(<split>/<category>/<subcategory>/<file>, reason)``."""
        split = self.path.parents[2].name
        return [(f"{split}/{self.rel}/{f['file']}", f["reason"]) for f in (self.meta or {}).get("failed", [])]


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


SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


def discover_processed(root: Path, splits=None) -> dict[str, list[Path]]:
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"processed folder not found: {root} (run `vcp tensorize RAW {root}` first)")
    found: dict[str, list[Path]] = {}
    for pt in sorted(root.glob(f"*/*/*/{PT_NAME}")):
        split = pt.relative_to(root).parts[0]
        if splits is None or split in splits:
            found.setdefault(split, []).append(pt)
    unmerged = sorted(
        d.parent.relative_to(root).as_posix()
        for d in root.glob(f"*/*/*/{PARTS_DIR}")
        if d.is_dir() and not (d.parent / PT_NAME).is_file() and (splits is None or d.relative_to(root).parts[0] in splits)
    )
    if unmerged:
        raise LayoutError(
            f"{', '.join(unmerged)} under {root} hold only shard part files (a sharded tensorize "
            f"that was not merged): run `vcp merge {root}` first"
        )
    if not found:
        wanted = f" for splits {', '.join(splits)}" if splits else ""
        raise LayoutError(
            f"no {PT_NAME} files{wanted} under {root}: expected "
            f"<split>/<category>/<subcategory>/{PT_NAME} (run `vcp tensorize` first)"
        )
    return dict(sorted(found.items(), key=lambda kv: (SPLIT_ORDER.get(kv[0], 3), kv[0])))


STORED_DTYPES = {"float32": torch.float32, "float16": torch.float16, "uint8": torch.uint8}


def open_tensor_file(path: Path) -> TensorFile:
    """Memory-map and check a ``.pt`` against the contract; :class:`PtSchemaError` if not.

    How the stored values are normalized is read from the archive itself (``storage``,
    ``normalization``). A ``metadata.json`` beside it is used only when it belongs to this
    archive (same ``pair_id``); one that belongs to another archive is an error, a missing
    one is harmless. Archives written before vcp recorded this in the ``.pt`` fall back to
    their metadata, and uint8 pixels with no record at all are refused.
    """
    try:
        data = torch.load(path, weights_only=True, mmap=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001
        reason = " ".join(str(exc).split())[:200]
        raise PtSchemaError(path, f"not a loadable weights_only torch file ({type(exc).__name__}: {reason})") from None
    if not isinstance(data, dict):
        raise PtSchemaError(path, f"expected a dict, got {type(data).__name__}")
    missing = [k for k in ("videos", "labels", "filenames", "category_mapping") if k not in data]
    if missing:
        raise PtSchemaError(path, f"missing keys: {', '.join(missing)}")
    v, labels, names, mapping = data["videos"], data["labels"], data["filenames"], data["category_mapping"]
    if not isinstance(v, torch.Tensor) or v.ndim != 5 or v.shape[2] != 3:
        raise PtSchemaError(path, f"videos must be a [N, T, 3, H, W] tensor, got {getattr(v, 'shape', type(v).__name__)}")
    if v.dtype not in STORED_DTYPES.values():
        raise PtSchemaError(path, f"videos dtype {v.dtype} is not one of float32, float16, uint8")
    if "storage" in data and STORED_DTYPES.get(data["storage"]) != v.dtype:
        raise PtSchemaError(path, f"videos dtype {v.dtype} contradicts the archive's storage {data['storage']!r}")
    if not isinstance(labels, torch.Tensor) or labels.shape != (v.shape[0],):
        raise PtSchemaError(path, f"labels must be a [N={v.shape[0]}] tensor")
    if not isinstance(names, list) or len(names) != v.shape[0]:
        raise PtSchemaError(path, f"filenames must be a list of {v.shape[0]} names")
    if not isinstance(mapping, dict) or not all(isinstance(i, int) for i in mapping.values()):
        raise PtSchemaError(path, "category_mapping must be a dict of category -> int")
    outside = sorted(set(labels.tolist()) - set(mapping.values()))
    if outside:
        raise PtSchemaError(path, f"labels {outside[:5]} are not indices of its category_mapping {mapping}")
    meta = _paired_metadata(path, data)
    rel = path.parent.relative_to(path.parents[2]).as_posix()
    return TensorFile(path=path, rel=rel, data=data, input_spec=_stored_normalization(path, data, meta), meta=meta)


def _paired_metadata(path: Path, data: dict) -> dict | None:
    meta_path = path.parent / META_NAME
    if not meta_path.exists() and not any(path.parent.glob(f".{META_NAME}.*tmp")):
        return None
    meta = settle_pair(path.parent)
    if meta is None:
        raise PtSchemaError(
            path, f"{META_NAME} beside it belongs to another write (pair_id differs or it is unreadable: "
            "an interrupted or mixed write); rerun `vcp tensorize` for this folder"
        )
    return meta


def _stored_normalization(path: Path, data: dict, meta: dict | None) -> InputSpec:
    """How the clips in ``path`` are normalized: the archive's own record, else (older
    archives) its metadata, else the contract's ImageNet normalization for float storage."""
    for source in (data, meta or {}):
        norm = source.get("normalization")
        if isinstance(norm, dict):
            try:
                mean, std = tuple(float(x) for x in norm["mean"]), tuple(float(x) for x in norm["std"])
            except (KeyError, TypeError, ValueError):
                raise PtSchemaError(path, f"unreadable normalization record {norm!r}") from None
            if len(mean) != 3 or len(std) != 3 or not all(math.isfinite(x) for x in mean + std) or min(std) <= 0:
                raise PtSchemaError(path, f"invalid normalization record {norm!r}")
            return InputSpec(mean, std)
    if data["videos"].dtype == torch.uint8:
        raise PtSchemaError(
            path, f"uint8 pixels with no record of their normalization (no {META_NAME}); rerun `vcp tensorize`"
        )
    return IMAGENET


def check_split_groups(tensor_files: list[TensorFile]) -> tuple[list[TensorFile], list[tuple[Path, str]]]:
    """Groups whose frame count or frame size differs from the rest of the split are
    rejected (the ``(T, H, W)`` of most videos wins; ties: the first group's)."""
    shapes = Counter()
    for tf in tensor_files:
        shapes[tuple(tf.data["videos"].shape[1:])] += tf.data["videos"].shape[0]
    shapes = +shapes  # drop empty groups' shapes
    if len(shapes) <= 1:
        return tensor_files, []
    first = {tuple(tf.data["videos"].shape[1:]): i for i, tf in reversed(list(enumerate(tensor_files)))}
    common = max(shapes, key=lambda s: (shapes[s], -first[s]))
    keep, rejected = [], []
    for tf in tensor_files:
        shape = tuple(tf.data["videos"].shape[1:])
        if tf.data["videos"].shape[0] and shape != common:
            rejected.append((tf.path, f"clips are T={shape[0]}, {shape[2]}x{shape[3]} but the split's other groups are T={common[0]}, {common[2]}x{common[3]}"))
        else:
            keep.append(tf)
    return keep, rejected


def check_mappings(by_group: dict[str, dict]) -> None:
    """Every group must carry the same category mapping; else name who disagrees and why."""
    variants: dict[str, list[str]] = {}
    for group, mapping in by_group.items():
        variants.setdefault(json.dumps(mapping, sort_keys=True), []).append(group)
    if len(variants) <= 1:
        return
    detail = "; ".join(
        f"{mapping} in {', '.join(groups[:3])}{f' (+{len(groups) - 3} more)' if len(groups) > 3 else ''}"
        for mapping, groups in sorted(variants.items(), key=lambda kv: -len(kv[1]))
    )
    raise UsageError(
        f"the processed groups disagree on category_mapping ({detail}): they were written from "
        "different RAW trees; rerun `vcp tensorize RAW PROCESSED` (it removes groups no longer in RAW) "
        "or delete the stale groups"
    )


class FrameEncoder:
    """Runs the frozen backbone over frames: inference_mode, channels_last, autocast.

    :meth:`prepare` puts a clip on the device, checks it is finite (without waiting) and
    normalizes it as the backbone expects; :meth:`forward` runs the network on a batch of
    prepared frames. On CUDA, host clips go up through a ring of pinned buffers on a copy
    stream, so the next clip's upload overlaps this batch's compute; cuDNN picks its
    algorithms for the fixed batch shape (``cudnn.benchmark``).
    """

    def __init__(self, model: torch.nn.Module, config: ExtractConfig):
        self.device = torch.device(config.device)
        self.config = config
        self.model = model.to(self.device)  # attributes (feature_dim, input_spec) live here
        self.net = _fused(self.model) if config.fuse_conv_bn else self.model
        if config.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.dtype = PRECISIONS[config.precision]
        self.target: InputSpec = getattr(model, "input_spec", IMAGENET)
        self._affine_cache: dict = {}
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            torch.backends.cudnn.benchmark = True
            self._copy_stream = torch.cuda.Stream(self.device)
            self._slots: list[list] = [[None, None] for _ in range(UPLOAD_SLOTS)]  # [pinned buffer, copy done event]
            self._next_slot = 0
        self.compiled = False
        if config.compile:
            self.net = torch.compile(self.net, dynamic=False)
            self.compiled = True

    def _upload(self, frames: torch.Tensor) -> torch.Tensor:
        """Host clip -> device through the next pinned slot, on the copy stream.

        A slot is refilled only after its previous copy has finished (its event), so the
        copy of clip k+3 into it can never race the transfer of clip k. The compute stream
        waits for the copy before it reads the clip.
        """
        slot = self._slots[self._next_slot]
        self._next_slot = (self._next_slot + 1) % len(self._slots)
        if slot[1] is not None:
            slot[1].synchronize()
        if slot[0] is None or slot[0].numel() < frames.numel() or slot[0].dtype != frames.dtype:
            slot[0] = torch.empty(frames.numel(), dtype=frames.dtype).pin_memory()
        staging = slot[0][: frames.numel()].view(frames.shape)
        staging.copy_(frames)
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            on_device = staging.to(self.device, non_blocking=True)
            slot[1] = torch.cuda.Event()
            slot[1].record(self._copy_stream)
        compute.wait_event(slot[1])
        on_device.record_stream(compute)
        return on_device

    def _upload_pinned(self, frames: torch.Tensor) -> torch.Tensor:
        """Pinned host clip -> device on the copy stream, directly (torch's pinned-memory
        cache keeps the host block until the copy has finished)."""
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            on_device = frames.to(self.device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self._copy_stream)
        compute.wait_event(done)
        on_device.record_stream(compute)
        return on_device

    def _renormalize(self, x: torch.Tensor, stored: InputSpec) -> torch.Tensor:
        """Clips are stored with ``stored`` mean/std; the backbone may expect others."""
        if (stored.mean, stored.std) == (self.target.mean, self.target.std):
            return x
        key = (stored, self.target)
        if key not in self._affine_cache:
            sm, ss = torch.tensor(stored.mean), torch.tensor(stored.std)
            tm, ts = torch.tensor(self.target.mean), torch.tensor(self.target.std)
            scale, shift = ss / ts, (sm - tm) / ts
            self._affine_cache[key] = (scale.view(1, 3, 1, 1).to(self.device), shift.view(1, 3, 1, 1).to(self.device))
        scale, shift = self._affine_cache[key]
        return x * scale + shift

    @torch.inference_mode()
    def prepare(self, frames: torch.Tensor, stored: InputSpec = IMAGENET) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[T, 3, H, W]`` (any device, any stored dtype) -> (frames ready for the network on
        the device, a device bool "all finite" — None when the storage cannot hold NaN)."""
        if self.cuda and not frames.is_cuda:
            frames = self._upload_pinned(frames) if frames.is_pinned() else self._upload(frames)
        frames = frames.to(self.device)
        finite = torch.isfinite(frames).all() if frames.is_floating_point() else None
        frames = self._renormalize(frames.float(), stored)
        if self.config.channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        return frames, finite

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Prepared ``[B, 3, H, W]`` -> ``[B, D]`` float32 on the device."""
        if self.dtype is None:
            return self.net(batch).float()
        with torch.autocast(self.device.type, dtype=self.dtype):
            return self.net(batch).float()

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor, stored: InputSpec = IMAGENET) -> torch.Tensor:
        """``[T, 3, H, W]`` (any device) -> ``[T, D]`` float32 on the device (one video)."""
        frames, finite = self.prepare(frames, stored)
        if finite is not None and not bool(finite):
            raise NonFiniteClip("holds NaN or Inf values")
        step = self.config.forward_batch
        return torch.cat([self.forward(frames[i : i + step]) for i in range(0, frames.shape[0], step)])


def _fused(model: torch.nn.Module) -> torch.nn.Module:
    """Conv+BatchNorm folded (torch.fx) when the model traces; the model itself otherwise."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(model)
    except Exception:  # noqa: BLE001 - untraceable plugin models simply run unfused
        return model


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
    part = features / PARTS_DIR / f"{final.name}.{config.shard.tag}.h5"
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


def _group_name(tf: TensorFile) -> str:
    return f"{tf.path.parents[2].name}/{tf.rel}"


def open_split(files: list[Path]) -> tuple[list[TensorFile], list[tuple[Path, str]]]:
    """Open and check a split's ``.pt`` files: the usable ones, and ``(path, reason)`` for the rest."""
    tensor_files, failures = [], []
    for path in files:
        try:
            tensor_files.append(open_tensor_file(path))
        except PtSchemaError as exc:
            failures.append((exc.path, exc.reason))
    tensor_files, rejected = check_split_groups(tensor_files)
    return tensor_files, failures + rejected


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


class ClipReader:
    """Clips of ``.pt`` archives for the backbone.

    For a CUDA backbone, clip ``i`` is read with plain ``pread`` calls from its place in the
    archive (storages are stored uncompressed) straight into pinned memory, by a few threads
    ahead of use: no page faults on a memory map, no extra copy into a staging buffer, and
    the upload is a direct async copy. (On the H200 box the memory-mapped path capped
    extract at ~3,200 frames/s.) Elsewhere, and for any archive whose layout is not the
    plain one, the clip is the memory-mapped view.
    """

    def __init__(self, pinned: bool):
        self.pinned = pinned
        self._pool = None
        self._files: dict = {}  # path -> (fd, data offset, bytes per clip) or None

    def __enter__(self) -> ClipReader:
        if self.pinned:
            self._pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="vcp-read")
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for entry in self._files.values():
            if entry:
                os.close(entry[0])

    def _layout(self, tf: TensorFile):
        if tf.path not in self._files:
            from .pt_writer import _read_layout

            videos = tf.data["videos"]
            entry = None
            try:
                offset, size, _info = _read_layout(tf.path)[0]["videos"]
                per_clip = videos[0].numel() * videos.element_size() if videos.shape[0] else 0
                if videos.is_contiguous() and videos.storage_offset() == 0 and size == videos.shape[0] * per_clip:
                    entry = (os.open(tf.path, os.O_RDONLY), offset, per_clip)
            except (OSError, KeyError, ValueError, RuntimeError):
                entry = None
            self._files[tf.path] = entry
        return self._files[tf.path]

    def submit(self, tf: TensorFile, i: int):
        """The clip (a tensor), or a future of it."""
        entry = self._layout(tf) if self._pool is not None else None
        if entry is None:
            return tf.data["videos"][i]
        return self._pool.submit(_read_pinned, entry, i, tf.data["videos"])


def _read_pinned(entry, i: int, videos: torch.Tensor) -> torch.Tensor:
    fd, offset, per_clip = entry
    out = torch.empty(videos.shape[1:], dtype=videos.dtype, pin_memory=torch.cuda.is_available())
    view = memoryview(out.view(torch.uint8).numpy()).cast("B")
    done = 0
    while done < per_clip:
        n = os.preadv(fd, [view[done:]], offset + i * per_clip + done)
        if n <= 0:
            raise OSError(f"short read at clip {i}")
        done += n
    return out


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
    """Threads gzip-compressing HDF5 rows beside the backbone: on CUDA the CPU is free (a
    few hundred videos/s need ~60 MB/s of level-4 gzip); on the CPU the backbone has the
    cores, one thread is enough to overlap."""
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


def check_device(device: str) -> str:
    from .devices import resolve_mode

    return resolve_mode(device, gpu_name="cuda")

