"""The manifest: one CSV row per video, the input any dataset can be written as
(docs/design.md, "Manifest").

``split,path,label`` required, ``index,category,subcategory,start,end`` optional. ``path``
is relative to a root (``--root``, default the manifest's folder) or absolute; ``label`` is
the class name, empty for an unlabeled video (label -1; category ``unlabeled``);
``category`` defaults to ``label`` and ``subcategory`` to ``category``; ``start``/``end``
(seconds, either may be empty) restrict sampling to ``[start, end)``.

The class list (every output records it whole, indices 0..K-1) comes from ``--classes``,
else from ``<manifest>.classes.json`` beside the manifest (``vcp manifest`` writes it),
else from the ``index`` column (which must then number 0..K-1 without a gap), else from
the sorted labels. An ``index`` column and a class list must agree row by row.
:func:`read_manifest` checks every row and returns the same :class:`RawTree` a RAW folder
gives, so everything downstream works on either. Every problem is a :class:`LayoutError`
(exit 2) naming the manifest and the line.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import math
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from vcp.common.errors import LayoutError
from vcp.common.report import one_line
from vcp.inputs.classes import is_index, manifest_classes
from vcp.inputs.layout import Group, RawTree, Video
from vcp.store.contract import split_key
from vcp.store.names import Confinement, component_problem
from vcp.store.readers import regular_file_problem

REQUIRED = ("split", "path", "label")
UNLABELED_CATEGORY = "unlabeled"  # the folder of a split's unlabeled videos (label -1)
OPTIONAL = ("index", "category", "subcategory", "start", "end")
COLUMNS = REQUIRED + OPTIONAL


class Row(NamedTuple):  # a tuple: 100,000 of them are made per read
    line: int
    split: str
    path: str
    label: str
    index: int | None = None
    category: str = ""
    subcategory: str = ""
    start: float | None = None
    end: float | None = None

    @property
    def segment(self) -> tuple[float | None, float | None] | None:
        return None if self.start is None and self.end is None else (self.start, self.end)


class _Reader:
    """Header and rows of one manifest, each value checked, problems naming file and line."""

    def __init__(self, path: Path):
        self.path = path
        self._names: dict[str, str | None] = {}  # name -> why it cannot be a folder (labels repeat)

    def fail(self, line: int | None, why: str):
        where = f"{self.path}, line {line}" if line else str(self.path)
        raise LayoutError(one_line(f"manifest {where}: {why}"))

    def text(self) -> str:
        problem = regular_file_problem(self.path)
        if problem:
            self.fail(None, problem)
        data = self.path.read_bytes()
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            self.fail(data[: exc.start].count(b"\n") + 1, "not valid UTF-8 (manifests are UTF-8 text)")

    def rows(self) -> list[Row]:
        reader = csv.reader(io.StringIO(self.text(), newline=""))
        header = next(reader, None)
        if header is None:
            self.fail(None, "empty file: expected a header line " + ",".join(REQUIRED) + "[," + ",".join(OPTIONAL) + "]")
        header = [h.strip() for h in header]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            first = "no header line" if set(header).isdisjoint(COLUMNS) else f"missing column(s) {', '.join(missing)}"
            self.fail(1, f"{first}: the first line names the columns, {','.join(REQUIRED)} required, "
                         f"{','.join(OPTIONAL)} optional")
        unknown = [h for h in header if h not in COLUMNS]
        if unknown or len(set(header)) != len(header):
            what = f"unknown column(s) {', '.join(unknown)}" if unknown else "a column named twice"
            self.fail(1, f"{what}; the columns are {', '.join(COLUMNS)}")
        self.positions = [header.index(c) if c in header else None for c in COLUMNS]
        self.has_index = "index" in header
        width, rows = len(header), []
        for line, values in enumerate(reader, start=2):
            if len(values) != width:
                if not values or values == [""]:
                    continue
                self.fail(line, f"{len(values)} values for {width} columns")
            rows.append(self.row(line, [values[i].strip() if i is not None else "" for i in self.positions]))
        if not rows:
            self.fail(None, "no rows: the manifest lists no video")
        return rows

    def name(self, line: int, column: str, value: str) -> str:
        """``value`` when it can name a folder (checked once per distinct value: labels repeat)."""
        if value not in self._names:
            self._names[value] = component_problem(value) if value else f"empty {column}"
        problem = self._names[value]
        if problem:
            self.fail(line, problem if not value else f"{column} {value!r} cannot name a folder: {problem}")
        return value

    def row(self, line: int, v: list[str]) -> Row:
        split, path, label, index, category, sub, start, end = v
        self.name(line, "split", split)
        if label:
            self.name(line, "label", label)
        elif index:
            self.fail(line, f"index {index} without a label (an unlabeled video has neither)")
        category = self.name(line, "category", category) if category else (label or UNLABELED_CATEGORY)
        sub = self.name(line, "subcategory", sub) if sub else category
        if not path:
            self.fail(line, "empty path")
        if not path.isprintable():
            self.fail(line, f"path {path!r} holds a control character")
        start_s = self.seconds(line, "start", start) if start else None
        end_s = self.seconds(line, "end", end) if end else None
        if start_s is not None and end_s is not None and end_s <= start_s:
            self.fail(line, f"end {end_s:g} is not after start {start_s:g}")
        return Row(line, split, path, label, self.index(line, index) if label else None, category, sub, start_s, end_s)

    def seconds(self, line: int, name: str, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            self.fail(line, f"{name} {text!r} is not a time in seconds (a number >= 0)")
        return value

    def index(self, line: int, text: str) -> int | None:
        if self.has_index and not text:
            self.fail(line, "empty index (the index column, when present, gives every row's class index)")
        if not text:
            return None
        if not is_index(text):
            self.fail(line, f"index {text!r} is not a class index (an integer >= 0)")
        return int(text)


def read_rows(path: str | Path) -> list[Row]:
    """Every row of the manifest at ``path``, each value checked (:class:`LayoutError` else)."""
    return _Reader(Path(path)).rows()


def read_manifest(
    manifest: str | Path,
    *,
    root: str | Path | None = None,
    classes: str | None = None,
    splits: list[str] | None = None,
    allow_overlap: bool = False,
) -> RawTree:
    """The manifest's videos as a :class:`RawTree`: one group per split/category/subcategory,
    rows in manifest order, class indices from the ``index`` column, else ``classes`` (a file,
    see :func:`vcp.inputs.classes.read_classes`), else the manifest's ``.classes.json``, else
    the sorted labels."""
    manifest = Path(manifest)
    reader = _Reader(manifest)
    with _no_gc_pauses():  # 100,000 rows make 300,000 objects that all live on
        rows = reader.rows()
        _check_duplicates(reader, rows)
        mapping = manifest_classes(rows, reader.path, classes, reader.fail, has_index=reader.has_index)
        base = Path(root) if root is not None else manifest.parent
        if root is not None and not base.is_dir():
            raise LayoutError(f"--root {base}: not a folder")
        files = _resolve(reader, rows, base, confine=root is not None)
        if not allow_overlap:
            _overlap_warning(reader, rows, files)
        if splits is not None:
            missing = sorted(set(splits) - {r.split for r in rows})
            if missing:
                raise LayoutError(f"no rows for split(s) {', '.join(missing)} in {manifest}")
        groups = _groups(reader, [(r, f) for r, f in zip(rows, files, strict=True) if splits is None or r.split in splits])
    return RawTree(root=base, groups=tuple(groups), categories=tuple(sorted(mapping, key=mapping.get)),
                   selected=tuple(splits) if splits is not None else None, classes=mapping, manifest=manifest)


@contextlib.contextmanager
def _no_gc_pauses():
    """The cyclic collector off while a manifest is read: its objects hold no cycles, and
    collections over a heap growing by 100,000s of objects took a third of the read."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _check_duplicates(reader: _Reader, rows: list[Row]) -> None:
    seen: dict[tuple[str, str], Row] = {}
    for row in rows:
        other = seen.get((row.split, row.path))
        if other is not None:
            if other.segment == row.segment:
                reader.fail(row.line, f"duplicate row: {row.split} {row.path} is also line {other.line}")
            reader.fail(row.line, f"{row.path} is in split {row.split} twice (also line {other.line}) with another "
                                  "segment: one row per video and split")
        seen[(row.split, row.path)] = row


