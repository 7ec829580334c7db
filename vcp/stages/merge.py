"""``vcp merge DIR``: join the part files of a sharded run into the contract's files.

The merged files equal a single-process run: same row order, labels, filenames and
frame data (rows are copied, never recomputed); run-specific metadata (timings, batch
sizes) is combined. Parts from different settings (another backbone, frame count,
strategy...) or an incomplete set are refused with a clear error; nothing is written
then. A successful merge removes the parts.
(A little longer than 300 lines: the ``.pt`` and the features merges share the checks of a
complete, consistent set of parts and the row order, so they live together.)
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np
import torch

from vcp.store.atomic import remove_dead_tmp_under
from vcp.store.contract import (
    GROUP_SETTINGS,
    H5_LAYOUT_ATTRS,
    H5_SAME_ACROSS_PARTS,
    H5_SHARD_ATTRS,
    META_NAME,
    PARTS_DIR,
    PT_NAME,
    RUN_SPECIFIC,
    feature_final_name,
    group_files,
    part_of,
    pt_problem,
)
from vcp.store.folders import link_under
from vcp.store.h5_writer import H5Writer
from vcp.store.pt_writer import PtWriter
from vcp.store.readers import (
    InputFileError,
    failed_files_attr,
    open_features,
    read_json,
    regular_file_problem,
)


class MergeError(Exception):
    """Parts that cannot be merged (missing, or from different settings)."""


def _complete_set(paths: list[Path], what: str) -> list[Path]:
    """The parts ``part-i-of-n`` for i in 0..n-1, in order; error if mixed or missing."""
    by_count = defaultdict(dict)
    for p in paths:
        found = part_of(p.name)
        if found:
            by_count[found[1]][found[0]] = p
    if len(by_count) != 1:
        raise MergeError(f"{what}: parts from runs with different shard counts {sorted(by_count)}; remove the stale ones")
    (count, parts), = by_count.items()
    missing = [i for i in range(count) if i not in parts]
    if missing:
        raise MergeError(f"{what}: missing parts {missing} of {count} (rerun those ranks)")
    return [parts[i] for i in range(count)]


def _check_same(what: str, values: dict[Path, object], field: str) -> None:
    distinct = {json.dumps(v, sort_keys=True, default=str) for v in values.values()}
    if len(distinct) > 1:
        detail = "; ".join(f"{p.name}: {v}" for p, v in values.items())
        raise MergeError(f"{what}: parts disagree on {field} (different settings or inputs): {detail}")


# -- processed_data.pt --------------------------------------------------------------------


def merge_tensor_group(group_dir: Path, *, check_only: bool = False) -> Path:
    parts_dir = group_dir / PARTS_DIR
    metas = _complete_set(sorted(parts_dir.glob("part-*.json")), str(group_dir))
    meta = {m: read_json(m) for m in metas}
    unreadable = [m.name for m, v in meta.items() if v is None or not isinstance(v.get("videos"), list)]
    if unreadable:
        raise MergeError(f"{group_dir}: {', '.join(unreadable)} is not a readable part metadata file (rerun that rank)")
    what = str(group_dir)
    for key in GROUP_SETTINGS:
        _check_same(what, {m: v.get(key) for m, v in meta.items()}, key)
    _check_same(what, {m: v["fingerprint"] for m, v in meta.items()}, "settings/inputs fingerprint")
    for p in metas:
        if not p.with_suffix(".pt").is_file():
            raise MergeError(f"{what}: {p.with_suffix('.pt').name} is missing")
    if check_only:
        return group_dir / PT_NAME
    # single-process order: the group's files sorted by name (layout.discover_raw)
    rows = sorted(
        ((rec["file"], m, i) for m, v in meta.items() for i, rec in enumerate(v["videos"])),
        key=lambda r: r[0],
    )
    first = meta[metas[0]]
    data = {m: _load_part(m.with_suffix(".pt")) for m in metas}
    videos = data[metas[0]]["videos"]
    merged = {k: v for k, v in first.items() if k not in RUN_SPECIFIC}
    merged["videos"] = [meta[m]["videos"][i] for _, m, i in rows]
    merged["failed"] = sorted((f for v in meta.values() for f in v["failed"]), key=lambda f: f["file"])
    merged["num_videos"] = len(rows)
    merged["batch_sizes"] = _sum_counts(v.get("batch_sizes", {}) for v in meta.values())
    merged["decoder_fallbacks"] = [x for v in meta.values() for x in v.get("decoder_fallbacks", [])]
    merged["elapsed_s"] = round(sum(v.get("elapsed_s", 0) for v in meta.values()), 3)
    merged["created_at"] = max(v.get("created_at", "") for v in meta.values())
    merged["merged_from_shards"] = len(metas)
    _, t, _, s, _ = videos.shape
    expected = [(name, int(data[m]["labels"][i])) for name, m, i in rows]
    with PtWriter(
        group_dir, frames=t, size=s, category_mapping=first["category_mapping"], dtype=videos.dtype, expected=expected
    ) as w:
        for name, m, i in rows:
            d = data[m]
            w.add(d["videos"][i], name, int(d["labels"][i]))
        w.commit(merged)
    shutil.rmtree(parts_dir)
    return group_dir / PT_NAME


def _load_part(path: Path) -> dict:
    """A part archive, checked against the ``.pt`` schema like any other."""
    problem = regular_file_problem(path)
    if problem is None:
        try:
            data = torch.load(path, weights_only=True, mmap=True, map_location="cpu")
        except Exception as exc:  # noqa: BLE001
            problem = f"not a loadable weights_only torch file ({type(exc).__name__})"
        else:
            problem = pt_problem(data)
    if problem:
        raise MergeError(f"{path}: {problem} (rerun that rank)")
    return data


def _sum_counts(dicts) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for d in dicts:
        for k, v in d.items():
            total[k] += v
    return dict(sorted(total.items(), key=lambda kv: int(kv[0])))


# -- features HDF5 --------------------------------------------------------------------------


def merge_features(final: Path, parts: list[Path], *, check_only: bool = False) -> Path:
    parts = _complete_set(parts, str(final))
    attrs = {}
    for p in parts:
        try:
            with open_features(p) as h5:
                if "order" not in h5:
                    raise InputFileError(p, "no 'order' dataset: not a shard's part file")
                failed_files_attr(h5)
                attrs[p] = dict(h5.attrs)
        except InputFileError as exc:
            raise MergeError(f"{exc} (rerun that rank)") from None
    clips = _plain(attrs[parts[0]].get("kind")) == "clip"  # rows are windows: each rank's longest video sets its part's width
    for key in H5_SAME_ACROSS_PARTS:
        if not (clips and key == "max_frames"):
            _check_same(str(final), {p: _plain(a.get(key)) for p, a in attrs.items()}, key)
    if check_only:
        return final
    first = attrs[parts[0]]
    rows = []  # (order, part, index)
    for p in parts:
        with h5py.File(p, "r") as h5:
            rows += [(int(o), p, i) for i, o in enumerate(h5["order"][:])]
    rows.sort(key=lambda r: r[0])
    keep = {k: _plain(v) for k, v in first.items() if k not in H5_LAYOUT_ATTRS + H5_SHARD_ATTRS}
    # every rank validates every .pt, so a bad file can be reported by several parts
    failed = {tuple(f) for a in attrs.values() for f in json.loads(a.get("failed_files", "[]"))}
    keep["failed_files"] = json.dumps([list(f) for f in sorted(failed)])
    keep["merged_from_shards"] = len(parts)
    files = {p: h5py.File(p, "r") for p in parts}
    try:
        with H5Writer(
            final, max_frames=max(int(a["max_frames"]) for a in attrs.values()), feature_dim=int(first["feature_dim"]),
            category_mapping=json.loads(first["category_mapping"]), multi_scale=bool(first["multi_scale"]), attrs=keep,
            views=_views_of(files[parts[0]]),
        ) as w:
            for _, p, i in rows:
                h5 = files[p]
                n = int(h5["num_frames"][i])
                name = h5["filenames"][i]
                w.add(h5["features"][i, :n], label=int(h5["labels"][i]), filename=name.decode() if isinstance(name, bytes) else name,
                      **_row_record(h5, i))
            w.commit()
    finally:
        for h5 in files.values():
            h5.close()
    for p in parts:
        p.unlink()
    with contextlib.suppress(OSError):
        parts[0].parent.rmdir()
    return final


def _row_record(h5, i: int) -> dict:
    """Row ``i``'s record beside its features: where its frames (or windows) came from."""
    record = {}
    if "frame_indices" in h5:
        record = {"fps": float(h5["fps"][i]), "frame_indices": h5["frame_indices"][i].tolist(),
                  "frame_times": h5["frame_times"][i].tolist()}
    if "paths" in h5:
        path = h5["paths"][i]
        seg = [None if np.isnan(v) else float(v) for v in h5["segments"][i]] if "segments" in h5 else None
        record.update(path=path.decode() if isinstance(path, bytes) else path,
                      segment=None if seg is None or seg == [None, None] else seg)
    if "window_frames" in h5:  # a clip backbone's windows
        k = int(h5["num_windows"][i])
        record.update(window_frames=h5["window_frames"][i, :k], window_times=h5["window_times"][i, :k],
                      short=bool(h5["window_padded"][i]))
    return record


