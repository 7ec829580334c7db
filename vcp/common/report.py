"""Per-file error lines (``vcp: error: <file>: <reason>``), one line each.

Bad input files are data, not crashes: each gets one stderr line as it is found. Under
torchrun every rank stays quiet while it works and rank 0 prints the whole job's list
once, from the merged outputs (``vcp.stages.merge.merged_failures``).
"""

from __future__ import annotations

import sys

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
