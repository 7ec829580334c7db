"""The features HDF5 writer (DESIGN.md, "HDF5 features" - contract).

``features`` float32 ``[N, max_frames, D]`` gzip level 4, one chunk per video, written
video by video (memory independent of N); ``labels`` int64 ``[N]``; ``num_frames`` int32
``[N]``; ``filenames`` str ``[N]``; attrs ``num_videos``, ``max_frames``, ``feature_dim``,
``category_mapping`` (JSON), ``multi_scale`` plus provenance. Written under a temp name
and renamed on :meth:`H5Writer.commit`; an interrupted run leaves nothing.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import h5py
import numpy as np

from .atomic import replace_into, tmp_path_for


def features_filename(split: str, multi_scale: bool) -> str:
    return f"{split}_features_multiscale.h5" if multi_scale else f"{split}_features.h5"


class H5Writer:
    def __init__(
        self,
        final: str | Path,
        *,
        max_frames: int,
        feature_dim: int,
        category_mapping: dict[str, int],
        multi_scale: bool,
        attrs: dict | None = None,
        with_order: bool = False,
    ):
        self.final = Path(final)
        self.tmp = tmp_path_for(self.final)
        self.shape = (0, max_frames, feature_dim)  # grows by one row per write
        self.category_mapping = category_mapping
        self.multi_scale = multi_scale
        self.attrs = attrs or {}
        self.with_order = with_order  # part files of a sharded run: each row's global position
        self._h5: h5py.File | None = None
        self._written = 0

    def __enter__(self) -> H5Writer:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        _, rows, dim = self.shape
        self._h5 = h5py.File(self.tmp, "w")
        self._h5.create_dataset(
            "features", shape=self.shape, maxshape=(None, rows, dim), dtype="float32",
            chunks=(1, max(rows, 1), max(dim, 1)), compression="gzip", compression_opts=4,
            fillvalue=0.0,
        )
        columns = [("labels", "int64"), ("num_frames", "int32"), ("filenames", h5py.string_dtype())]
        if self.with_order:
            columns.append(("order", "int64"))
        for name, dtype in columns:
            self._h5.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(1024,))
        return self

    def append(self, features: np.ndarray, *, label: int, filename: str, order: int | None = None) -> None:
        """Next row: ``features`` ``[rows, D]`` (rows <= max_frames), zero-padded."""
        rows = features.shape[0]
        padded = np.zeros(self.shape[1:], np.float32)
        padded[:rows] = features
        i = self._written
        for name in self._h5:
            self._h5[name].resize(i + 1, axis=0)
        self._h5["features"][i] = padded
        self._h5["labels"][i] = label
        self._h5["num_frames"][i] = rows
        self._h5["filenames"][i] = filename
        if self.with_order:
            self._h5["order"][i] = order
        self._written += 1

    @property
    def rows(self) -> int:
        """Rows appended so far."""
        return self._written

    def truncate(self, rows: int) -> None:
        """Take back every row from ``rows`` on (a rejected group's rows)."""
        for name in self._h5:
            self._h5[name].resize(rows, axis=0)
        self._written = rows

    def commit(self) -> Path:
        n, rows, dim = self._written, self.shape[1], self.shape[2]
        attrs = {
            "num_videos": n,
            "max_frames": rows,
            "feature_dim": dim,
            "category_mapping": json.dumps(self.category_mapping, sort_keys=True),
            "multi_scale": bool(self.multi_scale),
            **{k: v for k, v in self.attrs.items() if v is not None},
        }
        for key, value in attrs.items():
            self._h5.attrs[key] = value
        self._h5.close()
        self._h5 = None
        replace_into(self.tmp, self.final)
        return self.final

    def __exit__(self, *exc) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()
