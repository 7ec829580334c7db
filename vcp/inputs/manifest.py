"""The manifest: one CSV row per video, the input any dataset can be written as
(docs/design.md, "Manifest").

``split,path,label`` required, ``index,category,subcategory,start,end`` optional. ``path``
is relative to a root (``--root``, default the manifest's folder) or absolute; ``label`` is
the class name; ``category`` defaults to ``label`` and ``subcategory`` to ``category``;
``start``/``end`` (seconds, either may be empty) restrict sampling to ``[start, end)``.
:func:`read_manifest` checks every row and returns the same :class:`RawTree` a RAW folder
gives, so everything downstream works on either. Every problem is a :class:`LayoutError`
(exit 2) naming the manifest and the line.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from vcp.common.errors import LayoutError
from vcp.common.report import one_line
from vcp.inputs.classes import read_classes
from vcp.inputs.layout import Group, RawTree
from vcp.store.contract import split_key
from vcp.store.names import component_problem
from vcp.store.readers import regular_file_problem

REQUIRED = ("split", "path", "label")
OPTIONAL = ("index", "category", "subcategory", "start", "end")
COLUMNS = REQUIRED + OPTIONAL


@dataclass(frozen=True)
class Row:
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
        at = {name: header.index(name) for name in header}
        rows = []
        for line, values in enumerate(reader, start=2):
            if not values or values == [""]:
                continue
            if len(values) != len(header):
                self.fail(line, f"{len(values)} values for {len(header)} columns")
            rows.append(self.row(line, {name: values[i].strip() for name, i in at.items()}))
        if not rows:
            self.fail(None, "no rows: the manifest lists no video")
        return rows

    def row(self, line: int, v: dict) -> Row:
        for name in ("split", "label", "category", "subcategory"):
            if v.get(name):
                problem = component_problem(v[name])
                if problem:
                    self.fail(line, f"{name} {v[name]!r} cannot name a folder: {problem}")
            elif name in REQUIRED:
                self.fail(line, f"empty {name}")
        path = v["path"]
        if not path:
            self.fail(line, "empty path")
        if "\x00" in path or any(not c.isprintable() for c in path):
            self.fail(line, f"path {path!r} holds a control character")
        category = v.get("category") or v["label"]
        start, end = self.seconds(line, v, "start"), self.seconds(line, v, "end")
        if start is not None and end is not None and end <= start:
            self.fail(line, f"end {end:g} is not after start {start:g}")
        return Row(line, v["split"], path, v["label"], self.index(line, v), category,
                   v.get("subcategory") or category, start, end)

    def seconds(self, line: int, v: dict, name: str) -> float | None:
        text = v.get(name, "")
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            self.fail(line, f"{name} {text!r} is not a time in seconds (a number >= 0)")
        return value

    def index(self, line: int, v: dict) -> int | None:
        text = v.get("index", "")
        if "index" in v and not text:
            self.fail(line, "empty index (the index column, when present, gives every row's class index)")
        if not text:
            return None
        if not text.isdigit():
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
    see :func:`vcp.inputs.classes.read_classes`), else the sorted labels."""
    manifest = Path(manifest)
    reader = _Reader(manifest)
    rows = reader.rows()
    _check_duplicates(reader, rows, allow_overlap)
    mapping = _mapping(reader, rows, classes)
    base = Path(root) if root is not None else manifest.parent
    if root is not None and not base.is_dir():
        raise LayoutError(f"--root {base}: not a folder")
    files = _resolve(reader, rows, base, confine=root is not None)
    all_splits = {r.split for r in rows}
    if splits is not None:
        missing = sorted(set(splits) - all_splits)
        if missing:
            raise LayoutError(f"no rows for split(s) {', '.join(missing)} in {manifest}")
    groups = _groups(reader, [(r, f) for r, f in zip(rows, files, strict=True) if splits is None or r.split in splits])
    return RawTree(root=base, groups=tuple(groups), categories=tuple(sorted(mapping, key=mapping.get)),
                   selected=tuple(splits) if splits is not None else None, classes=mapping, manifest=manifest)


