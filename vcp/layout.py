"""Dataset layout discovery (docs/design.md, "Layouts").

``RAW/<split>/<category>/<subcategory>/<video>``; a category folder that holds videos
directly is its own single subcategory (named like the category). Category indices are
the sorted category names over the whole tree, identical in every split.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .contract import split_key


class LayoutError(Exception):
    """The input tree does not have the expected layout (a usage error: exit 2)."""


@dataclass(frozen=True)
class Group:
    """The videos of one split/category/subcategory: one output ``.pt``."""

    split: str
    category: str
    subcategory: str
    files: tuple[Path, ...]

    @property
    def rel_dir(self) -> Path:
        return Path(self.split, self.category, self.subcategory)


@dataclass(frozen=True)
class RawTree:
    root: Path
    groups: tuple[Group, ...]
    categories: tuple[str, ...]

    @property
    def category_mapping(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.categories)}

    @property
    def splits(self) -> list[str]:
        return sorted({g.split for g in self.groups}, key=split_key)

    def groups_of(self, split: str) -> list[Group]:
        return [g for g in self.groups if g.split == split]

    def relpath(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()




def _visible(path: Path) -> bool:
    return not path.name.startswith((".", "_"))


def _files(directory: Path) -> tuple[Path, ...]:
    """Every visible entry that is not a folder: regular files, and also broken symbolic
    links, FIFOs and the like, so that the probe reports them instead of their vanishing."""
    return tuple(sorted(p for p in directory.iterdir() if _visible(p) and not p.is_dir()))


def file_stamp(path: Path) -> tuple[int, int]:
    """``(size, mtime_ns)`` of ``path`` (of the link itself when its target is missing)."""
    try:
        st = path.stat()
    except OSError:
        st = path.lstat()
    if not stat.S_ISREG(st.st_mode):
        return (0, st.st_mtime_ns)
    return (st.st_size, st.st_mtime_ns)


def prepare_output_dir(out: str | Path, *, inputs: Path | None, what: str) -> Path:
    """Check and create an output folder before any work: usage errors (exit 2) name it.

    Refused: an existing file in its place, a folder inside the input tree (its outputs
    would be read back as inputs), a folder that cannot be created or written.
    """
    from .devices import UsageError

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


def _utf8_folder(folder: Path, root: Path) -> None:
    """Split, category and subcategory names are labels and keys in every output, stored as
    UTF-8: a folder whose name is not valid UTF-8 is a usage error naming it."""
    if not utf8_name(folder):
        shown = os.fsencode(folder.relative_to(root)).decode("utf-8", "backslashreplace")
        raise LayoutError(f"folder name is not valid UTF-8: {shown} (rename it; names are stored as UTF-8)")


def discover_raw(root: str | Path, *, splits: list[str] | None = None) -> RawTree:
    """Scan ``root``; every non-hidden entry that is not a folder is an input (bad ones fail later)."""
    try:
        return _discover_raw(Path(root), splits)
    except OSError as exc:  # an unreadable folder: one line naming it
        raise LayoutError(f"cannot read {exc.filename or root}: {exc.strerror or exc}") from None


def _discover_raw(root: Path, splits: list[str] | None) -> RawTree:
    if not root.is_dir():
        raise LayoutError(f"raw video folder not found: {root}")
    groups: list[Group] = []
    categories: set[str] = set()
    split_dirs = sorted((d for d in root.iterdir() if d.is_dir() and _visible(d)), key=lambda d: split_key(d.name))
    for split_dir in split_dirs:
        _utf8_folder(split_dir, root)
        for cat_dir in sorted(d for d in split_dir.iterdir() if d.is_dir() and _visible(d)):
            _utf8_folder(cat_dir, root)
            categories.add(cat_dir.name)
            if splits is not None and split_dir.name not in splits:
                continue
            direct = _files(cat_dir)
            if direct:
                groups.append(Group(split_dir.name, cat_dir.name, cat_dir.name, direct))
            for sub_dir in sorted(d for d in cat_dir.iterdir() if d.is_dir() and _visible(d)):
                _utf8_folder(sub_dir, root)
                files = _files(sub_dir)
                if files:
                    groups.append(Group(split_dir.name, cat_dir.name, sub_dir.name, files))
    if not groups:
        raise LayoutError(
            f"no videos found under {root}: expected RAW/<split>/<category>/[<subcategory>/]<video>"
        )
    return RawTree(root=root, groups=tuple(groups), categories=tuple(sorted(categories)))
