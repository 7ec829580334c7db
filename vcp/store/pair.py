"""A group's pair, ``processed_data.pt`` + ``metadata.json``: which metadata belongs to an
archive, and finishing a commit that was killed between its two renames (the order of the
commit is :class:`vcp.store.pt_writer.PtWriter`'s, the rules are here for every reader).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import torch

from vcp.store.atomic import tmp_files_of, tmp_owner
from vcp.store.contract import META_NAME, PT_NAME
from vcp.store.readers import read_json


def write_durable_json(path: Path, data: dict) -> None:
    with open(path, "w") as fh:
        fh.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_pair_id(pt: Path) -> str | None:
    """The archive's ``pair_id`` (None for archives written before it existed)."""
    data = torch.load(pt, weights_only=True, mmap=True, map_location="cpu")
    return data.get("pair_id") if isinstance(data, dict) else None


_UNREAD = object()


def settle_pair(
    directory: Path, name: str = PT_NAME, meta_name: str = META_NAME, *, repair: bool = True, pair_id=_UNREAD,
) -> dict | None:
    """The metadata that belongs to ``directory/name``, finishing an interrupted commit.

    Returns the metadata dict when it matches the archive's ``pair_id`` (after rolling a
    pending metadata file of a killed commit forward), None when there is no archive, no
    metadata, or only metadata that belongs to another archive. ``pair_id``: the archive's,
    when the caller has loaded it already (saves reading it again).
    """
    pt, meta_path = directory / name, directory / meta_name
    if not pt.is_file():
        return None
    if pair_id is _UNREAD:
        try:
            pair_id = read_pair_id(pt)
        except Exception:  # noqa: BLE001 - an unreadable archive has no trustworthy metadata
            return None
    meta = read_json(meta_path)
    if meta is not None and meta.get("pair_id") == pair_id:
        return meta
    if pair_id is None:
        return None
    for pending in tmp_files_of(directory, meta_name):
        candidate = read_json(pending)
        if tmp_owner(pending) is not None and candidate is not None and candidate.get("pair_id") == pair_id:
            if not repair:
                return candidate
            with contextlib.suppress(FileNotFoundError):
                os.replace(pending, meta_path)
                fsync_dir(directory)
            return candidate
    return None
