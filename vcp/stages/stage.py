"""The skeleton every stage runs on (tensorize, extract, ``extract --from-videos``).

* :func:`fingerprint`: one hash of everything an output depends on (inputs and settings);
  it is stored in the output, and an output whose fingerprint matches is up to date.
* :func:`pick_target`: where this process writes (the final output, or with sharding its
  part) and what is already there when that is up to date — a query, nothing is written.
* :func:`owned_files`, :func:`shard_label`: which inputs a shard handles, and how it says so.
* :class:`SplitResult` / :class:`RunResult` and :func:`summary_table`: one result type and
  one table for every stage (each stage names its columns).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from vcp.common.progress import PlainTable
from vcp.stages.shard import Shard, assign_balanced
from vcp.store.folders import file_stamp

T = TypeVar("T")
R = TypeVar("R")


def fingerprint(payload: dict) -> str:
    """sha256 of ``payload`` as canonical JSON."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def pick_target(final: T, part: T | None, current: Callable[[T], R | None], *, overwrite: bool) -> tuple[T, R | None]:
    """Where this process writes: ``final``, or ``part`` when sharding (``part`` not None)
    unless the final output is already up to date (merged earlier). The second value is what
    ``current(target)`` found there (None: to be made). Every target is asked, also with
    ``overwrite``, so a ``current`` that finishes a killed commit always gets to."""
    for target in [final] if part is None else [final, part]:
        found = current(target)
        if found is not None and not overwrite:
            return target, found
    return (final if part is None else part), None


def owned_files(files: Sequence[Path], shard: Shard) -> set[Path]:
    """The files this rank handles: all of them, or a slice balanced by file size."""
    if not shard.active:
        return set(files)
    files = list(dict.fromkeys(files))  # a video listed in two splits has one owner
    ranks = assign_balanced([file_stamp(p)[0] for p in files], shard.count)
    return {p for p, r in zip(files, ranks, strict=True) if r == shard.index}


def shard_label(shard: Shard) -> str:
    """`` [shard i/n]`` for progress bars, or nothing."""
    return f" [shard {shard.index}/{shard.count}]" if shard.active else ""


@dataclass
class SplitResult:
    """What a stage did with one split (in this process)."""

    split: str
    videos: int = 0  # tensorize: videos this process was given; extract: rows written (or found)
    written: int = 0  # tensorize: videos written by this run
    frames: int = 0  # extract: frames through the backbone
    skipped: int = 0  # outputs found up to date (tensorize: groups; extract: 1 for the split)
    seconds: float = 0.0
    output: Path | None = None
    output_bytes: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    upstream_failures: list[tuple[str, str]] = field(default_factory=list)  # an earlier stage's, recorded only


class RunResult(list):
    """A stage's :class:`SplitResult` s, in split order."""

    @property
    def failures(self) -> list[tuple[str, str]]:
        """Every input this run could not use (an earlier stage's excluded)."""
        return [f for r in self for f in r.failures]


Column = tuple[str, Callable[[SplitResult], str], str]  # header, cell, justify


def summary_table(title: str, results: Sequence[SplitResult], columns: Sequence[Column], *, tree=None) -> PlainTable:
    """One row per split; under it, what discovery did not take in ``tree`` (if given)."""
    from vcp.inputs.layout import ignored_summary

    table = PlainTable(title=title, caption=ignored_summary(tree.ignored) if tree is not None else None)
    for header, _, justify in columns:
        table.add_column(header, justify=justify)
    for r in results:
        table.add_row(*(cell(r) for _, cell, _ in columns))
    return table
