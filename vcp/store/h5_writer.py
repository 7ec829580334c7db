"""The features HDF5 writer (docs/design.md, "HDF5 features" - contract).

``features`` float32 ``[N, max_frames, D]`` gzip level 4, one chunk per video, written
video by video (memory independent of N); ``labels`` int64 ``[N]``; ``num_frames`` int32
``[N]``; ``filenames`` str ``[N]``; attrs ``num_videos``, ``max_frames``, ``feature_dim``,
``category_mapping`` (JSON), ``classes`` (JSON list, index = label), ``multi_scale`` plus provenance. Written under a temp name
and renamed on :meth:`H5Writer.commit`; an interrupted run leaves no features file.

With ``segments`` (a path prefix), :meth:`H5Writer.checkpoint` commits the rows written
since the last segment as a small file of their own (``<prefix>.seg-000003.h5``: the
compressed chunks as they are, the columns and the caller's state, written under a temp
name and renamed), and entering a writer puts the rows of every committed segment back
(:attr:`H5Writer.resumed` is the state saved with the last one): a run stopped at any
point restarts from its last segment, not from zero. The caller removes the segments once
the file is committed. The same words as :class:`vcp.store.pt_writer.PtWriter`'s: ``add``,
``checkpoint``, ``resumed``, ``commit``.
(A little longer than 300 lines: the segments share the writer's rows and columns, so they
live with it.)
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import re
import sys
import zlib
from glob import escape as glob_escape
from pathlib import Path

import h5py
import numpy as np

from vcp.common.report import one_line
from vcp.store.atomic import name_write_error, replace_into, tmp_path_for
from vcp.store.contract import SEGMENT_RE, SEGMENT_SUFFIX, class_list, segment_name
from vcp.store.folders import own_file_problem, remove_entry

GZIP_LEVEL = 4
_GROW = 256  # rows the features dataset grows by


class H5Writer:
    """``with H5Writer(path, ...) as w: w.add(rows, ...); w.commit()``.

    Each video's row is one chunk. With ``compress_threads``, chunks are gzip-compressed
    in a thread pool (zlib releases the GIL) and written in order with HDF5's direct chunk
    write: the same deflate stream HDF5's own filter writes, so readers see an ordinary
    gzip level 4 dataset. The small per-video columns are kept in memory and written at
    commit.
    """

    def __init__(
        self,
        final: str | Path,
        *,
        max_frames: int,
        feature_dim: int,
        category_mapping: dict[str, int],
        multi_scale: bool,
        views: int = 1,
        attrs: dict | None = None,
        with_order: bool = False,
        compress_threads: int = 0,
        segments: Path | None = None,
    ):
        self.final = Path(final)
        self.tmp = tmp_path_for(self.final)
        # a row: [max_frames, D], or with several views [max_frames, V, D]
        self.row_shape = (max_frames, feature_dim) if views == 1 else (max_frames, views, feature_dim)
        self.category_mapping = category_mapping
        self.multi_scale = multi_scale
        self.attrs = attrs or {}
        self.with_order = with_order  # part files of a sharded run: each row's global position
        self.compress_threads = compress_threads
        self._h5: h5py.File | None = None
        self._pool = None
        self._pending: collections.deque = collections.deque()  # (row, future of compressed bytes)
        self._columns: dict[str, list] = {
            "labels": [], "num_frames": [], "filenames": [], "order": [], "fps": [], "frame_indices": [], "frame_times": [],
            "paths": [], "segments": [], "window_frames": [], "window_times": [], "window_padded": [],
        }
        self._written = 0
        self.segments = segments  # path prefix of this file's committed segments, or None
        self._saved = 0  # rows held by committed segments
        self._unsaved_size = 0  # bytes of the chunks in _unsaved
        self._unsaved: list[tuple[int, bytes]] = []  # (row, compressed chunk) since the last segment
        self._next_segment = 0

    def __enter__(self) -> H5Writer:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self._h5 = h5py.File(self.tmp, "w")
        self._h5.create_dataset(
            "features", shape=(0, *self.row_shape), maxshape=(None, *self.row_shape), dtype="float32",
            chunks=(1, *(max(x, 1) for x in self.row_shape)), compression="gzip", compression_opts=GZIP_LEVEL,
            fillvalue=0.0,
        )
        if self.compress_threads:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.compress_threads, thread_name_prefix="vcp-gzip")
        self.resumed = self._load_segments() if self.segments is not None else None
        return self

    @property
    def rows(self) -> int:
        """Rows added so far."""
        return self._written

    @property
    def unsaved_bytes(self) -> int:
        """Bytes held in memory for the rows since the last segment: their compressed chunks,
        and rows still being compressed at their full size."""
        return self._unsaved_size + len(self._pending) * int(np.prod(self.row_shape)) * 4

    def add(
        self, features: np.ndarray, *, label: int, filename: str, order: int | None = None,
        fps: float | None = None, frame_indices=None, frame_times=None, path: str | None = None, segment=None,
        window_frames=None, window_times=None, short: bool | None = None,
    ) -> None:
        """Next row: ``features`` ``[rows, D]`` (``[rows, V, D]`` with views; rows <= max_frames), zero-padded; with the
        video's rate and the frames it was sampled at when known (a clip backbone's rows:
        each window's source frames ``[W, window]``, its ``[start, end)`` seconds ``[W, 2]``,
        and whether its one window was padded, ``short``)."""
        rows = features.shape[0]
        padded = np.zeros(self.row_shape, np.float32)
        padded[:rows] = features
        i = self._written
        dset = self._h5["features"]
        if dset.shape[0] <= i:
            dset.resize(i + _GROW, axis=0)
        if self._pool is None:
            dset[i] = padded
            if self.segments is not None:
                self._keep_unsaved(i, zlib.compress(padded.tobytes(), GZIP_LEVEL))
        else:
            self._pending.append((i, self._pool.submit(zlib.compress, padded.tobytes(), GZIP_LEVEL)))
            self._drain(block=False)
        for name, value in (
            ("labels", label), ("num_frames", rows), ("filenames", filename), ("order", order),
            ("fps", fps), ("frame_indices", frame_indices), ("frame_times", frame_times),
            ("paths", path), ("segments", segment), ("window_frames", _listed(window_frames)),
            ("window_times", _listed(window_times)), ("window_padded", short),
        ):
            self._columns[name].append(value)
        self._written += 1

    def _drain(self, block: bool) -> None:
        dset = self._h5["features"]
        while self._pending and (block or self._pending[0][1].done()):
            i, future = self._pending.popleft()
            data = future.result()
            dset.id.write_direct_chunk(self._chunk(i), data)
            if self.segments is not None:
                self._keep_unsaved(i, data)

    def _chunk(self, row: int) -> tuple:
        """The offset of ``row``'s chunk (the whole row)."""
        return (row,) + (0,) * len(self.row_shape)

    def truncate(self, rows: int) -> None:
        """Take back every row from ``rows`` on (a rejected group's rows)."""
        self._drain(block=True)
        self._h5["features"].resize(rows, axis=0)
        for values in self._columns.values():
            del values[rows:]
        self._written = rows
        if rows < self._saved:  # rows a segment holds are taken back: the next segment starts here
            self._saved = rows
        self._unsaved = [(i, data) for i, data in self._unsaved if i < rows]
        self._unsaved_size = sum(len(data) for _, data in self._unsaved)

    def _keep_unsaved(self, row: int, data: bytes) -> None:
        self._unsaved.append((row, data))
        self._unsaved_size += len(data)

    # -- segments: committed progress of a run that may be stopped --------------------------------
    def _segment_paths(self) -> list[tuple[int, Path]]:
        pattern = re.compile(re.escape(self.segments.name) + SEGMENT_RE)
        found = [(int(m.group(1)), p) for p in self.segments.parent.glob(f"{glob_escape(self.segments.name)}{SEGMENT_SUFFIX}*.h5")
                 if (m := pattern.fullmatch(p.name))]
        return sorted(found)

    def checkpoint(self, state: dict) -> Path:
        """Commit the rows written since the last segment, with ``state`` (JSON-able)."""
        self._drain(block=True)
        start, end = self._saved, self._written
        path = self.segments.parent / segment_name(self.segments.name, self._next_segment)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_path_for(path)
        try:
            with h5py.File(tmp, "w") as seg:
                dset = seg.create_dataset(
                    "features", shape=(end - start, *self.row_shape), maxshape=(None, *self.row_shape), dtype="float32",
                    chunks=(1, *(max(x, 1) for x in self.row_shape)), compression="gzip", compression_opts=GZIP_LEVEL,
                    fillvalue=0.0,
                )
                for i, data in self._unsaved:
                    dset.id.write_direct_chunk(self._chunk(i - start), data)
                seg.attrs["start"], seg.attrs["end"] = start, end
                seg.attrs["row_shape"] = json.dumps(list(self.row_shape))
                seg.attrs["columns"] = json.dumps({k: v[start:end] for k, v in self._columns.items()}, default=_plain)
                seg.attrs["state"] = json.dumps(state, default=_plain)
            replace_into(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._next_segment += 1
        self._saved, self._unsaved, self._unsaved_size = end, [], 0
        return path

    def _load_segments(self) -> dict | None:
        """Put the rows of every committed segment back, in order; the state saved with the
        last one (None: no segment). A segment that cannot be read ends the chain there
        (it and those after it are removed: their rows are made again)."""
        state = None
        chain = self._segment_paths()
        for k, (number, path) in enumerate(chain):
            try:
                problem = own_file_problem(path)  # a FIFO is never opened (it would block), a link never followed
                if problem:
                    raise ValueError(problem)
                state = self._apply_segment(path)
            except (OSError, ValueError, KeyError, TypeError, zlib.error) as exc:
                print(one_line(f"vcp: warning: {path}: segment set aside ({exc}); its rows and those after it are "
                               "made again"), file=sys.stderr, flush=True)
                for _, later in chain[k:]:
                    remove_entry(later)
                break
            self._next_segment = number + 1
        return state

    def _apply_segment(self, path: Path) -> dict:
        with h5py.File(path, "r") as seg:
            start, end = int(seg.attrs["start"]), int(seg.attrs["end"])
            if json.loads(seg.attrs["row_shape"]) != list(self.row_shape) or start > self._written:
                raise ValueError(f"{path}: does not continue this file")
            columns = json.loads(seg.attrs["columns"])
            state = json.loads(seg.attrs["state"])
            if any(len(columns[k]) != end - start for k in self._columns):
                raise ValueError(f"{path}: columns do not match its rows")
            self.truncate(start)
            dset = self._h5["features"]
            if dset.shape[0] < end:
                dset.resize(end, axis=0)
            row_bytes = int(np.prod(self.row_shape)) * 4
            for j in range(end - start):
                mask, data = seg["features"].id.read_direct_chunk(self._chunk(j))
                if len(zlib.decompress(data) if mask == 0 else data) != row_bytes:  # a damaged chunk never reaches the file
                    raise ValueError(f"row {start + j} does not decompress to {row_bytes} bytes")
                dset.id.write_direct_chunk(self._chunk(start + j), data, filter_mask=mask)
        for name, values in self._columns.items():
            values += columns[name]
        self._written = self._saved = end
        return state

    def commit(self) -> Path:
        self._drain(block=True)
        n, rows, dim = self._written, self.row_shape[0], self.row_shape[-1]
        self._h5["features"].resize(n, axis=0)
        columns = [("labels", "int64"), ("num_frames", "int32"), ("filenames", h5py.string_dtype())]
        if self.with_order:
            columns.append(("order", "int64"))
        for name, dtype in columns:
            self._h5.create_dataset(name, data=np.array(self._columns[name], dtype=object if name == "filenames" else dtype), dtype=dtype)
        self._write_sampling()
        self._write_paths()
        self._write_windows()
        attrs = {
            "num_videos": n,
            "max_frames": rows,
            "feature_dim": dim,
            "category_mapping": json.dumps(self.category_mapping, sort_keys=True),
            "classes": json.dumps(class_list(self.category_mapping)),
            "multi_scale": bool(self.multi_scale),
            **{k: v for k, v in self.attrs.items() if v is not None},
        }
        for key, value in attrs.items():
            self._h5.attrs[key] = value
        self._h5.close()
        self._h5 = None
        replace_into(self.tmp, self.final)
        return self.final

    def _write_sampling(self) -> None:
        """``fps`` [N], ``frame_indices`` [N, T], ``frame_times`` [N, T] (seconds): where each
        row's frames came from. Rows whose sampling is unknown (an archive without its
        metadata) get NaN / -1. Written when every row has T frames (one T per split)."""
        indices, times = self._columns["frame_indices"], self._columns["frame_times"]
        lengths = {len(x) for x in indices if x is not None}
        if len(lengths) != 1:
            return
        (t,) = lengths
        n = self._written
        fps = np.array([np.nan if v is None else v for v in self._columns["fps"]], np.float64)
        idx = np.full((n, t), -1, np.int64)
        sec = np.full((n, t), np.nan, np.float64)
        for row, (i, s) in enumerate(zip(indices, times, strict=True)):
            if i is not None:
                idx[row] = i
            if s is not None:
                sec[row] = s
        self._h5.create_dataset("fps", data=fps)
        self._h5.create_dataset("frame_indices", data=idx)
        self._h5.create_dataset("frame_times", data=sec)

    def _write_paths(self) -> None:
        """``paths`` str [N]: each row's video as its manifest (or RAW) names it, and
        ``segments`` float64 [N, 2]: the ``[start, end)`` seconds it was sampled in (NaN: open,
        or the whole video). Written when the rows' paths are known."""
        paths = self._columns["paths"]
        if all(p is None for p in paths):
            return
        self._h5.create_dataset("paths", data=np.array(["" if p is None else p for p in paths], dtype=object),
                                dtype=h5py.string_dtype())
        segments = np.full((self._written, 2), np.nan, np.float64)
        for row, seg in enumerate(self._columns["segments"]):
            if seg is not None:
                segments[row] = [np.nan if v is None else v for v in seg]
        self._h5.create_dataset("segments", data=segments)

    def _write_windows(self) -> None:
        """A clip backbone's rows: ``num_windows`` int32 [N], ``window_frames`` int64
        [N, max windows, window] (each window's source frame indices, -1 padding),
        ``window_times`` float64 [N, max windows, 2] (``[start, end)`` seconds, NaN padding)
        and ``window_padded`` bool [N] (shorter than one window: the last frame repeated)."""
        frames = self._columns["window_frames"]
        if all(f is None for f in frames):
            return
        counts = [0 if f is None else len(f) for f in frames]
        width = max(len(f[0]) for f in frames if f)
        idx = np.full((self._written, max(counts), width), -1, np.int64)
        sec = np.full((self._written, max(counts), 2), np.nan, np.float64)
        for row, (f, t) in enumerate(zip(frames, self._columns["window_times"], strict=True)):
            if f:
                idx[row, : len(f)] = f
                sec[row, : len(t)] = t
        self._h5.create_dataset("num_windows", data=np.array(counts, np.int32))
        self._h5.create_dataset("window_frames", data=idx)
        self._h5.create_dataset("window_times", data=sec)
        self._h5.create_dataset("window_padded", data=np.array([bool(x) for x in self._columns["window_padded"]]))

    def __exit__(self, exc_type, exc, tb) -> None:
        name_write_error(exc, self.final)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


def _listed(value):
    """An array column as plain lists (kept in memory, and JSON in a segment)."""
    return value.tolist() if isinstance(value, np.ndarray) else value


def _plain(value):
    """numpy scalars and arrays in a segment's JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON: {type(value).__name__}")


def remove_segments(segments_dir: Path, final_name: str, *, keep: str | None = None) -> None:
    """Remove the committed segments of ``final_name`` (all, or all but the prefix ``keep``:
    segments of other settings are stale)."""
    for path in segments_dir.glob(f"{glob_escape(final_name)}.*{SEGMENT_SUFFIX}*.h5"):
        if keep is None or not path.name.startswith(f"{keep}{SEGMENT_SUFFIX}"):
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        segments_dir.rmdir()  # only when empty