def _views_of(h5) -> int:
    """Views each row of a features file holds (1: rows are [rows, D])."""
    shape = h5["features"].shape
    return shape[2] if len(shape) == 4 else 1


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value


def feature_part_groups(features: Path) -> dict[Path, list[Path]]:
    """``final path -> its part files`` found under ``FEATURES/.parts``."""
    groups: dict[Path, list[Path]] = defaultdict(list)
    for p in sorted((features / PARTS_DIR).glob("*.part-*.h5")):
        final_name = feature_final_name(p.name)
        groups[features / final_name].append(p)
    return dict(groups)


def merge_all(root: str | Path) -> list[Path]:
    """Merge every set of parts under ``root`` (a tensorize OUT or an extract FEATURES),
    holding the folder's lock (no run may be writing parts meanwhile)."""
    from vcp.store.lock import output_lock

    root = Path(root)
    if not root.is_dir():
        raise MergeError(f"folder not found: {root}")
    with output_lock(root):
        remove_dead_tmp_under(root)  # a killed merge's temp files
        return _merge_all_locked(root)


def _merge_all_locked(root: Path) -> list[Path]:
    groups = [d.parent for d in group_files(root, PARTS_DIR) if d.is_dir()]
    linked = next((link for g in groups if (link := link_under(root, g.relative_to(root) / PARTS_DIR)) is not None), None)
    if linked is not None or (root / PARTS_DIR).is_symlink():
        raise MergeError(f"{linked or root / PARTS_DIR} is a symbolic link: vcp merges only inside {root} (remove the link)")
    features = feature_part_groups(root)
    # check every set first: a refused merge writes nothing at all
    for group in groups:
        merge_tensor_group(group, check_only=True)
    for final, parts in features.items():
        merge_features(final, parts, check_only=True)
    merged = [merge_tensor_group(group) for group in groups]
    merged += [merge_features(final, parts) for final, parts in features.items()]
    return merged



