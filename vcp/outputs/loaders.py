"""PyTorch datasets over what vcp wrote: features (HDF5) and clips (``processed_data.pt``).

    from torch.utils.data import DataLoader
    from vcp.data import FeatureDataset

    train = FeatureDataset("features/train_features_multiscale.h5")
    loader = DataLoader(train, batch_size=32, shuffle=True, num_workers=4)
    head = torch.nn.Linear(train.feature_dim, train.num_classes)
    for features, mask, label, name in loader:   # [B, max_frames, D], [B, max_frames] bool, label 0..K-1 (-1: unlabeled)
        logits = model(features, mask)

Labels are 0-based indices into ``.classes``, the dataset's whole class list (``num_classes``
wide, whatever classes this file holds); an unlabeled video's label is -1. ``name`` is the
video's own name (its manifest ``path``, or its path relative to RAW); ``index_of(name)``
finds its row.

Both work with ``num_workers > 0``: the HDF5 file is opened lazily in each worker (an open
h5py handle must never cross a fork), and ``.pt`` archives are memory-mapped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset


def _classes(stored, mapping: dict[str, int]) -> list:
    """The recorded ``classes`` list, or (a file written before it was) the mapping's names by index."""
    from vcp.store.contract import class_list

    return list(stored) if isinstance(stored, list) else class_list(mapping)


class _Named:
    """What both datasets share: the class list and finding a video's row by its name."""

    names: list[str]
    classes: list

    @property
    def num_classes(self) -> int:
        """The classifier's width: ``len(classes)``."""
        return len(self.classes)

    def index_of(self, name: str) -> int:
        """The row of the video named ``name`` (its manifest ``path``, or its path relative
        to RAW; the ``<category>/<subcategory>/<file>`` filename also works)."""
        if not hasattr(self, "_rows"):
            rows: dict[str, int] = {}
            for i, n in enumerate(self.filenames):
                rows.setdefault(n, i)
            for i, n in enumerate(self.names):
                rows[n] = i
            self._rows = rows
        try:
            return self._rows[name]
        except KeyError:
            raise KeyError(f"no video named {name!r} in {self.path}") from None


class FeatureDataset(_Named, Dataset):
    """Items ``(features [max_frames, D] float32, mask [max_frames] bool, label int, name str)``
    (features ``[max_frames, V, D]`` for a file of several views, named in order by ``.views``):
    ``label`` 0..num_classes-1 (-1: unlabeled), ``name`` the video's own name (``.names``).

    ``mask`` is True on the ``num_frames`` real rows (the rest is zero padding). Features of a
    clip backbone (attr ``kind`` ``clip``) have a row per window: ``.window_times[i]`` is row
    i's windows' ``[start, end)`` seconds ``[max windows, 2]`` (NaN padding), ``.window_frames``
    their source frame indices (``-1`` padding); both None for frame backbones.
    ``in_memory=True`` reads the whole split once (fast epochs for splits that fit in RAM).
    ``transform`` is applied to ``features`` (with its mask) as ``transform(features, mask)``.
    """

    def __init__(self, path: str | os.PathLike, *, in_memory: bool = False, transform: Callable | None = None):
        from vcp.store.readers import InputFileError, open_features, stored_names, stored_paths

        self.path = Path(path)
        self.transform = transform
        with open_features(self.path) as h5:  # InputFileError (one line) for anything but a features file
            self.category_mapping: dict[str, int] = json.loads(h5.attrs["category_mapping"])
            self.labels = h5["labels"][:]
            self.num_frames = h5["num_frames"][:]
            names = stored_names(h5)
            bad = next((i for i, n in enumerate(names) if isinstance(n, bytes)), None)
            if bad is not None:
                raise InputFileError(self.path, f"filenames row {bad} is not valid UTF-8")
            self.filenames = [n or "" for n in names]
            self.paths = stored_paths(h5)  # each row's video as its manifest (or RAW) names it; "" if unknown
            self.names = [p or f for p, f in zip(self.paths, self.filenames, strict=True)]
            self.classes = _classes(_json_attr(h5, "classes"), self.category_mapping)
            shape = h5["features"].shape  # [N, rows, D], or [N, rows, V, D] with views
            self.max_frames, self.feature_dim = shape[1], shape[-1]
            self.views = json.loads(h5.attrs["views"]) if len(shape) == 4 and "views" in h5.attrs else None
            self.kind = str(h5.attrs.get("kind", "frame"))
            self.window_times = h5["window_times"][:] if "window_times" in h5 else None
            self.window_frames = h5["window_frames"][:] if "window_frames" in h5 else None
            self._features = h5["features"][:] if in_memory else None
        self._h5 = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.labels)

    def _dataset(self):
        import h5py

        if self._h5 is None or self._pid != os.getpid():  # one handle per process, opened on first use
            self._h5, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._h5["features"]

    def __getitem__(self, index: int):
        rows = self._features[index] if self._features is not None else self._dataset()[index]
        features = torch.from_numpy(np.asarray(rows, dtype=np.float32))
        mask = torch.arange(self.max_frames) < int(self.num_frames[index])
        if self.transform is not None:
            features = self.transform(features, mask)
        return features, mask, int(self.labels[index]), self.names[index]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_h5"], state["_pid"] = None, None  # never pickle an open handle into a worker
        return state


