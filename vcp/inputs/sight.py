"""What is refused on sight, without decoding: what the dry run names and the real run
rejects first (the real run probes every file discovery takes, whatever its extension)."""

from __future__ import annotations

import stat
from pathlib import Path

from vcp.common.report import one_line
from vcp.store.folders import utf8_name


def rejected_on_sight(path: Path) -> str | None:
    """Why ``path`` will be rejected without decoding it, or None. (The real run probes
    every file discovery takes, whatever its extension: so does this.)"""
    try:
        st = path.stat()
    except OSError:
        return "broken symbolic link" if path.is_symlink() else "cannot be read"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    if not utf8_name(path):
        return "file name is not valid UTF-8"
    return None


def rejected_lines(files) -> list[str]:
    """``name: why`` for each of ``files`` that will be rejected on sight."""
    return [one_line(f"{p.name}: {why}") for p in files if (why := rejected_on_sight(p))]
