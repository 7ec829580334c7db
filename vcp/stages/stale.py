"""Reconciling a tensorize OUT with its RAW tree: the outputs of groups no longer in RAW
are removed, and nothing else is (RAW is the truth; OUT may hold links and foreign files).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from rich.console import Console

from vcp.common.progress import plain
from vcp.inputs.layout import RawTree
from vcp.store.atomic import tmp_owner
from vcp.store.contract import (
    META_NAME,
    PARTS_DIR,
    PT_NAME,
    group_files,
    is_pt_checkpoint,
    pt_checkpoint_names,
)
from vcp.store.pair import read_pair_id
from vcp.store.readers import read_json


def remove_stale_groups(out: Path, tree: RawTree, console: Console) -> list[Path]:
    """Delete the outputs of groups that are no longer in RAW (RAW is the truth).

    Only what vcp itself wrote inside OUT is removed: a ``processed_data.pt`` that carries a
    vcp ``pair_id``, a ``metadata.json`` that does, the ``.parts`` folder, vcp's temp files;
    a folder left empty is removed too. Nothing is removed through a symbolic link (a group
    folder, or a folder above it, that is a link may lead outside OUT), and a file vcp did
    not write is never removed: both are reported and left alone. Each removal is reported.
    """
    current = {g.rel_dir for g in tree.groups}
    removed = []
    candidates = {p.parent for name in (PT_NAME, META_NAME, PARTS_DIR) for p in group_files(out, name)}
    for group_dir in sorted(candidates):
        rel = group_dir.relative_to(out)
        if rel in current or (tree.selected is not None and rel.parts[0] not in tree.selected):
            continue  # still in RAW, or a split this run was not asked to do
        links = [out / Path(*rel.parts[: k + 1]) for k in range(len(rel.parts)) if (out / Path(*rel.parts[: k + 1])).is_symlink()]
        if links:
            console.print(plain(f"left alone {out / rel} (no longer in {tree.root}): {links[0]} is a symbolic link, "
                                "and vcp removes only what it wrote inside OUT"), soft_wrap=True)
            continue
        foreign = [name for name in (PT_NAME, META_NAME) if not _written_by_vcp(group_dir / name)]
        for name in (PT_NAME, META_NAME):
            if name not in foreign:
                (group_dir / name).unlink()
        if (group_dir / PARTS_DIR).is_dir() and not (group_dir / PARTS_DIR).is_symlink():
            shutil.rmtree(group_dir / PARTS_DIR)
        checkpoint = pt_checkpoint_names()[0]
        for tmp in [*group_dir.glob(".*.tmp"), *group_dir.glob(f"{checkpoint}*")]:  # vcp's temp files, a checkpoint
            if (tmp_owner(tmp) is not None or is_pt_checkpoint(tmp.name)) and tmp.is_file() and not tmp.is_symlink():
                tmp.unlink(missing_ok=True)
        for d in (group_dir, group_dir.parent, group_dir.parent.parent):
            with contextlib.suppress(OSError):
                d.rmdir()  # only when empty
        present = [name for name in foreign if os.path.lexists(group_dir / name)]
        if present:
            console.print(plain(f"left alone {', '.join(present)} in {out / rel} (no longer in {tree.root}): "
                                "not written by vcp"), soft_wrap=True)
        else:
            removed.append(rel)
            console.print(plain(f"removed stale output {out / rel} (no longer in {tree.root})"), soft_wrap=True)
    return removed


def _written_by_vcp(path: Path) -> bool:
    """Whether ``path`` (absent counts as yes: nothing to keep) is a regular file that vcp
    wrote: a ``.pt`` or ``metadata.json`` carrying a vcp ``pair_id``."""
    if not os.path.lexists(path):
        return True
    if path.is_symlink() or not path.is_file():
        return False
    if path.suffix == ".json":
        meta = read_json(path)
        return meta is not None and "pair_id" in meta
    try:
        return read_pair_id(path) is not None
    except Exception:  # noqa: BLE001 - not an archive vcp can read: not its own
        return False
