"""``vcp inspect`` and ``vcp export``: reading what the stages wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .cli_common import user_errors
from .cli_options import choices
from .export import FORMATS

ExportFormat = choices("ExportFormat", FORMATS)


def inspect_command(
    path: Annotated[Path, typer.Argument(help="A processed tree, a features folder, or one .pt / .h5 file.")],
    preview: Annotated[Path | None, typer.Option(help="Write a contact sheet of the sampled frames to this PNG.")] = None,
    videos: Annotated[int, typer.Option(min=1, max=1000, help="Videos (rows) in the preview.")] = 8,
    debug: Annotated[bool, typer.Option(help="Show tracebacks for unexpected errors.")] = False,
) -> None:
    """Tables of what tensorize/extract wrote; --preview draws the sampled frames."""
    from .inspect import inspect

    with user_errors(debug):
        inspect(path, preview=preview, videos=videos, console=Console(width=160))


def export_command(
    features: Annotated[Path, typer.Argument(help="A features folder (*.h5) or one .h5 file.")],
    out: Annotated[Path, typer.Argument(help="Folder for <split>/<category>/<subcategory>/<video>.<ext> and index.csv.")],
    format: Annotated[ExportFormat, typer.Option("--format", help="npy: one array of num_frames rows per video.")] = ExportFormat.npy,
    debug: Annotated[bool, typer.Option(help="Show tracebacks for unexpected errors.")] = False,
) -> None:
    """One file per video (its real rows only) plus index.csv; reruns skip what is up to date."""
    from .export import export

    with user_errors(debug):
        written, skipped = export(features, out, format.value)
    Console(stderr=True).print(f"exported {written} video(s), {skipped} already up to date: {out}")
