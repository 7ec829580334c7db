"""Opening what vcp reads back, safely: only regular files, each checked once, where it is
opened, against its schema (docs/design.md).

Every reader (extract, inspect, export, merge, the loaders) opens a features file with
:func:`open_features` and reads JSON sidecars with :func:`read_json`, so a crafted or
damaged file is one :class:`InputFileError` naming the file and what is wrong — never a
hang on a FIFO, an internal ``ValueError``, or an allocation the file's declared shape
asks for but its bytes do not back. ``InputFileError`` is what the loaders raise too.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
from pathlib import Path

import numpy as np

from vcp.store.contract import UNLABELED


class InputFileError(ValueError):
    """A file vcp reads is not what it must be; ``str()`` is one line naming the file."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


def regular_file_problem(path: Path) -> str | None:
    """Why ``path`` is not a regular file that can be opened without blocking, or None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "broken symbolic link" if os.path.islink(path) else "no such file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(st.st_mode):
        return "a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a FIFO, socket or device)"
    return None


def require_regular(path: Path) -> None:
    problem = regular_file_problem(path)
    if problem:
        raise InputFileError(path, problem)


def read_json(path: Path) -> dict | None:
    """A JSON object from a regular file, or None (missing, not regular, unreadable, not an object)."""
    if regular_file_problem(path):
        return None
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


# -- features HDF5 --------------------------------------------------------------------------------
def _json_attr(h5, key: str, default):
    raw = h5.attrs.get(key)
    if raw is None:
        return default
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str):
        raise ValueError(f"attr {key} is not JSON text")
    try:
        return json.loads(raw)
    except ValueError:
        raise ValueError(f"attr {key} is not valid JSON") from None


def failed_files_attr(h5, key: str = "failed_files") -> list[tuple[str, str]]:
    """``[(file, reason), ...]`` from a JSON attr (ValueError when it is malformed)."""
    value = _json_attr(h5, key, [])
    if not isinstance(value, list) or not all(
        isinstance(x, list | tuple) and len(x) == 2 and all(isinstance(s, str) for s in x) for x in value
    ):
        raise ValueError(f"attr {key} must be a JSON list of [file, reason] pairs")
    return [tuple(x) for x in value]


def _dataset(h5, name: str, ndim: int, kinds: str, n: int | None):
    import h5py

    if name not in h5:
        raise ValueError(f"no {name!r} dataset")
    d = h5[name]
    if not isinstance(d, h5py.Dataset):
        raise ValueError(f"{name!r} is not a dataset")
    if len(d.shape) != ndim:
        raise ValueError(f"{name!r} must be {ndim}-D, is {d.shape}")
    if d.dtype.kind not in kinds:
        raise ValueError(f"{name!r} has dtype {d.dtype}")
    if n is not None and d.shape[0] != n:
        raise ValueError(f"{name!r} has {d.shape[0]} rows, features has {n}")
    return d


def _backed_by_file(d) -> bool:
    """Whether the dataset's declared size is backed by bytes in the file: every chunk of a
    chunked dataset written (vcp writes one per row), or a contiguous one whole."""
    if d.size == 0:
        return True
    if d.chunks is None:
        return d.id.get_storage_size() >= d.size * d.dtype.itemsize
    per_chunk = math.prod(d.chunks)
    needed = math.prod(-(-s // c) for s, c in zip(d.shape, d.chunks, strict=True))
    try:
        present = d.id.get_num_chunks()
    except Exception:  # noqa: BLE001 - an HDF5 without the call: judge by bytes, generously
        return d.id.get_storage_size() * 1000 >= needed * per_chunk * d.dtype.itemsize
    return present >= needed


def features_problem(h5) -> str | None:
    """Why an open HDF5 breaks the features schema, or None. Reads only small columns."""
    import h5py

    try:
        views = "features" in h5 and getattr(h5["features"], "ndim", 0) == 4  # [N, rows, V, D], else [N, rows, D]
        feats = _dataset(h5, "features", 4 if views else 3, "f", None)
        n = feats.shape[0]
        labels = _dataset(h5, "labels", 1, "iu", n)
        counts = _dataset(h5, "num_frames", 1, "iu", n)
        if "filenames" in h5:
            names = _dataset(h5, "filenames", 1, "OS", n)
            if names.dtype.kind == "O" and h5py.check_string_dtype(names.dtype) is None:
                raise ValueError("'filenames' must hold strings")
        if "paths" in h5:
            paths = _dataset(h5, "paths", 1, "OS", n)
            if paths.dtype.kind == "O" and h5py.check_string_dtype(paths.dtype) is None:
                raise ValueError("'paths' must hold strings")
        for name in ("fps",):
            if name in h5:
                _dataset(h5, name, 1, "f", n)
        for name, kinds in (("frame_indices", "iu"), ("frame_times", "f"), ("segments", "f")):
            if name in h5:
                _dataset(h5, name, 2, kinds, n)
        for name, ndim, kinds in (("num_windows", 1, "iu"), ("window_padded", 1, "b"), ("window_frames", 3, "iu"),
                                  ("window_times", 3, "f")):
            if name in h5:
                _dataset(h5, name, ndim, kinds, n)
        for d in (feats, labels, counts):  # before reading anything of the declared size
            if not _backed_by_file(d):
                raise ValueError(f"declares {d.shape} {d.name.lstrip('/')} but the file does not hold them (truncated or crafted)")
        mapping = _json_attr(h5, "category_mapping", None)
        if not isinstance(mapping, dict) or not all(isinstance(k, str) and type(v) is int for k, v in mapping.items()):
            raise ValueError("attr category_mapping must be a JSON object of name -> int")
        failed_files_attr(h5)
        counts = counts[:]
        if n and (counts.min() < 0 or counts.max() > feats.shape[1]):
            raise ValueError(f"num_frames outside 0..{feats.shape[1]}")
        labels = labels[:]
        outside = sorted(set(labels.tolist()) - set(mapping.values()) - {UNLABELED})
        if outside:
            raise ValueError(f"labels {outside[:5]} are not indices of category_mapping")
    except ValueError as exc:
        return str(exc)
    return None


@contextlib.contextmanager
def open_features(path: str | os.PathLike):
    """``with open_features(path) as h5:`` an h5py File checked by :func:`features_problem`;
    :class:`InputFileError` (one line naming the file) when it is not a features file."""
    import h5py

    path = Path(path)
    require_regular(path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(path, f"not an HDF5 file ({' '.join(str(exc).split())[:160]})") from None
    try:
        problem = features_problem(h5)
        if problem:
            raise InputFileError(path, f"not a valid vcp features file: {problem}")
        yield h5
    finally:
        h5.close()


def stored_paths(h5) -> list[str]:
    """The ``paths`` column (each row's video as its manifest or RAW names it): "" for rows
    without one, or a file written before ``paths`` existed, or bytes that are not UTF-8."""
    if "paths" not in h5:
        return [""] * h5["labels"].shape[0]
    return [p if isinstance(p, str) else "" for p in stored_names(h5, "paths")]


def stored_names(h5, column: str = "filenames") -> list:
    """The ``filenames`` column as Python values: str where the bytes are UTF-8, else the
    raw bytes (the caller reports that row)."""
    if column not in h5:
        return [None] * h5["labels"].shape[0]
    out = []
    for n in h5[column][:]:
        if isinstance(n, bytes):
            try:
                n = n.decode("utf-8")
            except UnicodeDecodeError:
                pass
        elif isinstance(n, np.str_):
            n = str(n)
        out.append(n)
    return out