class ClipDataset(_Named, Dataset):
    """Items ``(clip [T, 3, S, S] float32 normalized, label int, name str)`` over every
    group of ``processed_root/<split>``: ``label`` 0..num_classes-1 (-1: unlabeled), ``name``
    the video's own name (``.names``).

    Archives are memory-mapped (``weights_only=True``). uint8 and float16 storages are
    converted as vcp extract does: to float32, then normalized with the archive's own
    record into ImageNet's normalization (the contract's float32 values).

    The checks are extract's: a group that breaks the schema, groups whose clips differ in
    shape from the split's, or groups that disagree on the category mapping raise
    :class:`vcp.store.readers.InputFileError` naming the file; a clip holding NaN or Inf raises
    it when that clip is read.
    """

    def __init__(self, processed_root: str | os.PathLike, split: str, *, transform: Callable | None = None):
        from vcp.common.errors import UsageError
        from vcp.store.contract import IMAGENET, PT_NAME, group_files
        from vcp.store.pt_reader import check_mappings, open_split
        from vcp.store.readers import InputFileError

        root = Path(processed_root)
        self.path = root / split
        self.transform = transform
        files = group_files(root, split=split)
        if not files:
            raise FileNotFoundError(f"no {PT_NAME} under {root / split}/<category>/<subcategory>/")
        self.groups, rejected = open_split(files)
        if rejected:
            raise InputFileError(*rejected[0])
        try:
            check_mappings(self.groups)
        except UsageError as exc:
            raise InputFileError(root / split, str(exc)) from None
        self.category_mapping = dict(self.groups[0].data["category_mapping"])
        self._index = [(g, i) for g, tf in enumerate(self.groups) for i in range(tf.data["videos"].shape[0])]
        # each item's video as its manifest (or RAW) names it, from metadata.json ("" if unknown)
        self.paths = [_record_path(self.groups[g], i) for g, i in self._index]
        self.filenames = [f"{self.groups[g].rel}/{self.groups[g].data['filenames'][i]}" for g, i in self._index]
        self.names = [p or f for p, f in zip(self.paths, self.filenames, strict=True)]
        self.classes = _classes(self.groups[0].data.get("classes"), self.category_mapping)
        target = IMAGENET
        self._affine = []
        for tf in self.groups:  # stored -> ImageNet: x * scale + shift, per channel
            ss, sm = torch.tensor(tf.normalization.std), torch.tensor(tf.normalization.mean)
            ts, tm = torch.tensor(target.std), torch.tensor(target.mean)
            self._affine.append(((ss / ts).view(3, 1, 1), ((sm - tm) / ts).view(3, 1, 1)))

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int):
        g, i = self._index[index]
        tf = self.groups[g]
        clip = tf.data["videos"][i].float()
        if not torch.isfinite(clip).all():
            from vcp.store.readers import InputFileError

            raise InputFileError(tf.path, f"clip {i} ({tf.data['filenames'][i]}) holds NaN or Inf values (vcp extract rejects this group)")
        scale, shift = self._affine[g]
        if not (torch.all(scale == 1) and torch.all(shift == 0)):
            clip = clip * scale + shift
        if self.transform is not None:
            clip = self.transform(clip)
        return clip, int(tf.data["labels"][i]), self.names[index]


def _json_attr(h5, name: str):
    try:
        return json.loads(h5.attrs[name]) if name in h5.attrs else None
    except (TypeError, ValueError):
        return None


def _record_path(tf, i: int) -> str:
    path = tf.records.get(tf.data["filenames"][i], {}).get("path")
    return path if isinstance(path, str) else ""
