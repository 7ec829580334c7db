"""Dataset layout discovery (docs/design.md, "Layouts").

``RAW/<split>/<category>/<subcategory>/<video>``; a category folder that holds videos
directly is its own single subcategory (named like the category). Category indices are
the sorted category names over the whole tree, identical in every split.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from vcp.common.errors import LayoutError
from vcp.store.contract import split_key
from vcp.store.folders import file_stamp, prepare_output_dir, utf8_name  # noqa: F401 - re-exported


class Video(NamedTuple):
    """One video to process: its file, its ``path`` as a manifest writes it (None: a RAW
    tree's, named by its path relative to RAW) and the ``[start, end)`` seconds to sample in
    (None: the whole video)."""

    file: Path
    path: str | None = None
    segment: tuple[float | None, float | None] | None = None


@dataclass(frozen=True)
class Group:
    """The videos of one split/category/subcategory: one output ``.pt``."""

    split: str
    category: str
    subcategory: str
    videos: tuple[Video, ...]
    label: str | None = None  # the class name (None: the category's name; "": unlabeled videos)

    @functools.cached_property
    def files(self) -> tuple[Path, ...]:
        return tuple(v.file for v in self.videos)

    @functools.cached_property
    def rows(self) -> list | None:
        """A manifest group's rows as its fingerprint counts them (label, paths, segments);
        None for a RAW tree's group (its files are the whole story)."""
        if not any(v.path is not None for v in self.videos):
            return None
        return [self.label, [v.path for v in self.videos], [v.segment for v in self.videos]]

    @functools.cached_property
    def rel_dir(self) -> Path:
        return Path(self.split, self.category, self.subcategory)

    @property
    def class_name(self) -> str:
        return self.category if self.label is None else self.label


@dataclass(frozen=True)
class Ignored:
    """An entry discovery did not take, and why (:data:`IGNORED_KINDS`)."""

    kind: str
    relpath: str


# Why an entry is not taken, in the order the summary names them.
IGNORED_KINDS = {
    "hidden": "hidden",  # a name starting with "."
    "non-video": "non-video",  # a known non-video extension (README.txt, Thumbs.db, labels.csv...)
    "outside": "outside the layout",  # a file directly in RAW or in a split folder
    "nested": "nested deeper than the layout",  # a folder inside a subcategory folder
    "link": "folder link leading outside RAW",
}

# Extensions no video container uses: sidecar files found beside videos in real datasets.
NON_VIDEO_SUFFIXES = frozenset(
    """.txt .md .rst .json .jsonl .csv .tsv .xml .yaml .yml .toml .ini .cfg .conf .log .nfo .srt .vtt .ass .ssa
    .sub .idx .lrc .jpg .jpeg .png .gif .bmp .tif .tiff .webp .heic .svg .ico .pdf .html .htm .db .sqlite .pkl
    .pickle .npy .npz .h5 .hdf5 .pt .pth .zip .tar .gz .tgz .bz2 .xz .7z .rar .py .sh .bat .exe .doc .docx
    .xls .xlsx .md5 .sha1 .sha256 .torrent .url .lnk .mp3 .wav .flac .aac .m4a .opus .wma""".split()
)


def ignored_kind(path: Path) -> str | None:
    """Why a file beside the videos is not a video to process, or None (it is probed)."""
    if not _visible(path):
        return "hidden"
    if path.suffix.lower() in NON_VIDEO_SUFFIXES:
        return "non-video"
    return None


def ignored_summary(ignored, *, names: int = 3) -> str | None:
    """``ignored: 3 hidden, 2 non-video (README.txt, Thumbs.db)`` or None when nothing was."""
    parts = []
    for kind, words in IGNORED_KINDS.items():
        found = [i.relpath for i in ignored if i.kind == kind]
        if not found:
            continue
        # non-video files by name (a README.txt in every class folder is one name), the rest by path
        listed = list(dict.fromkeys(Path(f).name for f in found)) if kind == "non-video" else found
        shown = "" if kind == "hidden" else " (" + ", ".join(listed[:names]) + (
            f", +{len(listed) - names} more" if len(listed) > names else "") + ")"
        parts.append(f"{len(found)} {words}{shown}")
    return "ignored: " + ", ".join(parts) if parts else None


@dataclass(frozen=True)
class RawTree:
    root: Path
    groups: tuple[Group, ...]
    categories: tuple[str, ...]
    ignored: tuple[Ignored, ...] = ()
    selected: tuple[str, ...] | None = None  # the splits asked for (None: all); the mapping spans all
    classes: dict[str, int] | None = None  # the class indices when not the sorted names (--classes, a manifest's)
    manifest: Path | None = None  # the manifest the groups were read from (None: a RAW tree)

    @functools.cached_property
    def _mapping(self) -> dict[str, int]:
        if self.classes is not None:
            return dict(self.classes)
        return {name: i for i, name in enumerate(self.categories)}

    @property
    def category_mapping(self) -> dict[str, int]:
        """The dataset's whole class list, ``{name: index}``, indices 0..K-1."""
        return dict(self._mapping)

    @functools.cached_property
    def classes_id(self) -> str:
        """A digest of the whole class list: part of every output's fingerprint (computed
        once: a tree of 12,000 classes has 12,000 groups)."""
        import hashlib
        import json

        from vcp.store.contract import class_list

        return hashlib.sha256(json.dumps(class_list(self._mapping)).encode()).hexdigest()

    def label_of(self, group: Group) -> int:
        """The label every video of ``group`` gets: its class index, or -1 when unlabeled."""
        from vcp.store.contract import UNLABELED

        return UNLABELED if group.label == "" else self._mapping[group.class_name]

    @property
    def splits(self) -> list[str]:
        return sorted({g.split for g in self.groups}, key=split_key)

    def groups_of(self, split: str) -> list[Group]:
        return [g for g in self.groups if g.split == split]

    def relpath(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def item(self, video: Video) -> tuple:
        """``(file, name, segment)``: what the loader takes for ``video``. ``name`` names the
        file in messages and seeds its sampling (:meth:`name_of`)."""
        return (str(video.file), self.name_of(video), video.segment)

    def name_of(self, video: Video) -> str:
        """The ``path`` outputs record for ``video``: the manifest's, else relative to RAW."""
        return video.path if video.path is not None else self.relpath(video.file)




def _visible(path: Path) -> bool:
    """Only names starting with ``.`` are hidden (``_x`` is a Kinetics id, not a hidden file)."""
    return not path.name.startswith(".")


class _Scan:
    """One folder's entries, sorted: the folders to descend into and the files, with
    everything not taken recorded in ``ignored``."""

    def __init__(self, root: Path, resolved_root: Path, ignored: list[Ignored]):
        self.root, self.resolved_root, self.ignored = root, resolved_root, ignored

    def _note(self, kind: str, path: Path) -> None:
        self.ignored.append(Ignored(kind, path.relative_to(self.root).as_posix()))

    def entries(self, directory: Path) -> list[tuple[Path, bool, bool]]:
        """``(path, is a folder (links followed), is a link)`` of each entry, sorted by name:
        one ``scandir`` a folder (its entry types need no ``stat`` on most file systems)."""
        out = []
        with os.scandir(directory) as it:
            for entry in it:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                out.append((directory / entry.name, is_dir, entry.is_symlink()))
        out.sort(key=lambda e: e[0])
        return out

    def _folder_ok(self, path: Path, is_link: bool) -> bool:
        """A folder, or a link to one that stays inside RAW (not to one of its own parents)."""
        if not is_link:
            return True
        target = path.resolve()
        inside = self.resolved_root == target or self.resolved_root in target.parents
        if inside and target not in path.parent.resolve().parents and target != path.parent.resolve():
            return True
        self._note("link", path)
        return False

    def folders(self, directory: Path, entries=None) -> list[Path]:
        out = []
        for p, is_dir, is_link in entries if entries is not None else self.entries(directory):
            if is_dir:
                if not _visible(p):
                    self._note("hidden", p)
                elif self._folder_ok(p, is_link):
                    out.append(p)
        return out

    def files(self, directory: Path, *, take: bool = True, entries=None) -> tuple[Path, ...]:
        """Every entry that is not a folder: regular files, and also broken symbolic links,
        FIFOs and the like, so that the probe reports them instead of their vanishing;
        hidden and non-video files are recorded as ignored (all of them when not ``take``)."""
        out = []
        for p, is_dir, _ in entries if entries is not None else self.entries(directory):
            if is_dir:
                continue
            kind = ignored_kind(p) or (None if take else "outside")
            if kind:
                self._note(kind, p)
            else:
                out.append(p)
        return tuple(out)


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
    ignored: list[Ignored] = []
    scan = _Scan(root, root.resolve(), ignored)
    listed = scan.entries(root)  # each folder is listed once, for its files and its folders
    scan.files(root, take=False, entries=listed)
    for split_dir in sorted(scan.folders(root, entries=listed), key=lambda d: split_key(d.name)):
        _utf8_folder(split_dir, root)
        wanted = splits is None or split_dir.name in splits
        listed = scan.entries(split_dir)
        if wanted:
            scan.files(split_dir, take=False, entries=listed)
        # every split's categories make the mapping; only the wanted splits' entries are reported
        for cat_dir in (scan if wanted else _Scan(root, scan.resolved_root, [])).folders(split_dir, entries=listed):
            _utf8_folder(cat_dir, root)
            categories.add(cat_dir.name)
            if not wanted:
                continue
            entries = scan.entries(cat_dir)  # listed once for its files and its folders
            direct = scan.files(cat_dir, entries=entries)
            if direct:
                groups.append(Group(split_dir.name, cat_dir.name, cat_dir.name, tuple(map(Video, direct))))
            for sub_dir in scan.folders(cat_dir, entries=entries):
                _utf8_folder(sub_dir, root)
                listed = scan.entries(sub_dir)
                files = scan.files(sub_dir, entries=listed)
                for nested in scan.folders(sub_dir, entries=listed):
                    scan._note("nested", nested)
                if files:
                    groups.append(Group(split_dir.name, cat_dir.name, sub_dir.name, tuple(map(Video, files))))
    if splits is not None:
        missing = sorted(set(splits) - {g.split for g in groups})
        if missing:
            raise LayoutError(f"no videos for split(s) {', '.join(missing)} under {root}")
    if not groups:
        found = ignored_summary(ignored)
        raise LayoutError(
            f"no videos found under {root}: expected RAW/<split>/<category>/[<subcategory>/]<video>"
            + (f" ({found})" if found else "")
        )
    return RawTree(root=root, groups=tuple(groups), categories=tuple(sorted(categories)), ignored=tuple(ignored),
                   selected=tuple(splits) if splits is not None else None)
