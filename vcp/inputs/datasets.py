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

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from vcp.common.errors import LayoutError
from vcp.inputs.manifest import COLUMNS, REQUIRED
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


def _text(path: Path, what: str) -> str:
    problem = regular_file_problem(path)
    if problem:
        raise LayoutError(f"{what} {path}: {problem}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise LayoutError(f"{what} {path}: not valid UTF-8") from None


def _folder(path: Path, what: str) -> Path:
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

    videos, splits = _folder(videos, "UCF101 videos"), _folder(splits, "UCF101 split folder")
    listed = splits / "classInd.txt"
    pairs = []
    for n, line in enumerate(_text(listed, "UCF101 class list").splitlines(), start=1):
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
        for n, line in enumerate(_text(path, "UCF101 split file").splitlines(), start=1):
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
    videos, splits = _folder(videos, "HMDB51 videos"), _folder(splits, "HMDB51 split folder")
    suffix = f"_test_split{fold}.txt"
    files = sorted(p for p in splits.iterdir() if p.name.endswith(suffix))
    if not files:
        raise LayoutError(f"HMDB51 split folder {splits}: no <class>{suffix} files")
    names = sorted(p.name[: -len(suffix)] for p in files)
    index = {name: i for i, name in enumerate(names)}
    out = Imported(videos, classes=names)
    for path in files:
        label = path.name[: -len(suffix)]
        for n, line in enumerate(_text(path, "HMDB51 split file").splitlines(), start=1):
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


def _video_index(root: Path) -> dict[str, list[str]]:
    """Every video under ``root`` by file stem -> relative paths (one walk)."""
    found: dict[str, list[str]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() in VIDEO_SUFFIXES and not name.startswith("."):
                found.setdefault(stem, []).append(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/"))
    return found


KINETICS_SIZES = (400, 600, 700)


def _seconds(text: str | None, where: str, name: str) -> int | float:
    """A CSV time kept exact (``1.5`` stays 1.5; ``3`` and ``3.0`` are 3)."""
    import math

    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise LayoutError(f"{where}: {name} {text!r} is not a time in seconds (a number >= 0)")
    return int(value) if value.is_integer() else value


def kinetics(csvs: list[Path], videos: Path, classes: str | None = None) -> Imported:
    import sys

    from vcp.common.report import one_line
    from vcp.inputs.classes import read_classes
    from vcp.store.names import component_problem

    videos = _folder(videos, "Kinetics videos")
    entries = []
    for path in csvs:
        reader = csv.DictReader(_text(path, "Kinetics CSV").splitlines())
        need = {"youtube_id", "time_start", "time_end", "split"}
        if not need <= set(reader.fieldnames or ()):
            raise LayoutError(f"Kinetics CSV {path}: expected the columns label (not in a test CSV), "
                              f"{', '.join(sorted(need))}, got {reader.fieldnames}")
        for n, row in enumerate(reader, start=2):
            where = f"{path}, line {n}"
            if None in row.values() or None in row:
                raise LayoutError(f"{where}: {len(reader.fieldnames)} columns expected, the row has another number")
            start, end = _seconds(row["time_start"], where, "time_start"), _seconds(row["time_end"], where, "time_end")
            if end <= start:
                raise LayoutError(f"{where}: time_end {end} is not after time_start {start}")
            split, label, vid = row["split"].strip(), (row.get("label") or "").strip(), row["youtube_id"].strip()
            for name, value in (("split", split), ("label", label)):
                problem = component_problem(value) if value or name == "split" else None
                if problem:
                    raise LayoutError(one_line(f"{where}: {name} {value!r} cannot name a folder: {problem}"))
            if not vid or component_problem(vid):
                raise LayoutError(one_line(f"{where}: youtube_id {vid!r} is not a video id"))
            entries.append((path.name, n, split, label, vid, start, end))
    labels = sorted({e[3] for e in entries if e[3]})
    if classes is not None:
        index = read_classes(classes, names=labels)
        unknown = next((e for e in entries if e[3] and e[3] not in index), None)
        if unknown:
            raise LayoutError(one_line(f"{unknown[0]}, line {unknown[1]}: label {unknown[3]!r} is not in --classes {classes}"))
    else:
        index = {name: i for i, name in enumerate(labels)}
        if len(index) not in KINETICS_SIZES:
            print(one_line(
                f"vcp: warning: the CSVs name {len(index)} classes, not {', '.join(map(str, KINETICS_SIZES))}: labels are "
                "indices among these classes only; give the dataset's class list with --classes (e.g. the labels of "
                "its train CSV) to number them as the whole dataset does"), file=sys.stderr, flush=True)
    found = _video_index(videos)
    out = Imported(videos, classes=list(index))
    for where, n, split, label, vid, start, end in entries:
        stem = f"{vid}_{int(start):06d}_{int(end):06d}" if isinstance(start, int) and isinstance(end, int) else None
        trimmed = found.get(stem, []) if stem else []
        folder = f"{split}/{label}/" if label else f"{split}/"
        preferred = [p for p in trimmed if p.startswith(folder)] or trimmed
        row = {"split": split, "label": label, "index": index[label] if label else None}
        if preferred:
            out.add(True, "", path=preferred[0], **row)
        elif found.get(vid):  # the whole video: sampled inside the CSV's segment
            out.add(True, "", path=found[vid][0], start=start, end=end, **row)
        else:
            out.add(False, f"{where} line {n}", path=f"{folder}{stem or vid}.mp4", **row)
    return out


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
        return json.loads(_text(path, what))
    except ValueError as exc:
        raise LayoutError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise LayoutError(f"{path}: JSON nested too deeply") from None


def ssv2(labels: Path, videos: Path) -> Imported:
    from vcp.inputs.classes import checked_mapping, is_index

    labels, videos = _folder(labels, "Something-Something labels folder"), _folder(videos, "Something-Something videos")
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

    root = _folder(root, "--root")
    parsed = []
    for split, path in splits.items():
        problem = component_problem(split)
        if problem:
            raise LayoutError(one_line(f"--split {split!r}: cannot name a folder: {problem}"))
        for n, line in enumerate(_text(path, f"--split {split}").splitlines(), start=1):
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


def output_problem(target: Path, inputs: list[Path]) -> str | None:
    """Why ``vcp manifest -o`` must not write ``target``, or None: it makes a new file or
    replaces a regular file, never a folder, a link, a FIFO, a device or one of its inputs."""
    import stat

    from vcp.store.names import component_problem

    if not target.name or target.name in (".", ".."):
        return "not a file name"
    problem = component_problem(target.name)
    if problem:
        return problem
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        parent = target.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        return None if parent.is_dir() else f"{parent} is not a folder"
    except NotADirectoryError:
        return "a path under a file"
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISDIR(st.st_mode):
        return "a folder (give the manifest's file name)"
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link (vcp manifest does not write through links)"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a FIFO, socket or device)"
    real = os.path.realpath(target)
    if any(os.path.realpath(p) == real for p in inputs):
        return "one of this command's inputs"
    return None


def write_manifest(rows: list[dict], target: str | Path, *, classes: list[str] | None = None,
                   inputs: list[Path] = ()) -> Path:
    """The canonical CSV of ``rows`` (dicts with the column names), written whole or not at
    all; optional columns only when some row has them. ``classes`` (the whole class list) is
    written beside it as ``<name>.classes.json``, which :func:`vcp.inputs.manifest.read_manifest`
    reads. Neither file may be a folder, a link, a device or one of ``inputs``
    (:class:`LayoutError` naming it)."""
    from vcp.inputs.manifest import classes_sidecar

    target = Path(target)
    problem = output_problem(target, list(inputs))
    sidecar = classes_sidecar(target) if classes is not None and not problem else None
    if sidecar is not None and output_problem(sidecar, list(inputs)):
        target, problem = sidecar, output_problem(sidecar, list(inputs))
    if problem:
        raise LayoutError(f"-o {target}: {problem}: nothing written")
    used = [c for c in COLUMNS if c in REQUIRED or any(r.get(c) is not None for r in rows)]
    target.parent.mkdir(parents=True, exist_ok=True)
    if sidecar is not None:
        _write_atomic(sidecar, lambda f: f.write(json.dumps(classes, ensure_ascii=False, indent=0) + "\n"))

    def csv_rows(f):
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(used)
        for r in rows:
            writer.writerow(["" if r.get(c) is None else r[c] for c in used])

    _write_atomic(target, csv_rows)
    return target


def _write_atomic(target: Path, write) -> None:
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "x", newline="", encoding="utf-8") as f:
            write(f)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
