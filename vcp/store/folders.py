"""Files and folders every layer meets: a file's stamp (size, mtime), an output folder
checked and made before any work, names that must be stored as UTF-8."""

from __future__ import annotations

import contextlib
import os
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


def own_file_problem(path: Path) -> str | None:
    """Why ``path`` is not a regular file of its own folder (``lstat``: a symbolic link is
    not followed), or None."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "no such file"
    except NotADirectoryError:
        return "a path under a file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if stat.S_ISDIR(st.st_mode):
        return "a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a FIFO, socket or device)"
    return None


def link_under(root: Path, rel: Path) -> Path | None:
    """The first folder of ``root/rel`` below ``root`` that is a symbolic link (writes would
    leave ``root`` through it), or None."""
    path = Path(root)
    for part in Path(rel).parts:
        path = path / part
        if path.is_symlink():
            return path
        if not path.exists():
            return None
    return None


def open_own(path: Path, mode: str):
    """``open(path, mode)`` ("wb", "rb+" or "rb") for a regular file of its own folder: a
    link at ``path`` is never followed (``O_NOFOLLOW``), a FIFO never blocks (``O_NONBLOCK``)
    and anything but a regular file is an ``OSError`` naming it."""
    flags = {"wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "rb+": os.O_RDWR, "rb": os.O_RDONLY}[mode]
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path}: not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def remove_entry(path: Path) -> None:
    """Remove whatever is at ``path`` (a file, a link itself, a FIFO, a folder and what it
    holds), never what a link points to; nothing there is fine."""
    import shutil

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


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
