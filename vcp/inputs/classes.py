"""Class indices from a file (``--classes``): the dataset's official numbering.

Accepted forms, told apart by their content:

- JSON ``{"name": index, ...}`` (Something-Something's ``labels.json``; string indices too)
  or a JSON list of names (index = position);
- ``index name`` lines (UCF101's ``classInd.txt``, 1-based: the indices are kept as given);
- one name per line (index = line number from 0);
- the word ``numeric``: class names are integers and are their own index (``0/ 1/ ... 10/``).

Two names with one index, or one name twice, is a :class:`LayoutError` naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from vcp.common.errors import LayoutError
from vcp.common.report import one_line
from vcp.store.readers import regular_file_problem


def read_classes(spec: str, *, names: list[str]) -> dict[str, int]:
    """``{name: index}`` from ``spec`` (a file, or ``numeric`` for the ``names`` given)."""
    if spec == "numeric":
        bad = [n for n in names if not n.isdigit()]
        if bad:
            raise LayoutError(f"--classes numeric: class name(s) {', '.join(bad[:3])} are not integers")
        return dict(sorted(((n, int(n)) for n in names), key=lambda kv: kv[1]))
    path = Path(spec)
    problem = regular_file_problem(path)
    if problem:
        raise LayoutError(f"--classes {spec}: {problem}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise LayoutError(f"--classes {spec}: not valid UTF-8") from None
    pairs = _json_pairs(path, text) if text.lstrip().startswith(("{", "[")) else _line_pairs(path, text)
    mapping: dict[str, int] = {}
    owner: dict[int, str] = {}
    for name, index in pairs:
        if name in mapping:
            raise LayoutError(one_line(f"--classes {spec}: class {name!r} is listed twice"))
        if index in owner:
            raise LayoutError(one_line(f"--classes {spec}: index {index} is given to {owner[index]!r} and {name!r}"))
        mapping[name], owner[index] = index, name
    if not mapping:
        raise LayoutError(f"--classes {spec}: no classes in the file")
    return dict(sorted(mapping.items(), key=lambda kv: kv[1]))


def _json_pairs(path: Path, text: str) -> list[tuple[str, int]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LayoutError(f"--classes {path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if isinstance(data, list):
        data = {name: i for i, name in enumerate(data)}
    if not isinstance(data, dict):
        raise LayoutError(f"--classes {path}: expected a JSON object {{name: index}} or a list of names")
    pairs = []
    for name, index in data.items():
        if isinstance(index, str) and index.isdigit():
            index = int(index)
        if not isinstance(name, str) or isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise LayoutError(one_line(f"--classes {path}: {name!r}: {index!r} is not a class index (an integer >= 0)"))
        pairs.append((name.strip(), index))
    return pairs


def _line_pairs(path: Path, text: str) -> list[tuple[str, int]]:
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    numbered = [line.split(None, 1) for _, line in lines]
    if all(len(parts) == 2 and parts[0].isdigit() for parts in numbered):
        return [(parts[1].strip(), int(parts[0])) for parts in numbered]
    return [(line, i) for i, (_, line) in enumerate(lines)]


def with_classes(tree, spec: str | None):
    """A RAW tree with ``--classes`` applied (every category must be listed), or as it is
    with a warning when its class folders are numbers that the sorted names misnumber."""
    if spec is None:
        numeric_warning(list(tree.categories))
        return tree
    mapping = read_classes(spec, names=list(tree.categories))
    unknown = [c for c in tree.categories if c not in mapping]
    if unknown:
        raise LayoutError(one_line(f"--classes {spec}: the class folder(s) {', '.join(unknown[:3])} of {tree.root} are not listed"))
    return dataclasses.replace(tree, classes={c: mapping[c] for c in tree.categories})


def numeric_warning(categories: list[str]) -> None:
    """Folders named 0, 1, ... 10 get text-sorted indices (folder 2 -> 4 among 0..10): say so once."""
    if not categories or not all(c.isdigit() for c in categories):
        return
    differ = [c for i, c in enumerate(sorted(categories)) if int(c) != i]
    if differ:
        shown = ", ".join(f"{c} -> {sorted(categories).index(c)}" for c in differ[:3])
        print(one_line(f"vcp: warning: the class folders are numbers, but their indices are their sorted names "
                       f"({shown}); --classes numeric makes each folder's number its index"), file=sys.stderr, flush=True)
