"""``vcp export FEATURES OUT --format npy``: one file per video, and an index.

Each HDF5 row becomes ``OUT/<split>/<category>/<subcategory>/<video>.<ext>`` holding only
its ``num_frames`` real rows, written atomically; ``OUT/index.csv`` lists split, filename
(the exported file, relative to OUT), label, num_frames and fps. ``OUT/.vcp-export.json``
records which features file (its size and mtime) each split's files came from: a rerun
skips the files of a split whose features file is unchanged, rewrites them when it changed
(another backbone, re-extracted data), and removes the files it exported earlier for
videos no longer in it; files it did not write are never skipped as done nor removed. A
format is one function in :data:`FORMATS` (rows -> bytes on disk), so adding one is small.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .atomic import replace_into, tmp_path_for
from .layout import file_stamp

MANIFEST = ".vcp-export.json"


def _write_npy(rows: np.ndarray, path: Path) -> None:
    with open(path, "wb") as fh:
        np.save(fh, rows)


# name -> (file suffix, writer(rows [num_frames, D] float32, temp path))
FORMATS: dict[str, tuple[str, Callable[[np.ndarray, Path], None]]] = {"npy": (".npy", _write_npy)}


def split_of(h5: Path) -> str:
    """``train_features_multiscale.h5`` -> ``train``."""
    return h5.name.split("_features")[0]


def _read_manifest(out: Path, fmt: str) -> dict:
    """split -> {"source": [size, mtime_ns], "files": [...]} from an earlier export in ``fmt``."""
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return manifest.get("splits", {}) if manifest.get("format") == fmt else {}


def _write_atomic(path: Path, text: str) -> None:
    tmp = tmp_path_for(path)
    tmp.write_text(text)
    replace_into(tmp, path)


def export(features: Path, out: Path, fmt: str = "npy") -> tuple[int, int]:
    """Export every ``*.h5`` in ``features`` (or the one file); returns (written, skipped)."""
    from .layout import LayoutError

    if fmt not in FORMATS:
        raise LayoutError(f"Invalid format ({fmt!r}). Supported values are: {', '.join(FORMATS)}.")
    files = [features] if features.is_file() else sorted(features.glob("*.h5"))
    if not files:
        raise LayoutError(f"no features files (*.h5) at {features}")
    out.mkdir(parents=True, exist_ok=True)
    before, after = _read_manifest(out, fmt), {}
    written = skipped = 0
    index_rows = []
    for h5_path in files:
        split = split_of(h5_path)
        source = list(file_stamp(h5_path))
        earlier = before.get(split, {})
        current = earlier.get("source") == source  # what is there came from this very file
        rows, done, skip = _export_split(h5_path, out, split, fmt, set(earlier.get("files", [])) if current else set())
        index_rows += rows
        written, skipped = written + done, skipped + skip
        exported = [row[1] for row in rows]
        for stale in set(earlier.get("files", [])) - set(exported):  # videos gone from the features
            if out.resolve() in (out / stale).resolve().parents:  # only inside OUT, whatever the record says
                (out / stale).unlink(missing_ok=True)
        after[split] = {"source": source, "files": exported}
        # after each split: a run killed later never leaves a split's new files under an old record
        _write_atomic(out / MANIFEST, json.dumps({"format": fmt, "splits": {**before, **after}}, indent=1) + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["split", "filename", "label", "num_frames", "fps"])
    writer.writerows(index_rows)
    _write_atomic(out / "index.csv", buffer.getvalue())
    return written, skipped


def _export_split(h5_path: Path, out: Path, split: str, fmt: str, done_before: set) -> tuple[list, int, int]:
    """One features file's videos: (index rows, files written, files skipped: in ``done_before`` and there)."""
    import h5py

    suffix, write = FORMATS[fmt]
    rows, written, skipped = [], 0, 0
    with h5py.File(h5_path, "r") as h5:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in h5["filenames"][:]]
        labels, counts = h5["labels"][:], h5["num_frames"][:]
        fps = h5["fps"][:] if "fps" in h5 else np.full(len(names), np.nan)
        for i, name in enumerate(names):
            target = out / split / f"{name}{suffix}"
            relative = target.relative_to(out).as_posix()
            rows.append([split, relative, int(labels[i]), int(counts[i]), "" if math.isnan(fps[i]) else f"{float(fps[i]):.6g}"])
            if relative in done_before and target.exists():
                skipped += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = tmp_path_for(target)
            try:
                write(np.asarray(h5["features"][i, : int(counts[i])], dtype=np.float32), tmp)
                replace_into(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            written += 1
    return rows, written, skipped
