"""Importers: a dataset's own files -> manifest rows with its official class indices.

Each importer reads a dataset as it is downloaded (nothing is copied or linked) and returns
an :class:`Imported`: the rows (paths relative to the dataset's video folder, as its split
files write them), and one line per listed video that is not there. Formats:

- ``tree``: a RAW tree (the rows discovery makes, indices = sorted category names);
- ``ucf101``: ``UCF-101/<Class>/<file>.avi`` + ``ucfTrainTestlist/`` (classInd.txt, 1-based;
  trainlist0K.txt ``Class/file.avi label``; testlist0K.txt ``Class/file.avi``);
- ``hmdb51``: ``<videos>/<class>/<file>.avi`` + ``<class>_test_split<K>.txt`` lines
  ``file.avi 0|1|2`` (1 train, 2 test, 0 unused); indices = sorted class names;
- ``kinetics``: CSVs ``label,youtube_id,time_start,time_end,split`` + a video folder holding
  trimmed clips ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` anywhere under it, or untrimmed
  ``<youtube_id>.<ext>`` (those get the CSV's start/end as the segment); indices = sorted labels;
- ``ssv2``: ``labels.json`` ({template: index}) + ``train.json`` / ``validation.json`` (``id``,
  ``template`` whose ``[something]`` placeholders are the labels' ``something``) + ``<id>.webm``;
- ``list``: ``path label`` lines per split (mmaction2 style; label an index or a name).
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
    out = Imported(tree.root)
    mapping = tree.category_mapping
    for g in tree.groups:
        for p in g.files:
            out.rows.append({"split": g.split, "path": tree.relpath(p), "label": g.category, "index": mapping[g.category],
                             "subcategory": g.subcategory})
    return out


def ucf101(videos: Path, splits: Path, fold: int) -> Imported:
    videos, splits = _folder(videos, "UCF101 videos"), _folder(splits, "UCF101 split folder")
    classes: dict[str, int] = {}
    for n, line in enumerate(_text(splits / "classInd.txt", "UCF101 class list").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit():
            raise LayoutError(f"{splits / 'classInd.txt'}, line {n}: expected 'index ClassName', got {line.strip()!r}")
        classes[parts[1]] = int(parts[0])
    by_index = {i: name for name, i in classes.items()}
    lower = {name.lower(): name for name in classes}
    out = Imported(videos)
    for split, listed in (("train", f"trainlist0{fold}.txt"), ("test", f"testlist0{fold}.txt")):
        path = splits / listed
        for n, line in enumerate(_text(path, "UCF101 split file").splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            rel = parts[0]
            if len(parts) > 1 and parts[1].isdigit() and int(parts[1]) in by_index:
                label = by_index[int(parts[1])]
            elif rel.split("/")[0].lower() in lower:
                label = lower[rel.split("/")[0].lower()]  # testlists give no index: the class folder
            else:
                raise LayoutError(f"{path}, line {n}: class of {rel} is not in classInd.txt")
            out.add((videos / rel).exists(), f"{listed} line {n}", split=split, path=rel, label=label, index=classes[label])
    return out


def hmdb51(videos: Path, splits: Path, fold: int) -> Imported:
    videos, splits = _folder(videos, "HMDB51 videos"), _folder(splits, "HMDB51 split folder")
    suffix = f"_test_split{fold}.txt"
    files = sorted(p for p in splits.iterdir() if p.name.endswith(suffix))
    if not files:
        raise LayoutError(f"HMDB51 split folder {splits}: no <class>{suffix} files")
    names = sorted(p.name[: -len(suffix)] for p in files)
    index = {name: i for i, name in enumerate(names)}
    out = Imported(videos)
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


def kinetics(csvs: list[Path], videos: Path) -> Imported:
    videos = _folder(videos, "Kinetics videos")
    entries = []
    for path in csvs:
        reader = csv.DictReader(_text(path, "Kinetics CSV").splitlines())
        need = {"label", "youtube_id", "time_start", "time_end", "split"}
        if not need <= set(reader.fieldnames or ()):
            raise LayoutError(f"Kinetics CSV {path}: expected the columns {', '.join(sorted(need))}, got {reader.fieldnames}")
        for n, row in enumerate(reader, start=2):
            try:
                start, end = int(float(row["time_start"])), int(float(row["time_end"]))
            except ValueError:
                raise LayoutError(f"{path}, line {n}: time_start/time_end are not numbers") from None
            entries.append((path.name, n, row["split"].strip(), row["label"].strip(), row["youtube_id"].strip(), start, end))
    index = {name: i for i, name in enumerate(sorted({e[3] for e in entries}))}
    found = _video_index(videos)
    out = Imported(videos)
    for where, n, split, label, vid, start, end in entries:
        trimmed = found.get(f"{vid}_{start:06d}_{end:06d}", [])
        preferred = [p for p in trimmed if p.startswith(f"{split}/{label}/")] or trimmed
        row = {"split": split, "label": label, "index": index[label]}
        if preferred:
            out.add(True, "", path=preferred[0], **row)
        elif found.get(vid):  # the whole video: sampled inside the CSV's segment
            out.add(True, "", path=found[vid][0], start=start, end=end, **row)
        else:
            out.add(False, f"{where} line {n}", path=f"{split}/{label}/{vid}_{start:06d}_{end:06d}.mp4", **row)
    return out


def ssv2(labels: Path, videos: Path) -> Imported:
    labels, videos = _folder(labels, "Something-Something labels folder"), _folder(videos, "Something-Something videos")
    try:
        names = json.loads(_text(labels / "labels.json", "Something-Something labels"))
        index = {name: int(i) for name, i in names.items()}
    except (ValueError, AttributeError, TypeError):
        raise LayoutError(f"{labels / 'labels.json'}: expected a JSON object {{template: index}}") from None
    out = Imported(videos)
    for split, listed in (("train", "train.json"), ("validation", "validation.json")):
        try:
            items = json.loads(_text(labels / listed, "Something-Something split"))
        except ValueError as exc:
            raise LayoutError(f"{labels / listed}: not valid JSON ({exc})") from None
        for k, item in enumerate(items):
            label = str(item.get("template", "")).replace("[", "").replace("]", "")
            if label not in index:
                raise LayoutError(f"{labels / listed}, entry {k} (id {item.get('id')}): template {label!r} is not in labels.json")
            rel = f"{item['id']}.webm"
            out.add((videos / rel).exists(), f"{listed} entry {k}", split=split, path=rel, label=label, index=index[label])
    return out


def from_lists(splits: dict[str, Path], root: Path, classes: str | None) -> Imported:
    """``path label`` lines; numeric labels are indices (named by ``classes`` when given)."""
    from vcp.inputs.classes import read_classes

    root = _folder(root, "--root")
    parsed = []
    for split, path in splits.items():
        for n, line in enumerate(_text(path, f"--split {split}").splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.strip().rsplit(None, 1)
            if len(parts) != 2:
                raise LayoutError(f"{path}, line {n}: expected 'path label', got {line.strip()!r}")
            parsed.append((split, path.name, n, parts[0], parts[1]))
    names = read_classes(classes, names=[]) if classes else None
    numeric = all(p[4].isdigit() for p in parsed)
    by_index = {i: name for name, i in (names or {}).items()}
    sorted_index = {name: i for i, name in enumerate(sorted({p[4] for p in parsed}))}
    out = Imported(root)
    for split, where, n, rel, label in parsed:
        if numeric:
            i = int(label)
            name = by_index.get(i, label) if names is not None else label
            if names is not None and i not in by_index:
                raise LayoutError(f"{where}, line {n}: index {i} is not in --classes {classes}")
        else:
            name = label
            if names is not None and label not in names:
                raise LayoutError(f"{where}, line {n}: class {label!r} is not in --classes {classes}")
            i = names[label] if names is not None else sorted_index[label]
        out.add((root / rel).exists(), f"{where} line {n}", split=split, path=rel, label=name, index=i)
    return out


def write_manifest(rows: list[dict], target: str | Path) -> Path:
    """The canonical CSV of ``rows`` (dicts with the column names), written whole or not at
    all; optional columns only when some row has them."""
    target = Path(target)
    used = [c for c in COLUMNS if c in REQUIRED or any(r.get(c) is not None for r in rows)]
    target.parent.mkdir(parents=True, exist_ok=True)
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
