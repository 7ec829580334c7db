"""Per-file error lines (``vcp: error: <file>: <reason>``) and the job summary under a launcher.

Bad input files are data, not crashes: each gets one stderr line as it is found. Under
torchrun every rank stays quiet while it works and rank 0 prints the whole job's list
once, from the merged outputs (:func:`merged_failures`).
"""

from __future__ import annotations

import sys
from pathlib import Path

_quiet = {"on": False}


def quiet_file_errors(on: bool) -> None:
    _quiet["on"] = on


def one_line(text) -> str:
    """``text`` with control characters escaped (a file name may hold a newline), so that
    each error stays one line a script can split."""
    return "".join(c if c.isprintable() else _escaped(c) for c in str(text))


def _escaped(c: str) -> str:
    if "\udc80" <= c <= "\udcff":  # a byte of a file name that is not UTF-8, as Python keeps it
        return f"\\x{ord(c) - 0xDC00:02x}"
    return c.encode("unicode_escape").decode()


def file_error(where, reason: str) -> None:
    if not _quiet["on"]:
        print(f"vcp: error: {one_line(where)}: {one_line(reason)}", file=sys.stderr, flush=True)


def merged_failures(paths: list[Path]) -> list[tuple[str, str]]:
    """``(file, reason)`` recorded in merged outputs: metadata.json ``failed`` of each
    group, ``failed_files`` of each HDF5."""
    from .contract import META_NAME
    from .readers import failed_files_attr, open_features, read_json

    out = []
    for path in paths:
        if path.suffix == ".h5":
            with open_features(path) as h5:
                out += failed_files_attr(h5)
        else:
            meta = read_json(path.parent / META_NAME) or {}
            out += [(str(path.parent / f["file"]), f["reason"]) for f in meta.get("failed", [])]
    return sorted(set(out))
