"""Names that become paths: nothing vcp builds from a stored or found name leads outside
the folder it is joined to.

Stored names (HDF5 ``filenames``, ``.pt`` ``filenames``, ``metadata.json`` records) and
names taken from file or folder names (a split from ``<split>_features.h5``, categories
from folders) are data: a features file is downloaded and shared, so its names may have
been crafted. :func:`relpath_problem` says why a name cannot be a relative path of plain
components (``..``, absolute, backslashes, control characters, empty components);
:func:`confined` joins a checked name to a folder and refuses a result that resolves
outside it (a symbolic link inside the folder that points elsewhere).
"""

from __future__ import annotations

import os
from pathlib import Path


class OutsideError(ValueError):
    """A name that would lead outside the folder it is joined to."""


NAME_MAX = 255  # bytes in one path component (ext4, xfs, btrfs, NTFS in UTF-16 units)


def component_problem(name) -> str | None:
    """Why ``name`` cannot be one path component (a split, category, subcategory or file
    name), or None."""
    if not isinstance(name, str):
        return f"not a string ({type(name).__name__})"
    if not name:
        return "empty name"
    if name in (".", ".."):
        return f"{name!r} is not a name"
    if "/" in name or "\\" in name:
        return "holds a path separator"
    if any(not c.isprintable() for c in name):
        return "holds a control character" if "\x00" not in name else "holds a NUL byte"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "not valid UTF-8"
    if size > NAME_MAX:
        return f"{size} bytes long, over the {NAME_MAX} bytes a file system allows in a name"
    return None


def relpath_problem(name) -> str | None:
    """Why ``name`` cannot be a relative path of plain components joined by ``/``, or None."""
    if not isinstance(name, str):
        return f"not a string ({type(name).__name__})"
    if not name:
        return "empty name"
    if name.startswith("/"):
        return "an absolute path"
    if "\\" in name:
        return "holds a backslash"
    for part in name.split("/"):
        if part == "":
            return "has an empty path component"
        if part in (".", ".."):
            return f"has a {part!r} component"
        problem = component_problem(part)
        if problem:
            return problem
    return None


def confined(root: Path, name: str) -> Path:
    """``root / name`` when ``name`` is a plain relative path and the result, symbolic
    links resolved, stays inside ``root``; else :class:`OutsideError` saying why."""
    problem = relpath_problem(name)
    if problem:
        raise OutsideError(problem)
    target = root / name
    base = root.resolve()
    if base not in target.resolve().parents:
        raise OutsideError(f"leads outside {root} (a symbolic link inside it points elsewhere)")
    return target


class Confinement:
    """Whether a path stays inside ``root`` once its folders and its own symbolic link (if
    it is one) are resolved; each folder is resolved and listed once."""

    def __init__(self, root: Path):
        self.root = os.path.realpath(root)
        self.folders: dict[str, tuple[bool, str, frozenset]] = {}  # folder -> (inside, real folder, link names)

    def _within(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep)

    def inside(self, path: str) -> bool:
        folder, name = os.path.split(path)
        known = self.folders.get(folder)
        if known is None:
            real = os.path.realpath(folder)
            try:
                with os.scandir(real) as entries:
                    links = frozenset(e.name for e in entries if e.is_symlink())
            except OSError:
                links = frozenset()
            known = self.folders[folder] = (self._within(real), real, links)
        within, real, links = known
        if not within or name in ("..", "."):
            return False
        return name not in links or self._within(os.path.realpath(os.path.join(real, name)))
