"""The table ``vcp extract`` ends with: per split, videos, speed, failures, time, output."""

from __future__ import annotations

from vcp.common.progress import human_bytes
from vcp.stages import stage
from vcp.stages.stage import SplitResult


def _rate(r: SplitResult) -> str:
    return "up to date" if r.skipped else (f"{r.frames / r.seconds:.1f}" if r.seconds else "-")


def _output(r: SplitResult) -> str:
    size = human_bytes(r.output.stat().st_size) if r.output and r.output.exists() else "-"
    return f"{r.output.name if r.output else '-'} ({size})"


COLUMNS: list[stage.Column] = [
    ("split", lambda r: r.split, "left"),
    ("videos", lambda r: str(r.videos), "right"),
    ("frames/s", _rate, "right"),
    ("failed files", lambda r: str(len(r.failures)), "right"),
    ("seconds", lambda r: f"{r.seconds:.1f}", "right"),
    ("output", _output, "left"),
]


def summary_table(results: list[SplitResult], *, tree=None):
    return stage.summary_table("vcp extract", results, COLUMNS, tree=tree)