def finish_sharded_run(shard, root: Path) -> list[Path]:
    """After this rank's work: under torchrun, wait for all ranks, merge on rank 0, wait again.

    (The second barrier keeps every rank alive until the merge is written, so torchrun
    does not tear rank 0 down when another rank exits.) Elsewhere (``--shard``, srun), say
    how to merge once every shard is done.
    """
    import sys

    from vcp.stages.shard import distributed_barrier

    if not shard.active:
        return []
    merged: list[Path] = []
    if shard.launcher == "torchrun" and distributed_barrier():
        try:
            if shard.index == 0:
                merged = merge_all(root)
                print(f"vcp: merged {len(merged)} file(s) from {shard.count} ranks under {root}", file=sys.stderr)
        finally:
            distributed_barrier()
    else:
        print(
            f"vcp: shard {shard.index}/{shard.count} done; when every shard has finished run: vcp merge {root}",
            file=sys.stderr,
        )
    return merged

def merged_failures(paths: list[Path]) -> list[tuple[str, str]]:
    """``(file, reason)`` recorded in merged outputs: metadata.json ``failed`` of each
    group, ``failed_files`` of each HDF5."""

    out = []
    for path in paths:
        if path.suffix == ".h5":
            with open_features(path) as h5:
                out += failed_files_attr(h5)
        else:
            meta = read_json(path.parent / META_NAME) or {}
            out += [(str(path.parent / f["file"]), f["reason"]) for f in meta.get("failed", [])]
    return sorted(set(out))
