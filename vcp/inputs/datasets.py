"""Importers: a dataset's own files -> manifest rows with its official class indices.

Each importer reads a dataset as it is downloaded (nothing is copied or linked) and returns
an :class:`Imported`: the rows (paths relative to the dataset's video folder, as its split
files write them), the dataset's whole class list (index = label, 0-based), and one line
per listed video that is not there. Formats:

- ``tree``: a RAW tree (the rows discovery makes, indices = sorted category names);
- ``ucf101``: ``UCF-101/<Class>/<file>.avi`` + ``ucfTrainTestlist/`` (classInd.txt, 1-based:
  labels are its numbers - 1; trainlist0K.txt ``Class/file.avi label``; testlist0K.txt
  ``Class/file.avi``);
- ``hmdb51``: ``<videos>/<class>/<file>.avi`` + ``<class>_test_split<K>.txt`` lines
  ``file.avi 0|1|2`` (1 train, 2 test, 0 unused); indices = sorted class names;
- ``kinetics``: CSVs ``label,youtube_id,time_start,time_end,split`` (a test CSV without
  ``label``: unlabeled) + a video folder holding trimmed clips
  ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` anywhere under it, or untrimmed
  ``<youtube_id>.<ext>`` (those get the CSV's start/end as the segment); indices = the sorted
  labels of every CSV given, or ``--classes``;
- ``ssv2``: ``something-something-v2-labels.json`` ({template: index}) and any of
  ``-train.json`` / ``-validation.json`` / ``-test.json`` (``id``, ``template`` whose
  ``[something]`` placeholders are the labels' ``something``; test: ``id`` only, unlabeled),
  or the same without the prefix (``labels.json``...) + ``<id>.webm``;
- ``list``: ``path label`` lines per split (mmaction2 style; label an index or a name; a
  path alone is an unlabeled video).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from vcp.common.errors import LayoutError
from vcp.store.readers import regular_file_problem

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


@dataclass
class Imported:
    root: Path  # the folder the rows' paths are relative to
    rows: list[dict] = field(default_factory=list)  # split, path, label, index (+ category, start, end)
    missing: list[str] = field(default_factory=list)  # "<path> (<where it is listed>)"
    classes: list[str] = field(default_factory=list)  # the dataset's whole class list, index = label

    def add(self, exists: bool, where: str, **row) -> None:
        if exists:
            self.rows.append(row)
        else:
            self.missing.append(f"{row['path']} ({where})")


def read_text(path: Path, what: str) -> str:
    problem = regular_file_problem(path)
    if problem:
        raise LayoutError(f"{what} {path}: {problem}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise LayoutError(f"{what} {path}: not valid UTF-8") from None


def folder_of(path: Path, what: str) -> Path:
    if not Path(path).is_dir():
        raise LayoutError(f"{what} {path}: not a folder")
    return Path(path)


def from_tree(raw: Path) -> Imported:
    from vcp.inputs.layout import discover_raw

    tree = discover_raw(raw)
    out = Imported(tree.root, classes=list(tree.categories))
    mapping = tree.category_mapping
    for g in tree.groups:
        for p in g.files:
            out.rows.append({"split": g.split, "path": tree.relpath(p), "label": g.category, "index": mapping[g.category],
                             "subcategory": g.subcategory})
    return out


def ucf101(videos: Path, splits: Path, fold: int) -> Imported:
    from vcp.inputs.classes import checked_mapping, is_index

    videos, splits = folder_of(videos, "UCF101 videos"), folder_of(splits, "UCF101 split folder")
    listed = splits / "classInd.txt"
    pairs = []
    for n, line in enumerate(read_text(listed, "UCF101 class list").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not is_index(parts[0]):
            raise LayoutError(f"{listed}, line {n}: expected 'index ClassName', got {line.strip()!r}")
        pairs.append((parts[1], int(parts[0]), n))
    classes = checked_mapping(pairs, str(listed))  # classInd's 1..101 -> labels 0..100
    by_number = {i + 1: name for name, i in classes.items()}  # the split files' numbers are classInd's
    lower = {name.lower(): name for name in classes}
    out = Imported(videos, classes=list(classes))
    for split, name in (("train", f"trainlist0{fold}.txt"), ("test", f"testlist0{fold}.txt")):
        path = splits / name
        for n, line in enumerate(read_text(path, "UCF101 split file").splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            rel = parts[0]
            if len(parts) > 1 and is_index(parts[1]) and int(parts[1]) in by_number:
                label = by_number[int(parts[1])]
            elif rel.split("/")[0].lower() in lower:
                label = lower[rel.split("/")[0].lower()]  # testlists give no index: the class folder
            else:
                raise LayoutError(f"{path}, line {n}: class of {rel} is not in classInd.txt")
            out.add((videos / rel).exists(), f"{name} line {n}", split=split, path=rel, label=label, index=classes[label])
    return out


def hmdb51(videos: Path, splits: Path, fold: int) -> Imported:
    videos, splits = folder_of(videos, "HMDB51 videos"), folder_of(splits, "HMDB51 split folder")
    suffix = f"_test_split{fold}.txt"
    files = sorted(p for p in splits.iterdir() if p.name.endswith(suffix))
    if not files:
        raise LayoutError(f"HMDB51 split folder {splits}: no <class>{suffix} files")
    names = sorted(p.name[: -len(suffix)] for p in files)
    index = {name: i for i, name in enumerate(names)}
    out = Imported(videos, classes=names)
    for path in files:
        label = path.name[: -len(suffix)]
        for n, line in enumerate(read_text(path, "HMDB51 split file").splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise LayoutError(f"{path}, line {n}: expected 'file.avi 0|1|2', got {line.strip()!r}")
            if parts[1] == "0":
                continue
            rel = f"{label}/{parts[0]}"
            out.add((videos / rel).exists(), f"{path.name} line {n}", split="train" if parts[1] == "1" else "test",
                    path=rel, label=label, index=index[label])
    return out


def video_index(root: Path) -> dict[str, list[str]]:
    """Every video under ``root`` by file stem -> relative paths (one walk)."""
    found: dict[str, list[str]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() in VIDEO_SUFFIXES and not name.startswith("."):
                found.setdefault(stem, []).append(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/"))
    return found


SSV2_PREFIX = "something-something-v2-"
SSV2_SPLITS = ("train", "validation", "test")


def _ssv2_file(folder: Path, name: str) -> Path | None:
    """``something-something-v2-<name>.json`` as released, or ``<name>.json``; None if neither."""
    for candidate in (folder / f"{SSV2_PREFIX}{name}.json", folder / f"{name}.json"):
        if candidate.exists():
            return candidate
    return None


def _json(path: Path, what: str):
    try:
        return json.loads(read_text(path, what))
    except ValueError as exc:
        raise LayoutError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise LayoutError(f"{path}: JSON nested too deeply") from None


def ssv2(labels: Path, videos: Path) -> Imported:
    from vcp.inputs.classes import checked_mapping, is_index

    labels, videos = folder_of(labels, "Something-Something labels folder"), folder_of(videos, "Something-Something videos")
    listed = _ssv2_file(labels, "labels")
    if listed is None:
        raise LayoutError(f"Something-Something labels folder {labels}: no {SSV2_PREFIX}labels.json (or labels.json)")
    names = _json(listed, "Something-Something labels")
    if not isinstance(names, dict) or not all(isinstance(i, (str, int)) and is_index(str(i)) for i in names.values()):
        raise LayoutError(f"{listed}: expected a JSON object {{template: index}}")
    index = checked_mapping([(name, int(i), None) for name, i in names.items()], str(listed))
    splits = {split: path for split in SSV2_SPLITS if (path := _ssv2_file(labels, split)) is not None}
    if not splits:
        raise LayoutError(f"Something-Something labels folder {labels}: none of {SSV2_PREFIX}"
                          f"{{{','.join(SSV2_SPLITS)}}}.json (or train.json...)")
    out = Imported(videos, classes=list(index))
    for split, path in splits.items():
        items = _json(path, "Something-Something split")
        if not isinstance(items, list):
            raise LayoutError(f"{path}: expected a JSON list of videos ({{\"id\": ..., \"template\": ...}})")
        for k, item in enumerate(items):
            vid = item.get("id") if isinstance(item, dict) else None
            if not isinstance(vid, (str, int)) or isinstance(vid, bool) or not str(vid).strip() or "/" in str(vid):
                raise LayoutError(f"{path}, entry {k}: expected an object with an \"id\" (the video's number)")
            if split == "test" and "template" not in item:
                label = ""  # the test split is unlabeled
            else:
                label = str(item.get("template", "")).replace("[", "").replace("]", "")
                if label not in index:
                    raise LayoutError(f"{path}, entry {k} (id {vid}): template {label!r} is not in {listed.name}")
            rel = f"{str(vid).strip()}.webm"
            out.add((videos / rel).exists(), f"{path.name} entry {k}", split=split, path=rel, label=label,
                    index=index[label] if label else None)
    return out


def from_lists(splits: dict[str, Path], root: Path, classes: str | None) -> Imported:
    """``path label`` lines (``path`` alone: unlabeled). Numeric labels are 0-based indices,
    named by ``classes`` when given (a classInd.txt numbered from 1 is read 0-based, as
    everywhere), else by their number; names are indexed by ``classes`` or sorted."""
    import sys

    from vcp.common.report import one_line
    from vcp.inputs.classes import is_index, numeric_classes, read_classes
    from vcp.store.names import component_problem

    root = folder_of(root, "--root")
    parsed = []
    for split, path in splits.items():
        problem = component_problem(split)
        if problem:
            raise LayoutError(one_line(f"--split {split!r}: cannot name a folder: {problem}"))
        for n, line in enumerate(read_text(path, f"--split {split}").splitlines(), start=1):
            if not line.strip():
                continue
            text = line.strip()
            parts = text.rsplit(None, 1)
            if len(parts) == 1 or not is_index(parts[1]) and (
                    parts[1].lower().endswith(VIDEO_SUFFIXES) or (root / text).exists() and not (root / parts[0]).exists()):
                parts = [text, ""]  # a path alone: an unlabeled video
            parsed.append((split, path.name, n, parts[0], parts[1]))
    if not parsed:
        raise LayoutError(f"--split files {', '.join(str(p) for p in splits.values())}: no lines")
    labels = sorted({p[4] for p in parsed if p[4]})
    numeric = bool(labels) and all(is_index(x) for x in labels)
    if classes is not None and classes != "numeric":
        names = read_classes(classes, names=labels)
    elif numeric:
        names = numeric_classes(labels, what="numeric labels")
        if classes is None:
            print(one_line(f"vcp: warning: the lists' labels are numbers and no --classes names them: each class is "
                           f"named by its number ({len(names)} classes, 0..{len(names) - 1}); --classes FILE (e.g. "
                           "classInd.txt) gives their names"), file=sys.stderr, flush=True)
    elif classes == "numeric":
        raise LayoutError(one_line(f"--classes numeric: the labels {', '.join(labels[:3])} are not all integers"))
    else:
        names = {name: i for i, name in enumerate(labels)}
    by_index = {i: name for name, i in names.items()}
    out = Imported(root, classes=list(names))
    for split, where, n, rel, label in parsed:
        if not label:
            name, i = "", None
        elif numeric:
            i = int(label)
            if i not in by_index:
                raise LayoutError(f"{where}, line {n}: index {i} is not in --classes {classes} (0..{len(names) - 1})")
            name = by_index[i]
        else:
            if label not in names:
                raise LayoutError(one_line(f"{where}, line {n}: class {label!r} is not in --classes {classes}"))
            name, i = label, names[label]
        out.add((root / rel).exists(), f"{where} line {n}", split=split, path=rel, label=name, index=i)
    return out

