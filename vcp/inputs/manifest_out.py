"""Writing a manifest: ``vcp manifest -o`` (the CSV and its class list), never onto what is
not its own."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from vcp.common.errors import LayoutError
from vcp.inputs.manifest import COLUMNS, REQUIRED
from vcp.store.folders import own_file_problem


def output_problem(target: Path, inputs: list[Path]) -> str | None:
    """Why ``vcp manifest -o`` must not write ``target``, or None: it makes a new file or
    replaces a regular file, never a folder, a link, a FIFO, a device or one of its inputs."""
    from vcp.store.names import component_problem

    if not target.name or target.name in (".", ".."):
        return "not a file name"
    problem = component_problem(target.name)
    if problem:
        return problem
    problem = own_file_problem(target)
    if problem == "no such file":  # a new file: its nearest existing parent must be a folder
        parent = target.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        return None if parent.is_dir() else f"{parent} is not a folder"
    if problem:
        return problem + (" (vcp manifest never writes through a link)" if problem == "a symbolic link" else "")
    real = os.path.realpath(target)
    if any(os.path.realpath(p) == real for p in inputs):
        return "one of this command's inputs"
    return None


def write_manifest(rows: list[dict], target: str | Path, *, classes: list[str] | None = None,
                   inputs: list[Path] = ()) -> Path:
    """The canonical CSV of ``rows`` (dicts with the column names), written whole or not at
    all; optional columns only when some row has them. ``classes`` (the whole class list) is
    written beside it as ``<name>.classes.json``, which :func:`vcp.inputs.manifest.read_manifest`
    reads. Neither file may be a folder, a link, a device or one of ``inputs``
    (:class:`LayoutError` naming it)."""
    from vcp.inputs.classes import classes_sidecar

    target = Path(target)
    problem = output_problem(target, list(inputs))
    sidecar = classes_sidecar(target) if classes is not None and not problem else None
    if sidecar is not None and output_problem(sidecar, list(inputs)):
        target, problem = sidecar, output_problem(sidecar, list(inputs))
    if problem:
        raise LayoutError(f"-o {target}: {problem}: nothing written")
    used = [c for c in COLUMNS if c in REQUIRED or any(r.get(c) is not None for r in rows)]
    target.parent.mkdir(parents=True, exist_ok=True)
    if sidecar is not None:
        _write_atomic(sidecar, lambda f: f.write(json.dumps(classes, ensure_ascii=False, indent=0) + "\n"))

    def csv_rows(f):
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(used)
        for r in rows:
            writer.writerow(["" if r.get(c) is None else r[c] for c in used])

    _write_atomic(target, csv_rows)
    return target


def _write_atomic(target: Path, write) -> None:
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "x", newline="", encoding="utf-8") as f:
            write(f)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