def _overlap_warning(reader: _Reader, rows: list[Row], files: list[str]) -> None:
    """One warning when a video is in more than one split, by the file itself (``./a.mp4``,
    ``a//b.mp4`` and a link to it are the same video), not by how the rows spell it."""
    if len({r.split for r in rows}) < 2:
        return
    split_of: dict[object, set[str]] = defaultdict(set)
    shown: dict[object, str] = {}
    for row, path in zip(rows, files, strict=True):
        try:
            st = os.stat(path)
            key: object = (st.st_dev, st.st_ino)
        except OSError:
            key = os.path.normpath(path)
        split_of[key].add(row.split)
        shown.setdefault(key, row.path)
    shared = [(shown[k], s) for k, s in split_of.items() if len(s) > 1]
    if shared:
        pairs = sorted({tuple(sorted(s, key=split_key)) for _, s in shared})
        print(one_line(
            f"vcp: warning: {len(shared)} video(s) of {reader.path} are in more than one split "
            f"({'; '.join(' and '.join(p) for p in pairs[:3])}), e.g. {shared[0][0]}: a video in both training "
            "and test data inflates the test score (--allow-overlap silences this)"), file=sys.stderr, flush=True)


def _resolve(reader: _Reader, rows: list[Row], base: Path, *, confine: bool) -> list[str]:
    """Each row's file (a string: 100,000 rows are read in well under a second); with
    ``--root`` given, a path that leads outside it (``..``, an absolute path, a symbolic
    link) is refused: manifests are downloaded. Each folder is resolved and listed once."""
    base_text = os.fspath(base)
    out = [os.path.join(base_text, row.path) for row in rows]
    if confine:
        checker = Confinement(base)
        for row, target in zip(rows, out, strict=True):
            if not checker.inside(target):
                reader.fail(row.line, f"path {row.path} leads outside --root {base}")
    if not any(os.path.exists(p) for p in out):  # stops at the first that exists
        raise LayoutError(one_line(
            f"none of the {len(rows)} paths in {reader.path} exists under {base} (e.g. {out[0]}): paths are "
            "relative to --root, which defaults to the manifest's folder"))
    return out


