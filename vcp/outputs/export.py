"""``vcp export FEATURES OUT --format npy``: one file per video, and an index.

Each HDF5 row becomes ``OUT/<split>/<category>/<subcategory>/<video>.<ext>`` holding only
its ``num_frames`` real rows, written atomically; ``OUT/index.csv`` lists split, filename
(the exported file, relative to OUT), label, num_frames and fps. ``OUT/.vcp-export.json``
records which features file (its size and mtime) each split's files came from: a rerun
skips the files of a split whose features file is unchanged, rewrites them when it changed
(another backbone, re-extracted data), and removes the files it exported earlier for
videos no longer in it, or for a split whose features file is gone from FEATURES; files it
did not write are never skipped as done nor removed.

Stored names are data (a features file is downloaded and shared): a row whose name would
lead outside OUT (``..``, absolute, backslashes, control characters, a symbolic link inside
OUT) is one error line naming the row, and the rest is exported. A split is named by its
features file (``<split>_features[_multiscale].h5``): one file per split, and a split name
that is not a plain folder name is refused. Export holds OUT's lock like every command.
A format is one function in :data:`FORMATS` (rows -> bytes on disk), so adding one is small.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vcp.common.errors import LayoutError
from vcp.common.report import file_error
from vcp.store.atomic import remove_dead_tmp_under, replace_into, tmp_path_for
from vcp.store.contract import split_key
from vcp.store.folders import file_stamp, prepare_output_dir
from vcp.store.lock import output_lock
from vcp.store.names import OutsideError, component_problem, confined, relpath_problem
from vcp.store.readers import (
    InputFileError,
    open_features,
    regular_file_problem,
    stored_names,
    stored_paths,
)

MANIFEST = ".vcp-export.json"
# path: the manifest's (or RAW's); start, end: the segment it was sampled in (seconds, empty: none); label -1: unlabeled
INDEX_HEADER = ["split", "filename", "label", "num_frames", "fps", "path", "start", "end"]


def _write_npy(rows: np.ndarray, path: Path) -> None:
    with open(path, "wb") as fh:
        np.save(fh, rows)


# name -> (file suffix, writer(rows [num_frames, D] float32, temp path))
FORMATS: dict[str, tuple[str, Callable[[np.ndarray, Path], None]]] = {"npy": (".npy", _write_npy)}


def split_of(h5: Path) -> str:
    """``train_features_multiscale.h5`` -> ``train``."""
    return h5.name.split("_features")[0]


@dataclass
class ExportResult:
    written: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file or row, reason)

    def fail(self, where: str, reason: str) -> None:
        self.failures.append((where, reason))
        file_error(where, reason)


def _read_manifest(out: Path, fmt: str) -> dict:
    """split -> {"source": [size, mtime_ns], "files": [...], "rows": [...]} from an earlier export in ``fmt``."""
    from vcp.store.readers import read_json

    manifest = read_json(out / MANIFEST) or {}
    splits = manifest.get("splits", {}) if manifest.get("format") == fmt else {}
    return splits if isinstance(splits, dict) else {}


def _write_atomic(path: Path, text: str) -> None:
    tmp = tmp_path_for(path)
    tmp.write_text(text)
    replace_into(tmp, path)


def _features_files(features: Path) -> tuple[list[Path], bool]:
    """The features files to export and whether FEATURES is a folder (its whole content)."""
    if not features.exists() and not features.is_symlink():
        raise LayoutError(f"features not found: {features}")
    if not features.is_dir():
        return [features], False
    files = sorted(features.glob("*.h5"))
    if not files:
        raise LayoutError(f"no features files (*.h5) at {features}")
    return files, True


def _by_split(files: list[Path], result: ExportResult) -> dict[str, Path]:
    """split -> its one features file; a bad split name is that file's error, two files
    for one split a usage error naming both."""
    by_split: dict[str, list[Path]] = {}
    for path in files:
        split = split_of(path)
        problem = component_problem(split)
        if problem:
            result.fail(str(path), f"the split name {split!r} taken from the file name is not a folder name ({problem})")
            continue
        by_split.setdefault(split, []).append(path)
    ambiguous = {s: ps for s, ps in by_split.items() if len(ps) > 1}
    if ambiguous:
        split, paths = next(iter(sorted(ambiguous.items())))
        raise LayoutError(
            f"{' and '.join(p.name for p in paths)} are both features of split {split!r}: export one of them "
            f"(vcp export {paths[0]} OUT), or move the other out of {paths[0].parent}"
        )
    return {s: ps[0] for s, ps in sorted(by_split.items(), key=lambda kv: split_key(kv[0]))}


def export(features: Path, out: Path, fmt: str = "npy") -> ExportResult:
    """Export every ``*.h5`` in ``features`` (or the one file) into ``out``."""
    if fmt not in FORMATS:
        raise LayoutError(f"Invalid format ({fmt!r}). Supported values are: {', '.join(FORMATS)}.")
    features, out = Path(features), Path(out)
    files, whole_folder = _features_files(features)
    result = ExportResult()
    by_split = _by_split(files, result)
    out = prepare_output_dir(out, inputs=None, what="OUT")
    with output_lock(out):
        remove_dead_tmp_under(out)  # a killed export's temp files
        before = _read_manifest(out, fmt)
        after = dict(before)
        for split, h5_path in by_split.items():
            record = _export_split(h5_path, out, split, fmt, before.get(split, {}), result, only=len(files) == 1)
            if record is not None:
                after[split] = record
            _write_atomic(out / MANIFEST, json.dumps({"format": fmt, "splits": after}, indent=1) + "\n")
        if whole_folder:  # splits whose features file is gone from FEATURES: their files go too
            for split in [s for s in after if s not in {split_of(p) for p in files}]:
                gone = _remove_files(out, after.pop(split).get("files", []))
                print(f"vcp: removed {gone} exported file(s) of split {split}: its features file is no longer in {features}")
            _write_atomic(out / MANIFEST, json.dumps({"format": fmt, "splits": after}, indent=1) + "\n")
        _write_index(out, after)
    return result


def _write_index(out: Path, splits: dict) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(INDEX_HEADER)
    for split in sorted(splits, key=split_key):
        writer.writerows(splits[split].get("rows", []))
    _write_atomic(out / "index.csv", buffer.getvalue())


def _remove_files(out: Path, names) -> int:
    """Remove files export wrote earlier (by their recorded names), only inside OUT."""
    removed = 0
    for name in names:
        try:
            target = confined(out, name)
        except OutsideError:
            continue
        if target.is_file() or target.is_symlink():
            target.unlink()
            removed += 1
    return removed


def _number(value: float) -> str:
    """A CSV cell: ``""`` for NaN (none), else the shortest exact-enough text."""
    return "" if math.isnan(value) else f"{value:.6g}"


def _export_split(h5_path: Path, out: Path, split: str, fmt: str, earlier: dict, result: ExportResult, *, only: bool):
    """One features file's videos; returns its manifest record (None: the file is unusable,
    its earlier record is kept)."""
    source = list(file_stamp(h5_path)) if not regular_file_problem(h5_path) else None
    current = earlier.get("source") == source and "rows" in earlier  # what is there came from this very file
    done_before = set(earlier.get("files", [])) if current else set()
    suffix, write = FORMATS[fmt]
    rows, exported, taken = [], [], {}
    try:
        with open_features(h5_path) as h5:
            names, paths = stored_names(h5), stored_paths(h5)
            labels, counts = h5["labels"][:], h5["num_frames"][:]
            fps = h5["fps"][:] if "fps" in h5 else np.full(len(names), np.nan)
            segments = h5["segments"][:] if "segments" in h5 else np.full((len(names), 2), np.nan)
            feats = h5["features"]
            for i, name in enumerate(names):
                where = f"{h5_path} row {i}" + (f" ({name})" if isinstance(name, str) else "")
                if isinstance(name, bytes):
                    result.fail(where, "its filename is not valid UTF-8; not exported")
                    continue
                try:
                    problem = relpath_problem(name)
                    if problem:
                        raise OutsideError(problem)
                    relative = confined(out, f"{split}/{name}{suffix}").relative_to(out).as_posix()
                except OutsideError as exc:
                    result.fail(where, f"its filename {name!r} {exc}; not exported")
                    continue
                if relative in taken:
                    result.fail(where, f"same filename as row {taken[relative]}; not exported")
                    continue
                taken[relative] = i
                target = out / relative
                if not (relative in done_before and target.is_file()):
                    try:
                        _write_row(write, np.asarray(feats[i, : int(counts[i])], dtype=np.float32), target)
                    except OSError as exc:
                        result.fail(where, f"cannot write {target}: {exc.strerror or exc}")
                        continue
                    result.written += 1
                else:
                    result.skipped += 1
                exported.append(relative)
                rate = float(fps[i])
                rows.append([split, relative, int(labels[i]), int(counts[i]), _number(rate), paths[i],
                             *(_number(float(t)) for t in segments[i])])
    except InputFileError as exc:
        if only:  # the only input: a usage error (exit 2)
            raise LayoutError(str(exc)) from None
        result.fail(str(exc.path), exc.reason)
        return None
    _remove_files(out, set(earlier.get("files", [])) - set(exported))  # videos gone from the features
    return {"source": source, "files": exported, "rows": rows}


def _write_row(write, rows: np.ndarray, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(target)
    try:
        write(rows, tmp)
        replace_into(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
