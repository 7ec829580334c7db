"""Disk space: what a run will write, against what the output's file system has free.

Estimates, per split: tensorize ``videos x T x 3 x S x S x bytes per value`` of the groups
it will (re)write; extract ``videos x rows x D x 4`` bytes, counted uncompressed (gzip
only shrinks it: an upper bound). ``--dry-run`` shows them beside the free space; a real
run whose estimate exceeds the free space stops before any work (exit 2) unless
``--no-space-check`` is given.
"""

from __future__ import annotations

import contextlib
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


SMALLER_SIZE, SMALLER_FRAMES = 128, 16
FEATURE_DIM = 1280  # vcp extract's default backbone (efficientnet_v2_s)


def tensorize_ways(clips: int, groups: int, frames: int, size: int, storage: str, scales) -> list[tuple[str, int]]:
    """The smaller ways to the same ``clips`` videos (in ``groups`` groups), each with about
    what it writes, counted as the run counts it: compact storage, features straight from the
    videos, a smaller frame size or fewer frames."""
    from vcp.stages.multiscale import output_rows

    def tensors(t: int, s: int, kind: str) -> int:
        return tensorize_bytes(clips, t, s, kind) + groups * PT_OVERHEAD

    ways = []
    if storage != "uint8":
        ways.append(("--storage uint8", tensors(frames, size, "uint8")))
    ways.append((f"vcp extract --from-videos (efficientnet_v2_s features, {frames} frames)",
                 features_bytes(clips, output_rows(frames, scales), FEATURE_DIM)))
    if size > SMALLER_SIZE:
        ways.append((f"--size {SMALLER_SIZE}", tensors(frames, SMALLER_SIZE, storage)))
    if frames > SMALLER_FRAMES:
        ways.append((f"--frames {SMALLER_FRAMES}", tensors(SMALLER_FRAMES, size, storage)))
    return ways


def ways_text(free: int, ways: list[tuple[str, int]]) -> str:
    """``ways that fit: --storage uint8 (about 156 GiB), ...`` (the smaller ways when none fits)."""
    fit = [(w, n) for w, n in ways if n <= free]
    shown = fit or ways
    return (("ways that fit: " if fit else "smaller ways: ") + ", ".join(f"{w} (about {human_bytes(n)})" for w, n in shown)
            if shown else "")


def check_space(out: Path, needed: int, *, skip: bool, ways: list[tuple[str, int]] = ()) -> None:
    """Refuse a run whose estimate exceeds the free space at ``out`` (one line, both numbers,
    and the smaller ``ways`` with their sizes)."""
    if skip or needed <= 0:
        return
    free = free_bytes(out)
    if needed > free:
        other = ways_text(free, list(ways))
        raise UsageError(
            f"{out} has {human_bytes(free)} free but this run will write about {human_bytes(needed)}; "
            + (f"{other}; or " if other else "") + "free some space, write elsewhere, or pass --no-space-check"
        )


@contextlib.contextmanager
def removed_if_refused(out: Path, existed: bool):
    """A run refused for space leaves no output folder it made (an empty one stays unmade)."""
    try:
        yield
    except UsageError:
        if not existed:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty
        raise


def free_caption(out: Path, needed: int, ways: list[tuple[str, int]] = (), *, detail: str = "") -> str:
    """``free at OUT: 120.3 GiB, this run writes about 4.2 GiB`` for a dry run, and the verdict
    when it would not fit."""
    free = free_bytes(out)
    text = f"free at {out}: {human_bytes(free)}, this run writes about {human_bytes(needed)}{detail}"
    if needed > free:
        other = ways_text(free, list(ways))
        text += "\nTHIS RUN WOULD NOT FIT: it would be refused" + (f"; {other}" if other else "")
    return text
