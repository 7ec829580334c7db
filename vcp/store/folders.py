"""Files and folders every layer meets: a file's stamp (size, mtime), an output folder
checked and made before any work, names that must be stored as UTF-8."""

from __future__ import annotations

import stat
import tempfile
from pathlib import Path

from vcp.common.errors import UsageError


def file_stamp(path: Path) -> tuple[int, int]:
    """``(size, mtime_ns)`` of ``path`` (of the link itself when its target is missing;
    ``(-1, -1)`` when nothing is there: a manifest's missing video is that video's error,
    found when it is probed, not a stop before any work)."""
    try:
        st = path.stat()
    except OSError:
        try:
            st = path.lstat()
        except OSError:
            return (-1, -1)
    if not stat.S_ISREG(st.st_mode):
        return (0, st.st_mtime_ns)
    return (st.st_size, st.st_mtime_ns)


def prepare_output_dir(out: str | Path, *, inputs: Path | None, what: str) -> Path:
    """Check and create an output folder before any work: usage errors (exit 2) name it.

    Refused: an existing file in its place, a folder inside the input tree (its outputs
    would be read back as inputs), a folder that cannot be created or written.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{what} {out} exists and is not a folder")
    resolved = out.resolve()
    source = Path(inputs).resolve() if inputs is not None else None
    if source is not None and (resolved == source or source in resolved.parents):
        raise UsageError(f"{what} {out} is inside the input folder {inputs}: its outputs would be read as inputs; choose a folder outside it")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".vcp-write-check."):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write to {what} {out}: {exc.strerror or exc}") from None
    return out


def utf8_name(path: Path) -> bool:
    """Whether ``path``'s name is valid UTF-8 (Python keeps undecodable bytes as surrogates)."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