def _groups(reader: _Reader, rows: list[tuple[Row, str]]) -> list[Group]:
    """One group per split/category/subcategory (sorted as a RAW tree's), rows in manifest order."""
    by_key: dict[tuple[str, str, str], list[tuple[Row, str]]] = defaultdict(list)
    for row, path in rows:
        by_key[(row.split, row.category, row.subcategory)].append((row, path))
    groups = []
    folders: dict[str, object] = {}
    for (split, category, sub), members in sorted(by_key.items(), key=lambda kv: (split_key(kv[0][0]), kv[0][1:])):
        label = members[0][0].label
        names: dict[str, int] = {}
        videos = []
        for r, path in members:
            if r.label != label:
                reader.fail(r.line, f"{split}/{category}/{sub} holds labels {label!r} and {r.label!r}: "
                                    "a group (split, category, subcategory) holds one class")
            folder, sep, name = path.rpartition("/")  # os.path.split, 3x faster
            folder = folder or sep
            other = names.setdefault(name, r.line)
            if other != r.line:
                reader.fail(r.line, f"{split}/{category}/{sub} has two files named {name} (also line {other}): "
                                    "outputs name videos by file name; give them different subcategories")
            videos.append(Video(_child(folders, folder, name), r.path, r.segment))
        groups.append(Group(split, category, sub, tuple(videos), label=label))
    return groups


def _child(folders: dict[str, object], folder: str, name: str) -> Path:
    """``Path(folder, name)`` with each folder parsed once and the file joined to it as one
    component (pathlib's own child constructor where it has one: parsing 100,000 full paths
    took longer than reading the whole manifest)."""
    make = folders.get(folder)
    if make is None:
        base = Path(folder)
        make = folders[folder] = getattr(base, "_make_child_relpath", base.joinpath)
    return make(name) if name else Path(folder, name)
