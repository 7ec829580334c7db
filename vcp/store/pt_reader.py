"""Reading ``processed_data.pt`` groups for extract and the loaders: discovery, the schema
check (docs/design.md, "processed_data.pt"), pairing with ``metadata.json``, the checks
across a split, and reading clips into (pinned) memory.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from vcp.common.errors import LayoutError, UsageError
from vcp.store.atomic import tmp_files_of
from vcp.store.contract import (
    IMAGENET,
    META_NAME,
    PARTS_DIR,
    PT_NAME,
    Normalization,
    group_files,
    pt_problem,
    split_key,
)
from vcp.store.pair import settle_pair
from vcp.store.readers import InputFileError, regular_file_problem


class PtSchemaError(InputFileError):
    """A ``processed_data.pt`` that breaks the schema (an :class:`InputFileError`)."""


@dataclass
class TensorFile:
    path: Path
    rel: str  # <category>/<subcategory>
    data: dict
    normalization: Normalization = IMAGENET  # how its stored values are normalized
    meta: dict | None = None  # its metadata.json, when present and paired with it

    @functools.cached_property
    def records(self) -> dict[str, dict]:
        """Each video's metadata record (frame indices and times, fps...) by file name."""
        return {r["file"]: r for r in (self.meta or {}).get("videos", []) if "file" in r}

    @property
    def upstream_failures(self) -> list[tuple[str, str]]:
        """Videos tensorize could not use, as ``(<split>/<category>/<subcategory>/<file>, reason)``."""
        split = self.path.parents[2].name
        return [(f"{split}/{self.rel}/{f['file']}", f["reason"]) for f in (self.meta or {}).get("failed", [])]


def discover_processed(root: Path, splits=None) -> dict[str, list[Path]]:
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"processed folder not found: {root} (run `vcp tensorize RAW {root}` first)")
    found: dict[str, list[Path]] = {}
    for pt in group_files(root):
        split = pt.relative_to(root).parts[0]
        if splits is None or split in splits:
            found.setdefault(split, []).append(pt)
    unmerged = sorted(
        d.parent.relative_to(root).as_posix()
        for d in group_files(root, PARTS_DIR)
        if d.is_dir() and not (d.parent / PT_NAME).is_file() and (splits is None or d.relative_to(root).parts[0] in splits)
    )
    if unmerged:
        raise LayoutError(
            f"{', '.join(unmerged)} under {root} hold only shard part files (a sharded tensorize "
            f"that was not merged): run `vcp merge {root}` first"
        )
    if not found:
        wanted = f" for splits {', '.join(splits)}" if splits else ""
        raise LayoutError(
            f"no {PT_NAME} files{wanted} under {root}: expected "
            f"<split>/<category>/<subcategory>/{PT_NAME} (run `vcp tensorize` first)"
        )
    return dict(sorted(found.items(), key=lambda kv: split_key(kv[0])))


