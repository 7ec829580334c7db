"""The on-disk contract's names in one place (docs/design.md has the rules for people).

Nothing else in vcp spells a file or folder name, a shard part's name, the split order
or the glob that finds processed groups: they are here, so the writer and every reader
agree by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PT_NAME = "processed_data.pt"
META_NAME = "metadata.json"
PARTS_DIR = ".parts"  # beside the final files: one sharded rank's part files
SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}  # then any other split, by name


def split_key(name: str) -> tuple[int, str]:
    """Sort key: train, val, test, then the rest alphabetically."""
    return (SPLIT_ORDER.get(name, 3), name)


def features_filename(split: str, multi_scale: bool) -> str:
    return f"{split}_features_multiscale.h5" if multi_scale else f"{split}_features.h5"


def group_files(root: Path, name: str = PT_NAME, split: str = "*") -> list[Path]:
    """``root/<split>/<category>/<subcategory>/<name>``, sorted: the processed groups."""
    return sorted(Path(root).glob(f"{split}/*/*/{name}"))


# -- shard parts --------------------------------------------------------------------------------
PART_RE = re.compile(r"part-(\d{5})-of-(\d{5})")


def part_tag(index: int, count: int) -> str:
    return f"part-{index:05d}-of-{count:05d}"


def part_of(name: str) -> tuple[int, int] | None:
    """``(index, count)`` of a part file's name, or None."""
    m = PART_RE.search(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def tensor_part_names(tag: str) -> tuple[str, str]:
    """A rank's part of a group, in ``<group>/.parts/``: (archive, metadata)."""
    return f"{tag}.pt", f"{tag}.json"


def feature_part_name(final_name: str, tag: str) -> str:
    """A rank's part of ``FEATURES/<final_name>``, in ``FEATURES/.parts/``."""
    return f"{final_name}.{tag}.h5"


def feature_final_name(part_name: str) -> str:
    """The final file a features part belongs to (inverse of :func:`feature_part_name`)."""
    return part_name.split(".part-")[0]


# -- checkpoints of a run in progress, beside the outputs -------------------------------------------
RESUME_DIR = ".resume"  # FEATURES/.resume/: the committed segments of a features file being written
SEGMENT_SUFFIX = ".seg-"  # <features file>.<fingerprint prefix>.seg-000003.h5


def pt_checkpoint_names(name: str = PT_NAME) -> tuple[str, str]:
    """A group's tensorize checkpoint beside ``name``: (the buffer, a hard link; its record)."""
    return f".{name}.resume", f".{name}.resume.json"


def is_pt_checkpoint(filename: str, name: str = PT_NAME) -> bool:
    """Whether ``filename`` is one of :func:`pt_checkpoint_names` (or a temp file of one)."""
    return filename.startswith(f".{name}.resume")


def segment_name(prefix: str, number: int) -> str:
    """The ``number``-th committed segment of the features file whose segments start ``prefix``."""
    return f"{prefix}{SEGMENT_SUFFIX}{number:06d}.h5"


SEGMENT_RE = r"\.seg-(\d{6})\.h5"  # after the prefix: the segment's number


# -- how stored values are normalized ---------------------------------------------------------------
@dataclass(frozen=True)
class Normalization:
    """The per-channel mean/std stored values were normalized with (on 0..1 pixels)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


IMAGENET = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))  # the float32 contract's


# -- processed_data.pt: one definition for the writer and the checker ----------------------------
STORAGES = ("float32", "float16", "uint8")  # ``videos`` dtypes, by torch's own names
PT_REQUIRED = ("videos", "labels", "filenames", "category_mapping")


def storage_dtype(storage: str):
    """``"float32"`` -> ``torch.float32`` (and float16, uint8)."""
    import torch

    if storage not in STORAGES:
        raise KeyError(storage)
    return getattr(torch, storage)


def storage_name(dtype) -> str:
    """``torch.uint8`` -> ``"uint8"``."""
    return str(dtype).removeprefix("torch.")


def pt_archive(*, videos, labels, filenames, category_mapping, normalization, pair_id) -> dict:
    """What a ``processed_data.pt`` holds: the required keys, then its self-description
    (``classes``, the names by index; ``storage`` from the ``videos`` dtype, ``normalization`` {mean, std}, ``pair_id``)."""
    return {
        "videos": videos,
        "labels": labels,
        "filenames": list(filenames),
        "category_mapping": dict(category_mapping),
        "classes": class_list(category_mapping),
        "storage": storage_name(videos.dtype),
        "normalization": dict(normalization),
        "pair_id": pair_id,
    }


def pt_problem(data) -> str | None:
    """Why a loaded ``processed_data.pt`` breaks the schema of :func:`pt_archive`, or None."""
    import torch

    if not isinstance(data, dict):
        return f"expected a dict, got {type(data).__name__}"
    missing = [k for k in PT_REQUIRED if k not in data]
    if missing:
        return f"missing keys: {', '.join(missing)}"
    v, labels, names, mapping = (data[k] for k in PT_REQUIRED)
    if not isinstance(v, torch.Tensor) or v.ndim != 5 or v.shape[2] != 3:
        return f"videos must be a [N, T, 3, H, W] tensor, got {getattr(v, 'shape', type(v).__name__)}"
    if storage_name(v.dtype) not in STORAGES:
        return f"videos dtype {v.dtype} is not one of {', '.join(STORAGES)}"
    if "storage" in data and data["storage"] != storage_name(v.dtype):
        return f"videos dtype {v.dtype} contradicts the archive's storage {data['storage']!r}"
    needed = (v.storage_offset() + (v.numel() and sum((s - 1) * st for s, st in zip(v.shape, v.stride(), strict=True)) + 1)) * v.element_size()
    if v.untyped_storage().nbytes() < needed:
        return f"videos declares {tuple(v.shape)} but the archive holds {v.untyped_storage().nbytes()} bytes of it (truncated or crafted)"
    if not isinstance(labels, torch.Tensor) or labels.shape != (v.shape[0],) or labels.dtype != torch.int64:
        return f"labels must be an int64 [N={v.shape[0]}] tensor"
    if not isinstance(names, list) or len(names) != v.shape[0] or not all(isinstance(n, str) for n in names):
        return f"filenames must be a list of {v.shape[0]} names (strings)"
    from vcp.store.names import component_problem

    bad = next(((n, why) for n in names if (why := component_problem(n))), None)
    if bad:  # a file name becomes part of a path (the features' filenames, export's files)
        return f"filename {bad[0]!r} is not a file name ({bad[1]})"
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and type(i) is int for k, i in mapping.items()):
        return "category_mapping must be a dict of category -> int"
    outside = sorted(set(labels.tolist()) - set(mapping.values()) - {UNLABELED})
    if outside:
        return f"labels {outside[:5]} are not indices of its category_mapping {mapping}"
    return None


# -- metadata.json beside each processed_data.pt ---------------------------------------------------
# The settings every shard part of a group must agree on (merge checks them; a test checks
# that the writer, vcp/metadata.py, records each).
GROUP_SETTINGS = (
    "frames_per_video", "image_size", "sampling_strategy", "clip_duration", "seed", "augmentation", "storage", "normalization",
)
# What differs from run to run and is summed or dropped when parts are merged.
RUN_SPECIFIC = ("batch_sizes", "decoder_fallbacks", "elapsed_s", "created_at", "shard")


# -- features HDF5 (<split>_features[_multiscale].h5) ----------------------------------------------
# Attrs that describe the file's layout: written by the writer, recomputed by merge.
H5_LAYOUT_ATTRS = ("num_videos", "max_frames", "feature_dim", "category_mapping", "classes", "multi_scale")
# Attrs every shard part of a split must agree on.
H5_SAME_ACROSS_PARTS = (
    "backbone", "weights", "scales", "precision", "multi_scale", "max_frames", "feature_dim", "category_mapping", "fingerprint",
)
H5_SHARD_ATTRS = ("shard_index", "shard_count")


# -- class labels: the same in every output ----------------------------------------------------------
UNLABELED = -1  # the label of a video without a class (a test split, a collection to embed)


def class_list(mapping: dict[str, int]) -> list[str | None]:
    """The class names by index (``classes[label]`` is the name): the ``classes`` every output
    records beside ``category_mapping``. An index no name has (an output written before
    mappings were whole) is ``None``; ``len(classes)`` is the classifier's width."""
    out: list[str | None] = [None] * (max(mapping.values(), default=-1) + 1)
    for name, index in mapping.items():
        if index >= 0:
            out[index] = name
    return out
