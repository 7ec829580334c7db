"""Write-to-temp-then-rename helpers: no half-written output file is ever visible."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def tmp_path_for(final: Path) -> Path:
    """Hidden temp name next to ``final`` (same filesystem, so the rename is atomic)."""
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def replace_into(tmp: Path, final: Path) -> None:
    """fsync ``tmp`` and atomically rename it to ``final``."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)


def tmp_owner(path: Path) -> int | None:
    """The pid in a temp name made by :func:`tmp_path_for` (``.<name>.<pid>.tmp``)."""
    parts = path.name.rsplit(".", 2)
    if len(parts) == 3 and parts[2] == "tmp" and parts[1].isdigit():
        return int(parts[1])
    return None


def remove_stale_tmp(directory: Path, names) -> None:
    """Remove temp files a killed run left for the outputs ``names`` in ``directory``.

    Only this process's own targets (other ranks of a sharded run write other names in the
    same folder at the same time), only files whose owner process is provably dead (its
    pid is in the name).
    """
    from .lock import pid_alive

    if directory.is_dir():
        for name in names:
            for stale in directory.glob(f".{name}.*tmp"):
                owner = tmp_owner(stale)
                if owner is None or owner == os.getpid() or pid_alive(owner):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
