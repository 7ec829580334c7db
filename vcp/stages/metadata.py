"""A group's ``metadata.json``, as ``vcp tensorize`` writes it (docs/design.md, "metadata.json").

Per group: what it is (split, category, label), the settings that made it, each video's
record (frames sampled and their times, decoder, rotation, frames missing), the files that
failed, and the run's details (batches, decoder fallbacks, time, versions, fingerprint).
"""

from __future__ import annotations

import time
from pathlib import Path

from dali_pipes import ClipLoader
from vcp.common.versions import versions
from vcp.stages.settings import TensorizeConfig
from vcp.store.contract import class_list


def group_metadata(group, label, spec, config: TensorizeConfig, mapping, records, failed) -> dict:
    """The settings and outcome part of a group's ``metadata.json``."""
    return {
        "split": group.split,
        "category": group.category,
        "subcategory": group.subcategory,
        "label": label,
        "num_videos": len(records),
        "frames_per_video": config.clip.frames,
        "image_size": config.clip.size,
        "fit": config.clip.fit,  # squash: both edges to image_size; center: the shorter edge, then the centre crop
        "interpolation": config.clip.interpolation,
        "sampling_strategy": spec.strategy,
        "clip_duration": config.clip.clip_duration,
        "seed": config.clip.seed,
        "augmentation": config.clip.augment,
        "processing_mode": config.decode.mode,
        "storage": config.write.storage,
        "normalization": {
            "mean": list(config.stored_normalization.mean),
            "std": list(config.stored_normalization.std),
        },
        "layout": _layout_note(config.write.storage),
        "category_mapping": mapping,
        "classes": class_list(mapping),
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


def video_record(result, mode: str, path: str | None = None) -> dict:
    """One video's entry in ``metadata.json``: where its frames came from and how (``path``:
    the manifest's ``path``, or the file's path relative to RAW; ``segment`` when sampled
    from one)."""
    info = result.info
    return {
        "file": Path(result.path).name,
        **({"path": path} if path is not None else {}),
        **({"segment": list(result.segment)} if result.segment is not None else {}),
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


def run_record(loader: ClipLoader, before: tuple, started: float, fp: str, config: TensorizeConfig) -> dict:
    """The run details of a group's ``metadata.json``: batches, fallbacks, time, versions."""
    batch_sizes = {k: v - before[0].get(k, 0) for k, v in loader.stats.batch_sizes.items() if v - before[0].get(k, 0)}
    record = {
        "batch_sizes": {str(k): v for k, v in sorted(batch_sizes.items())},
        "decoder_fallbacks": loader.stats.fallbacks[before[1]:],
        "elapsed_s": round(time.perf_counter() - started, 3),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(),
        "fingerprint": fp,
    }
    shard = config.write.shard
    if shard.active:
        record["shard"] = {"index": shard.index, "count": shard.count}
    return record
