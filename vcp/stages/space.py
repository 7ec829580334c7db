"""Disk space: what a run will write, against what the output's file system has free.

Estimates, per split: tensorize ``videos x T x 3 x S x S x bytes per value`` of the groups
it will (re)write; extract ``videos x rows x D x 4`` bytes, counted uncompressed (gzip
only shrinks it: an upper bound). ``--dry-run`` shows them beside the free space; a real
run whose estimate exceeds the free space stops before any work (exit 2) unless
``--no-space-check`` is given.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from vcp.common.errors import UsageError
from vcp.common.progress import human_bytes

PT_OVERHEAD = 64 << 10  # an archive's layout and its metadata.json, per group (generous)


def tensorize_bytes(videos: int, frames: int, size: int, storage: str) -> int:
    per_value = {"float32": 4, "float16": 2, "uint8": 1}[storage]
    return videos * frames * 3 * size * size * per_value


def features_bytes(videos: int, rows: int, dim: int) -> int:
    return videos * rows * dim * 4


def free_bytes(path: Path) -> int:
    """Free bytes where ``path`` is (or would be made: its nearest existing folder)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def check_space(out: Path, needed: int, *, skip: bool) -> None:
    """Refuse a run whose estimate exceeds the free space at ``out`` (one line, both numbers)."""
    if skip or needed <= 0:
        return
    free = free_bytes(out)
    if needed > free:
        raise UsageError(
            f"{out} has {human_bytes(free)} free but this run will write about {human_bytes(needed)}; "
            "free some space, write elsewhere, or pass --no-space-check"
        )


def free_caption(out: Path, needed: int) -> str:
    """``free at OUT: 120.3 GiB, this run writes about 4.2 GiB`` for a dry run."""
    return f"free at {out}: {human_bytes(free_bytes(out))}, this run writes about {human_bytes(needed)}"