def open_tensor_file(path: Path) -> TensorFile:
    """Memory-map and check a ``.pt`` against the contract; :class:`PtSchemaError` if not.

    How the stored values are normalized is read from the archive itself (``storage``,
    ``normalization``). A ``metadata.json`` beside it is used only when it belongs to this
    archive (same ``pair_id``); one that belongs to another archive is an error, a missing
    one is harmless. Archives written before vcp recorded this in the ``.pt`` fall back to
    their metadata, and uint8 pixels with no record at all are refused.
    """
    problem = regular_file_problem(path) or ("empty file (0 bytes)" if path.stat().st_size == 0 else None)
    if problem:
        raise PtSchemaError(path, problem)
    try:
        data = torch.load(path, weights_only=True, mmap=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001
        reason = " ".join(str(exc).split())[:200]
        raise PtSchemaError(path, f"not a loadable weights_only torch file ({type(exc).__name__}: {reason})") from None
    problem = pt_problem(data)
    if problem:
        raise PtSchemaError(path, problem)
    meta = _paired_metadata(path, data)
    rel = path.parent.relative_to(path.parents[2]).as_posix()
    return TensorFile(path=path, rel=rel, data=data, normalization=_stored_normalization(path, data, meta), meta=meta)


def _paired_metadata(path: Path, data: dict) -> dict | None:
    meta_path = path.parent / META_NAME
    if not os.path.lexists(meta_path) and not tmp_files_of(path.parent, META_NAME):
        return None
    # a reader never writes to its input: a pending metadata of a killed commit is read as
    # committed, and the next tensorize rolls it forward
    meta = settle_pair(path.parent, pair_id=data.get("pair_id"), repair=False)
    if meta is None:
        raise PtSchemaError(
            path, f"{META_NAME} beside it belongs to another write (pair_id differs or it is unreadable: "
            "an interrupted or mixed write); rerun `vcp tensorize` for this folder"
        )
    return meta


def _stored_normalization(path: Path, data: dict, meta: dict | None) -> Normalization:
    """How the clips in ``path`` are normalized: the archive's own record, else (older
    archives) its metadata, else the contract's ImageNet normalization for float storage."""
    for source in (data, meta or {}):
        norm = source.get("normalization")
        if isinstance(norm, dict):
            try:
                mean, std = tuple(float(x) for x in norm["mean"]), tuple(float(x) for x in norm["std"])
            except (KeyError, TypeError, ValueError):
                raise PtSchemaError(path, f"unreadable normalization record {norm!r}") from None
            if len(mean) != 3 or len(std) != 3 or not all(math.isfinite(x) for x in mean + std) or min(std) <= 0:
                raise PtSchemaError(path, f"invalid normalization record {norm!r}")
            return Normalization(mean, std)
    if data["videos"].dtype == torch.uint8:
        raise PtSchemaError(
            path, f"uint8 pixels with no record of their normalization (no {META_NAME}); rerun `vcp tensorize`"
        )
    return IMAGENET


def check_split_groups(tensor_files: list[TensorFile]) -> tuple[list[TensorFile], list[tuple[Path, str]]]:
    """Groups whose frame count or frame size differs from the rest of the split are
    rejected (the ``(T, H, W)`` of most videos wins; ties: the first group's)."""
    shapes = Counter()
    for tf in tensor_files:
        shapes[tuple(tf.data["videos"].shape[1:])] += tf.data["videos"].shape[0]
    shapes = +shapes  # drop empty groups' shapes
    if len(shapes) <= 1:
        return tensor_files, []
    first = {tuple(tf.data["videos"].shape[1:]): i for i, tf in reversed(list(enumerate(tensor_files)))}
    common = max(shapes, key=lambda s: (shapes[s], -first[s]))
    keep, rejected = [], []
    for tf in tensor_files:
        shape = tuple(tf.data["videos"].shape[1:])
        if tf.data["videos"].shape[0] and shape != common:
            rejected.append((tf.path, f"clips are T={shape[0]}, {shape[2]}x{shape[3]} but the split's other groups are T={common[0]}, {common[2]}x{common[3]}"))
        else:
            keep.append(tf)
    return keep, rejected


def check_mappings(tensor_files: list[TensorFile]) -> None:
    """Every group must carry the same category mapping; else name who disagrees and why."""
    variants: dict[str, list[str]] = {}
    for group, mapping in ((group_name(tf), dict(tf.data["category_mapping"])) for tf in tensor_files):
        variants.setdefault(json.dumps(mapping, sort_keys=True), []).append(group)
    if len(variants) <= 1:
        return
    detail = "; ".join(
        f"{mapping} in {', '.join(groups[:3])}{f' (+{len(groups) - 3} more)' if len(groups) > 3 else ''}"
        for mapping, groups in sorted(variants.items(), key=lambda kv: -len(kv[1]))
    )
    raise UsageError(
        f"the processed groups disagree on category_mapping ({detail}): they were written from "
        "different RAW trees; rerun `vcp tensorize RAW PROCESSED` (it removes groups no longer in RAW) "
        "or delete the stale groups"
    )


def group_name(tf: TensorFile) -> str:
    """``<split>/<category>/<subcategory>`` of an opened group."""
    return f"{tf.path.parents[2].name}/{tf.rel}"


def open_split(files: list[Path]) -> tuple[list[TensorFile], list[tuple[Path, str]]]:
    """Open and check a split's ``.pt`` files: the usable ones, and ``(path, reason)`` for the rest."""
    tensor_files, failures = [], []
    for path in files:
        try:
            tensor_files.append(open_tensor_file(path))
        except PtSchemaError as exc:
            failures.append((exc.path, exc.reason))
    tensor_files, rejected = check_split_groups(tensor_files)
    return tensor_files, failures + rejected


class ClipReader:
    """Clips of ``.pt`` archives for the backbone.

    For a CUDA backbone, clip ``i`` is read with plain ``pread`` calls from its place in the
    archive (storages are stored uncompressed) straight into pinned memory, by a few threads
    ahead of use: no page faults on a memory map, no extra copy into a staging buffer, and
    the upload is a direct async copy (the memory-mapped path capped extract on a GPU:
    docs/benchmarks.md). Elsewhere, and for any archive whose layout is not the plain one,
    the clip is the memory-mapped view.
    """

    def __init__(self, pinned: bool):
        self.pinned = pinned
        self._pool = None
        self._files: dict = {}  # path -> (fd, data offset, bytes per clip) or None

    def __enter__(self) -> ClipReader:
        if self.pinned:
            self._pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="vcp-read")
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for entry in self._files.values():
            if entry:
                os.close(entry[0])

    def _layout(self, tf: TensorFile):
        if tf.path not in self._files:
            from vcp.store._archive import read_layout

            videos = tf.data["videos"]
            entry = None
            try:
                offset, size, _info = read_layout(tf.path)[0]["videos"]
                per_clip = videos[0].numel() * videos.element_size() if videos.shape[0] else 0
                if videos.is_contiguous() and videos.storage_offset() == 0 and size == videos.shape[0] * per_clip:
                    entry = (os.open(tf.path, os.O_RDONLY), offset, per_clip)
            except (OSError, KeyError, ValueError, RuntimeError):
                entry = None
            self._files[tf.path] = entry
        return self._files[tf.path]

    def submit(self, tf: TensorFile, i: int):
        """The clip (a tensor), or a future of it."""
        entry = self._layout(tf) if self._pool is not None else None
        if entry is None:
            return tf.data["videos"][i]
        return self._pool.submit(_read_pinned, entry, i, tf.data["videos"])


def _read_pinned(entry, i: int, videos: torch.Tensor) -> torch.Tensor:
    fd, offset, per_clip = entry
    out = torch.empty(videos.shape[1:], dtype=videos.dtype, pin_memory=torch.cuda.is_available())
    view = memoryview(out.view(torch.uint8).numpy()).cast("B")
    done = 0
    while done < per_clip:
        n = os.preadv(fd, [view[done:]], offset + i * per_clip + done)
        if n <= 0:
            raise OSError(f"short read at clip {i}")
        done += n
    return out
