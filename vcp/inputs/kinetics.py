"""The Kinetics importer: annotation CSVs ``label,youtube_id,time_start,time_end,split`` (a
test CSV has no ``label``: unlabeled) and a video folder of trimmed clips
``<youtube_id>_<start:06d>_<end:06d>.<ext>`` or whole ``<youtube_id>.<ext>`` videos."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from vcp.common.errors import LayoutError
from vcp.inputs.datasets import Imported, folder_of, read_text, video_index

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

    videos = folder_of(videos, "Kinetics videos")
    entries = []
    for path in csvs:
        reader = csv.DictReader(io.StringIO(read_text(path, "Kinetics CSV"), newline=""))  # quoted newlines kept
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
    found = video_index(videos)
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
