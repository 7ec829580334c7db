"""Write-to-temp-then-rename helpers: no half-written output file is ever visible."""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
from pathlib import Path

NAME_MAX = 255  # bytes in one file name (Linux, macOS)
_PID_ROOM = 24  # ".<pid>.tmp" with room for any pid


def tmp_stem(name: str) -> str:
    """The hidden prefix of ``name``'s temp files: ``.<name>``, or, where that would not fit
    in a file name beside the pid, the name cut short plus a hash of the whole name."""
    stem = f".{name}"
    if len(os.fsencode(stem)) + _PID_ROOM <= NAME_MAX:
        return stem
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    keep = os.fsencode(name)[: NAME_MAX - _PID_ROOM - len(digest) - 2].decode("utf-8", "ignore")
    return f".{keep}~{digest}"


def tmp_path_for(final: Path) -> Path:
    """Hidden temp name next to ``final`` (same filesystem, so the rename is atomic); it
    fits wherever the final name fits."""
    return final.with_name(f"{tmp_stem(final.name)}.{os.getpid()}.tmp")


def tmp_files_of(directory: Path, name: str) -> list[Path]:
    """The temp files of ``name`` in ``directory`` (any owner), by :func:`tmp_stem`."""
    return sorted(Path(directory).glob(f"{glob.escape(tmp_stem(name))}.*tmp"))


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
    from vcp.store.lock import pid_alive

    if directory.is_dir():
        for name in names:
            for stale in tmp_files_of(directory, name):
                owner = tmp_owner(stale)
                if owner is None or owner == os.getpid() or pid_alive(owner):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()


def remove_dead_tmp_under(root: Path) -> int:
    """Remove every vcp temp file under ``root`` (links not followed) whose owner process is
    dead; the number removed. Only for a caller holding ``root``'s exclusive lock (export,
    merge): no other vcp process can be writing there."""
    from vcp.store.lock import pid_alive

    removed = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            owner = tmp_owner(path) if name.startswith(".") else None
            if owner is None or owner == os.getpid() or pid_alive(owner) or path.is_symlink():
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def name_write_error(exc: BaseException | None, path: Path) -> None:
    """Tag a failed write (a full disk, a quota, HDF5's "write failed") with the output it
    was writing, so its one error line names the file (``exc.vcp_file``)."""
    if isinstance(exc, OSError) and getattr(exc, "vcp_file", None) is None:
        if exc.errno in _WRITE_ERRNOS or "write" in str(exc).lower():
            exc.vcp_file = path
