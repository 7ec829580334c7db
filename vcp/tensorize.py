"""Stage 1, ``vcp tensorize RAW OUT``: videos -> ``processed_data.pt`` per subcategory.

For each split/category/subcategory: skip when its outputs are up to date with its
inputs and settings, else probe + sample + decode + resize + normalize through
:class:`dali_pipes.ClipLoader` and stream the clips into a :class:`PtWriter`.
Bad files are reported (stderr and ``metadata.json``) and skipped; the rest is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dali_pipes import ClipLoader, SamplingSpec

from .atomic import remove_stale_tmp
from .contract import META_NAME, PARTS_DIR, PT_NAME, group_files, tensor_part_names
from .layout import Group, RawTree, discover_raw, file_stamp, prepare_output_dir
from .lock import output_lock
from .progress import human_bytes, make_progress
from .pt_writer import PtWriter, settle_pair
from .report import file_error
from .settings import (  # re-exported for callers of the stage
    STORAGE_DTYPES,
    TensorizeConfig,
    validate_strategies,
    validate_strategy_rules,
)
from .shard import Shard, assign_balanced
from .versions import versions

FORMAT_VERSION = 1


@dataclass
class SplitSummary:
    split: str
    videos: int = 0
    written: int = 0
    failed: int = 0
    skipped_groups: int = 0
    seconds: float = 0.0
    output_bytes: int = 0


@dataclass
class TensorizeResult:
    splits: list[SplitSummary]
    failures: list[tuple[str, str]]  # (relpath, reason)


def fingerprint(group: Group, spec: SamplingSpec, config: TensorizeConfig, mapping: dict) -> str:
    """Hash of everything that determines a group's output: inputs and settings."""
    files = [[path.name, *file_stamp(path)] for path in group.files]
    payload = {
        "format": FORMAT_VERSION,
        "files": files,
        "sampling": asdict(spec),
        "size": config.size,
        "storage": config.storage,
        "mean": config.stored_normalization.mean,
        "std": config.stored_normalization.std,
        "category_mapping": mapping,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def up_to_date(out_dir: Path, fp: str, name: str = PT_NAME, meta_name: str = META_NAME, *, repair: bool = True) -> bool:
    """True when the pair in ``out_dir`` is whole (same ``pair_id``) and made from ``fp``
    (``repair``: finishing a killed commit on the way)."""
    meta = settle_pair(out_dir, name, meta_name, repair=repair)
    return meta is not None and meta.get("fingerprint") == fp


def tensorize(
    raw: str | Path,
    out: str | Path,
    config: TensorizeConfig,
    *,
    console: Console | None = None,
    tree: RawTree | None = None,
) -> TensorizeResult:
    """Run the stage; returns per-split summaries and every failure."""
    console = console or Console(stderr=True)
    validate_strategies(config)
    tree = tree or discover_raw(raw)
    validate_strategy_rules(config, tree)
    out = prepare_output_dir(out, inputs=tree.root, what="OUT")
    with output_lock(out, config.shard):
        if config.shard.index == 0:  # one process reconciles; other ranks only add parts
            remove_stale_groups(out, tree, console)
        return _tensorize_locked(tree, out, config, console)


def remove_stale_groups(out: Path, tree: RawTree, console: Console) -> list[Path]:
    """Delete the outputs of groups that are no longer in RAW (RAW is the truth).

    Only vcp's own files are removed (``processed_data.pt``, ``metadata.json``, the
    ``.parts`` folder, vcp's temp files); a folder left empty is removed too. Each
    removal is reported.
    """
    current = {g.rel_dir for g in tree.groups}
    removed = []
    candidates = {p.parent for name in (PT_NAME, META_NAME, PARTS_DIR) for p in group_files(out, name)}
    for group_dir in sorted(candidates):
        rel = group_dir.relative_to(out)
        if rel in current:
            continue
        for name in (PT_NAME, META_NAME):
            (group_dir / name).unlink(missing_ok=True)
        if (group_dir / PARTS_DIR).is_dir():
            shutil.rmtree(group_dir / PARTS_DIR)
        for tmp in group_dir.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        for d in (group_dir, group_dir.parent, group_dir.parent.parent):
            with contextlib.suppress(OSError):
                d.rmdir()  # only when empty
        removed.append(rel)
        console.print(f"removed stale output {out / rel} (no longer in {tree.root})")
    return removed


def _tensorize_locked(tree: RawTree, out: Path, config: TensorizeConfig, console: Console) -> TensorizeResult:
    mapping = tree.category_mapping
    loader = ClipLoader(
        size=config.size,
        mean=config.stored_normalization.mean,
        std=config.stored_normalization.std,
        device=config.mode,
        device_id=config.device_id,
        max_batch=config.max_batch,
        cpu_decoder=config.cpu_decoder,
        pipelines=config.pipelines,
    )
    owned = _owned_files(tree, config.shard)
    summaries, failures = [], []
    for split in tree.splits:
        summary = SplitSummary(split)
        groups = tree.groups_of(split)
        summary.videos = sum(len(owned(g)) for g in groups)
        started = time.perf_counter()
        with make_progress(console, "videos") as progress:
            task = progress.add_task(f"tensorize {split}{_shard_label(config.shard)}", total=summary.videos)
            for group in groups:
                out_dir = out / group.rel_dir
                files = owned(group)
                spec = config.sampling(group)
                fp = fingerprint(group, spec, config, mapping)
                target_dir, name, meta_name = _target(out_dir, fp, config)
                current = up_to_date(target_dir, fp, name, meta_name)  # finishes a killed commit
                remove_stale_tmp(target_dir, [name, meta_name])
                if not config.overwrite and current:
                    summary.skipped_groups += 1
                    progress.advance(task, len(files))
                    previous = _previous_failures(target_dir / meta_name, group)
                    failures += previous
                    summary.failed += len(previous)
                    summary.output_bytes += (target_dir / name).stat().st_size
                    continue
                group_failures = _write_group(
                    tree, group, files, spec, config, mapping, fp, target_dir, name, meta_name, loader,
                    on_video=lambda task=task: progress.advance(task), console=console,
                )
                failures += group_failures
                summary.failed += len(group_failures)
                summary.written += len(files) - len(group_failures)
                summary.output_bytes += (target_dir / name).stat().st_size
        summary.seconds = time.perf_counter() - started
        summaries.append(summary)
    console.print(_summary_table(summaries))
    return TensorizeResult(summaries, failures)


def _target(out_dir: Path, fp: str, config: TensorizeConfig) -> tuple[Path, str, str]:
    """Where this process writes a group: the contract's files, or its shard's part files.

    A sharded rank still points at the final files when they are already up to date
    (merged earlier), so the group is skipped instead of redone as a part.
    """
    final_current = not config.overwrite and up_to_date(out_dir, fp)
    if not config.shard.active or final_current:
        return out_dir, PT_NAME, META_NAME
    return (out_dir / PARTS_DIR, *tensor_part_names(config.shard.tag))


def _owned_files(tree: RawTree, shard: Shard):
    """``group -> files this rank processes``: all of them, or a balanced slice by file size."""
    if not shard.active:
        return lambda group: list(group.files)
    everything = [p for g in tree.groups for p in g.files]
    ranks = assign_balanced([file_stamp(p)[0] for p in everything], shard.count)
    mine = {p for p, r in zip(everything, ranks, strict=True) if r == shard.index}
    return lambda group: [p for p in group.files if p in mine]


def _shard_label(shard: Shard) -> str:
    return f" [shard {shard.index}/{shard.count}]" if shard.active else ""


def _write_group(tree, group, files, spec, config, mapping, fp, out_dir, name, meta_name, loader, *, on_video, console):
    label = mapping[group.category]
    items = [(str(p), tree.relpath(p)) for p in files]
    failed, records = [], []
    started = time.perf_counter()
    stats_before = (dict(loader.stats.batch_sizes), len(loader.stats.fallbacks))
    with PtWriter(
        out_dir, frames=config.frames, size=config.size, category_mapping=mapping,
        dtype=STORAGE_DTYPES[config.storage], name=name, meta_name=meta_name,
        normalization=(config.stored_normalization.mean, config.stored_normalization.std),
        expected=[(Path(p).name, label) for p in files],  # laid out up front: no copy when all decode
    ) as writer:
        # Each batch is written inside its ``with``: one batch being written plus the ones
        # decoded ahead is all the clip memory tensorize ever holds.
        for batch in loader.load(items, spec, ahead=config.prefetch_depth(default=1)):
            with batch:
                for result in batch:
                    if result.ok:
                        writer.add(result.clip, Path(result.path).name, label)
                        records.append(_video_record(result, config.mode))
                    else:
                        failed.append((result.relpath, result.error.reason))
                        file_error(result.relpath, result.error.reason)
                    on_video()
        batch_sizes = {
            k: v - stats_before[0].get(k, 0)
            for k, v in loader.stats.batch_sizes.items()
            if v - stats_before[0].get(k, 0)
        }
        metadata = _group_metadata(group, label, spec, config, mapping, fp, records, failed)
        metadata["batch_sizes"] = {str(k): v for k, v in sorted(batch_sizes.items())}
        metadata["decoder_fallbacks"] = loader.stats.fallbacks[stats_before[1]:]
        metadata["elapsed_s"] = round(time.perf_counter() - started, 3)
        metadata["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        metadata["versions"] = versions()
        metadata["fingerprint"] = fp
        if config.shard.active:
            metadata["shard"] = {"index": config.shard.index, "count": config.shard.count}
        writer.commit(metadata)
    relpaths = {Path(path).name: relpath for path, relpath in items}
    cut_short = [f"{relpaths[r['file']]} ({r['frames_missing']} missing)" for r in records if r["frames_missing"]]
    if cut_short:
        print(
            f"vcp: warning: {len(cut_short)} video(s) in {group.rel_dir.as_posix()} are cut short and kept with "
            f"the frames present (frames_missing in metadata.json): {', '.join(cut_short)}",
            file=sys.stderr, flush=True,
        )
    return failed


def _video_record(result, mode: str) -> dict:
    """One video's entry in ``metadata.json``: where its frames came from and how."""
    info = result.info
    return {
        "file": Path(result.path).name,
        "frame_indices": result.indices.tolist(),
        "frame_times": info.times_of(result.indices),
        "flipped": result.flip,
        "num_frames": info.num_frames,
        "fps": info.fps,
        "codec": info.codec,
        "width": info.width,
        "height": info.height,
        "decoder": _decoder_name(result.front, mode),
        **({"decoder_note": result.note} if result.note else {}),
        "rotation": info.rotation,
        "frames_missing": info.frames_missing,
        **({"warning": info.warning} if info.warning else {}),
    }


def _group_metadata(group, label, spec, config, mapping, fp, records, failed) -> dict:
    """The settings and outcome part of a group's ``metadata.json`` (run details are added by the caller)."""
    return {
        "split": group.split,
        "category": group.category,
        "subcategory": group.subcategory,
        "label": label,
        "num_videos": len(records),
        "frames_per_video": config.frames,
        "image_size": config.size,
        "sampling_strategy": spec.strategy,
        "clip_duration": config.clip_duration,
        "seed": config.seed,
        "augmentation": config.augment,
        "processing_mode": config.mode,
        "storage": config.storage,
        "normalization": {
            "mean": list(config.stored_normalization.mean),
            "std": list(config.stored_normalization.std),
        },
        "layout": _layout_note(config.storage),
        "category_mapping": mapping,
        "failed": [{"file": Path(rel).name, "reason": reason} for rel, reason in failed],
        "videos": records,
    }


def _layout_note(storage: str) -> str:
    if storage == "uint8":
        return "videos[N, T, 3, H, W] uint8 RGB pixels 0..255, NOT normalized (vcp extract normalizes on load)"
    return f"videos[N, T, 3, H, W] {storage} RGB, ImageNet-normalized"


def _decoder_name(front: str, mode: str) -> str:
    if front == "dali":
        return "dali-nvdec" if mode == "gpu" else "dali-cpu"
    return "pyav"


def _previous_failures(meta_path: Path, group: Group) -> list[tuple[str, str]]:
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return []
    return [(f"{group.rel_dir.as_posix()}/{f['file']}", f["reason"]) for f in meta.get("failed", [])]


def _summary_table(summaries: list[SplitSummary]) -> Table:
    table = Table(title="vcp tensorize")
    for col in ("split", "videos", "written", "failed", "up-to-date groups", "seconds", "output"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for s in summaries:
        table.add_row(
            s.split, str(s.videos), str(s.written), str(s.failed), str(s.skipped_groups),
            f"{s.seconds:.1f}", human_bytes(s.output_bytes),
        )
    return table


__all__ = [
    "STORAGE_DTYPES", "SplitSummary", "TensorizeConfig", "TensorizeResult", "fingerprint", "remove_stale_groups",
    "tensorize", "up_to_date", "validate_strategies", "validate_strategy_rules",
]