def _check_duplicates(reader: _Reader, rows: list[Row], allow_overlap: bool) -> None:
    seen: dict[tuple[str, str], Row] = {}
    split_of: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        other = seen.get((row.split, row.path))
        if other is not None:
            if other.segment == row.segment:
                reader.fail(row.line, f"duplicate row: {row.split} {row.path} is also line {other.line}")
            reader.fail(row.line, f"{row.path} is in split {row.split} twice (also line {other.line}) with another "
                                  "segment: one row per video and split")
        seen[(row.split, row.path)] = row
        split_of[row.path].add(row.split)
    shared = [(p, s) for p, s in split_of.items() if len(s) > 1]
    if shared and not allow_overlap:
        pairs = sorted({tuple(sorted(s, key=split_key)) for _, s in shared})
        print(one_line(
            f"vcp: warning: {len(shared)} video(s) of {reader.path} are in more than one split "
            f"({'; '.join(' and '.join(p) for p in pairs[:3])}), e.g. {shared[0][0]}: a video in both training "
            "and test data inflates the test score (--allow-overlap silences this)"), file=sys.stderr, flush=True)


def _mapping(reader: _Reader, rows: list[Row], classes: str | None) -> dict[str, int]:
    """label -> index: the index column, else the classes file, else the sorted labels."""
    if rows[0].index is not None:
        mapping: dict[str, int] = {}
        owner: dict[int, str] = {}
        for row in rows:
            known = mapping.setdefault(row.label, row.index)
            if known != row.index:
                reader.fail(row.line, f"label {row.label!r} has index {row.index} here and {known} above")
            if owner.setdefault(row.index, row.label) != row.label:
                reader.fail(row.line, f"index {row.index} is given to {row.label!r} and {owner[row.index]!r}")
        return dict(sorted(mapping.items(), key=lambda kv: kv[1]))
    if classes is not None:
        mapping = read_classes(classes, names=sorted({r.label for r in rows}))
        for row in rows:
            if row.label not in mapping:
                reader.fail(row.line, f"label {row.label!r} is not in --classes {classes}")
        return mapping
    return {name: i for i, name in enumerate(sorted({r.label for r in rows}))}


def _resolve(reader: _Reader, rows: list[Row], base: Path, *, confine: bool) -> list[Path]:
    """Each row's file; with ``--root`` given, a path that leads outside it (``..``, an
    absolute path, a symbolic link) is refused: manifests are downloaded."""
    resolved_base = base.resolve() if confine else None
    parents: dict[str, Path] = {}
    out = []
    for row in rows:
        target = base / row.path
        if confine:
            parent_text = os.path.dirname(row.path)
            parent = parents.get(parent_text)
            if parent is None:
                parent = parents[parent_text] = (base / parent_text).resolve()
            real = (parent / os.path.basename(row.path)).resolve() if os.path.islink(target) else parent / os.path.basename(row.path)
            if resolved_base != real and resolved_base not in real.parents:
                reader.fail(row.line, f"path {row.path} leads outside --root {base}")
        out.append(target)
    if not any(os.path.exists(p) for p in out):  # stops at the first that exists
        raise LayoutError(one_line(
            f"none of the {len(rows)} paths in {reader.path} exists under {base} (e.g. {out[0]}): paths are "
            "relative to --root, which defaults to the manifest's folder"))
    return out


def _groups(reader: _Reader, rows: list[tuple[Row, Path]]) -> list[Group]:
    """One group per split/category/subcategory (sorted as a RAW tree's), rows in manifest order."""
    by_key: dict[tuple[str, str, str], list[tuple[Row, Path]]] = defaultdict(list)
    for row, path in rows:
        by_key[(row.split, row.category, row.subcategory)].append((row, path))
    groups = []
    for (split, category, sub), members in sorted(by_key.items(), key=lambda kv: (split_key(kv[0][0]), kv[0][1:])):
        labels = {r.label for r, _ in members}
        if len(labels) > 1:
            r = next(r for r, _ in members if r.label != members[0][0].label)
            reader.fail(r.line, f"{split}/{category}/{sub} holds labels {members[0][0].label!r} and {r.label!r}: "
                                "a group (split, category, subcategory) holds one class")
        names: dict[str, int] = {}
        for r, path in members:
            other = names.setdefault(path.name, r.line)
            if other != r.line:
                reader.fail(r.line, f"{split}/{category}/{sub} has two files named {path.name} (also line {other}): "
                                    "outputs name videos by file name; give them different subcategories")
        groups.append(Group(split, category, sub, tuple(p for _, p in members), label=members[0][0].label,
                            paths=tuple(r.path for r, _ in members),
                            segments=tuple(r.segment for r, _ in members)))
    return groups


def write_manifest(rows: list[dict], target: str | Path) -> Path:
    """The canonical CSV of ``rows`` (dicts with the column names), written whole or not at
    all; optional columns only when some row has them."""
    target = Path(target)
    used = [c for c in COLUMNS if c in REQUIRED or any(r.get(c) is not None for r in rows)]
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(used)
            for r in rows:
                writer.writerow(["" if r.get(c) is None else r[c] for c in used])
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
