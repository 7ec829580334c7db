"""The on-disk contract's names in one place (docs/design.md has the rules for people).

Nothing else in vcp spells a file or folder name, a shard part's name, the split order
or the glob that finds processed groups: they are here, so the writer and every reader
agree by construction.
"""

from __future__ import annotations

import re
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
