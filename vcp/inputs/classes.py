"""Class indices from a file (``--classes``): the dataset's official numbering, 0-based.

Accepted forms, told apart by their content:

- JSON ``{"name": index, ...}`` (Something-Something's ``labels.json``; string indices too)
  or a JSON list of names (index = position);
- ``index name`` lines (UCF101's ``classInd.txt``): numbered from 1, they are made 0-based
  (index - 1, as mmaction2 and UCF101's published training code read it); from 0, kept;
- one name per line (index = line number from 0);
- the word ``numeric``: class names are integers and are their own index (``0/ 1/ ... 10/``).

Every form gives the whole class list, indices 0..K-1 without a gap: labels a loss takes
(``K`` is the classifier's width). Two names with one index, one name twice, a gap, or a
malformed entry is a :class:`LayoutError` naming the file (and the line).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from vcp.common.errors import LayoutError
from vcp.common.report import one_line
from vcp.store.readers import regular_file_problem


def is_index(text: str) -> bool:
    """An index as files write it: ASCII digits only (``str.isdigit`` also takes ``²``)."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def read_classes(spec: str, *, names: list[str]) -> dict[str, int]:
    """``{name: index}`` from ``spec`` (a file, or ``numeric`` for the ``names`` given), the
    whole list, 0-based and without gaps."""
    if spec == "numeric":
        return numeric_classes(names, what="--classes numeric")
    path = Path(spec)
    problem = regular_file_problem(path)
    if problem:
        raise LayoutError(f"--classes {spec}: {problem}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise LayoutError(f"--classes {spec}: not valid UTF-8") from None
    pairs = _json_pairs(path, text) if text.lstrip().startswith(("{", "[")) else _line_pairs(path, text)
    return checked_mapping(pairs, f"--classes {spec}")


def numeric_classes(names: list[str], *, what: str) -> dict[str, int]:
    """Class names that are integers, each its own index; the list runs 0..max (a number no
    video has is still a class: its name is the number)."""
    bad = [n for n in names if not is_index(n)]
    if bad:
        raise LayoutError(one_line(f"{what}: class name(s) {', '.join(bad[:3])} are not integers"))
    mapping = {n: int(n) for n in names}
    taken = set(mapping.values())
    for i in range(max(taken, default=-1) + 1):
        if i not in taken:
            mapping[str(i)] = i
    if len(set(mapping.values())) != len(mapping):
        raise LayoutError(one_line(f"{what}: two class names are the same number ({', '.join(sorted(names)[:4])})"))
    return dict(sorted(mapping.items(), key=lambda kv: kv[1]))


def checked_mapping(pairs: list[tuple[str, int, int | None]], what: str) -> dict[str, int]:
    """``(name, index, line)`` pairs -> ``{name: index}``: each name and index once, indices
    0..K-1 (numbered from 1: made 0-based)."""
    mapping: dict[str, int] = {}
    owner: dict[int, str] = {}
    for name, index, line in pairs:
        where = f"{what}, line {line}" if line else what
        if not name:
            raise LayoutError(one_line(f"{where}: an empty class name"))
        if name in mapping:
            raise LayoutError(one_line(f"{where}: class {name!r} is listed twice"))
        if index in owner:
            raise LayoutError(one_line(f"{where}: index {index} is given to {owner[index]!r} and {name!r}"))
        mapping[name], owner[index] = index, name
    if not mapping:
        raise LayoutError(f"{what}: no classes in the file")
    low = min(owner)
    if low == 1:  # classInd.txt's 1..K
        mapping = {name: i - 1 for name, i in mapping.items()}
    elif low != 0:
        raise LayoutError(one_line(f"{what}: indices start at {low}: class indices run 0..K-1 (or 1..K, made 0-based)"))
    gaps = sorted(set(range(len(mapping))) - set(mapping.values()))
    if gaps:
        raise LayoutError(one_line(
            f"{what}: {len(mapping)} classes but no class has index {gaps[0] + (low == 1)}: the list must be whole "
            "(indices without a gap), as the classifier's outputs are"))
    return dict(sorted(mapping.items(), key=lambda kv: kv[1]))


def _json_pairs(path: Path, text: str) -> list[tuple[str, int, int | None]]:
    def pairs_once(items):  # a key twice in one object: json.loads would keep the last silently
        seen: set = set()
        for key, _ in items:
            if key in seen:
                raise LayoutError(one_line(f"--classes {path}: class {key!r} is listed twice"))
            seen.add(key)
        return dict(items)

    try:
        data = json.loads(text, object_pairs_hook=pairs_once)
    except json.JSONDecodeError as exc:
        raise LayoutError(f"--classes {path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise LayoutError(f"--classes {path}: JSON nested too deeply to be a class list") from None
    if isinstance(data, list):
        if not all(isinstance(name, str) for name in data):
            raise LayoutError(f"--classes {path}: a JSON list must hold class names (strings)")
        return [(name.strip(), i, None) for i, name in enumerate(data)]
    if not isinstance(data, dict):
        raise LayoutError(f"--classes {path}: expected a JSON object {{name: index}} or a list of names")
    pairs = []
    for name, index in data.items():
        if isinstance(index, str) and is_index(index.strip()):
            index = int(index)
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise LayoutError(one_line(f"--classes {path}: {name!r}: {index!r} is not a class index (an integer >= 0)"))
        pairs.append((name.strip(), index, None))
    return pairs


def _line_pairs(path: Path, text: str) -> list[tuple[str, int, int | None]]:
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    numbered = [line.split(None, 1) for _, line in lines]
    if numbered and all(len(parts) == 2 and is_index(parts[0]) for parts in numbered):
        return [(parts[1].strip(), int(parts[0]), n) for (n, _), parts in zip(lines, numbered, strict=True)]
    return [(line, i, n) for i, (n, line) in enumerate(lines)]


def classes_sidecar(manifest: str | Path) -> Path:
    """``ucf101.csv`` -> ``ucf101.classes.json``: the whole class list beside a manifest."""
    return Path(manifest).with_suffix(".classes.json")


def manifest_classes(rows, manifest: Path, classes: str | None, fail, *, has_index: bool) -> dict[str, int]:
    """label -> index for a manifest's rows: the dataset's whole class list (0..K-1) from
    ``classes``, else ``<manifest>.classes.json``, else the ``index`` column (0..K-1 without
    a gap), else the sorted labels; an index column must agree with a class list.
    ``fail(line, why)`` raises naming the manifest and the line."""
    labeled = [r for r in rows if r.label]
    if classes is None and classes_sidecar(manifest).is_file():
        classes = str(classes_sidecar(manifest))
    whole = read_classes(classes, names=sorted({r.label for r in labeled})) if classes is not None else None
    if has_index:
        mapping: dict[str, int] = {}
        owner: dict[int, str] = {}
        for row in labeled:
            known = mapping.setdefault(row.label, row.index)
            if known != row.index:
                fail(row.line, f"label {row.label!r} has index {row.index} here and {known} above")
            if owner.setdefault(row.index, row.label) != row.label:
                fail(row.line, f"index {row.index} is given to {row.label!r} and {owner[row.index]!r}")
            if whole is not None and whole.get(row.label) != row.index:
                said = f"index {whole[row.label]}" if row.label in whole else "no such class"
                fail(row.line, f"label {row.label!r} has index {row.index} here but {said} in --classes {classes}")
        if whole is not None:
            return whole
        gaps = sorted(set(range(len(mapping))) - set(mapping.values()))
        if gaps:
            fail(None, one_line(
                f"the index column numbers {len(mapping)} classes from {min(owner)} to {max(owner)} (no class has index "
                f"{gaps[0]}): labels are 0..K-1 over the dataset's whole class list; give it as --classes FILE "
                f"(or {classes_sidecar(manifest).name} beside the manifest)"))
        return dict(sorted(mapping.items(), key=lambda kv: kv[1]))
    if whole is not None:
        for row in labeled:
            if row.label not in whole:
                fail(row.line, f"label {row.label!r} is not in --classes {classes}")
        return whole
    names = sorted({r.label for r in labeled})
    numeric_warning(names)
    return {name: i for i, name in enumerate(names)}


def with_classes(tree, spec: str | None):
    """A RAW tree with ``--classes`` applied (every category must be listed; the file's whole
    list is the mapping), or as it is with a warning when its class folders are numbers that
    the sorted names misnumber."""
    if spec is None:
        numeric_warning(list(tree.categories))
        return tree
    mapping = read_classes(spec, names=list(tree.categories))
    unknown = [c for c in tree.categories if c not in mapping]
    if unknown:
        raise LayoutError(one_line(f"--classes {spec}: the class folder(s) {', '.join(unknown[:3])} of {tree.root} are not listed"))
    return dataclasses.replace(tree, classes=mapping)


def numeric_warning(categories: list[str]) -> None:
    """Folders named 0, 1, ... 10 get text-sorted indices (folder 2 -> 4 among 0..10): say so once."""
    if not categories or not all(is_index(c) for c in categories):
        return
    differ = [c for i, c in enumerate(sorted(categories)) if int(c) != i]
    if differ:
        shown = ", ".join(f"{c} -> {sorted(categories).index(c)}" for c in differ[:3])
        print(one_line(f"vcp: warning: the class folders are numbers, but their indices are their sorted names "
                       f"({shown}); --classes numeric makes each folder's number its index"), file=sys.stderr, flush=True)
