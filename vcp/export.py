"""``vcp export FEATURES OUT --format npy``: one file per video, and an index.

Each HDF5 row becomes ``OUT/<split>/<category>/<subcategory>/<video>.<ext>`` holding only
its ``num_frames`` real rows, written atomically; ``OUT/index.csv`` lists split, filename
(the exported file, relative to OUT), label, num_frames and fps. Reruns skip files already there. A format is one function in
:data:`FORMATS` (rows -> bytes on disk), so adding one is small.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .atomic import replace_into, tmp_path_for


def _write_npy(rows: np.ndarray, path: Path) -> None:
    with open(path, "wb") as fh:
        np.save(fh, rows)


# name -> (file suffix, writer(rows [num_frames, D] float32, temp path))
FORMATS: dict[str, tuple[str, Callable[[np.ndarray, Path], None]]] = {"npy": (".npy", _write_npy)}


def split_of(h5: Path) -> str:
    """``train_features_multiscale.h5`` -> ``train``."""
    return h5.name.split("_features")[0]


def export(features: Path, out: Path, fmt: str = "npy") -> tuple[int, int]:
    """Export every ``*.h5`` in ``features`` (or the one file); returns (written, skipped)."""
    import h5py

    from .layout import LayoutError

    if fmt not in FORMATS:
        raise LayoutError(f"Invalid format ({fmt!r}). Supported values are: {', '.join(FORMATS)}.")
    files = [features] if features.is_file() else sorted(features.glob("*.h5"))
    if not files:
        raise LayoutError(f"no features files (*.h5) at {features}")
    suffix, write = FORMATS[fmt]
    written = skipped = 0
    index_rows = []
    for h5_path in files:
        split = split_of(h5_path)
        with h5py.File(h5_path, "r") as h5:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in h5["filenames"][:]]
            labels, counts = h5["labels"][:], h5["num_frames"][:]
            fps = h5["fps"][:] if "fps" in h5 else np.full(len(names), np.nan)
            for i, name in enumerate(names):
                target = out / split / f"{name}{suffix}"
                index_rows.append([split, target.relative_to(out).as_posix(), int(labels[i]), int(counts[i]),
                                   "" if math.isnan(fps[i]) else f"{float(fps[i]):.6g}"])
                if target.exists():
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
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["split", "filename", "label", "num_frames", "fps"])
    writer.writerows(index_rows)
    out.mkdir(parents=True, exist_ok=True)
    index = out / "index.csv"
    tmp = tmp_path_for(index)
    tmp.write_text(buffer.getvalue())
    replace_into(tmp, index)
    return written, skipped



