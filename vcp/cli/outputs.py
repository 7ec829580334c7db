"""``vcp inspect`` and ``vcp export``: reading what the stages wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vcp.cli.common import EXIT_OK, EXIT_PARTIAL, user_errors
from vcp.cli.options import choices
from vcp.common.progress import console, plain
from vcp.outputs.export import FORMATS

ExportFormat = choices("ExportFormat", FORMATS)


def inspect_command(
    path: Annotated[Path, typer.Argument(help="A processed tree, a features folder, or one .pt / .h5 file.")],
    preview: Annotated[Path | None, typer.Option(help="Write a contact sheet of the sampled frames to this PNG.")] = None,
    videos: Annotated[int, typer.Option(min=1, max=1000, help="Videos (rows) in the preview.")] = 8,
    debug: Annotated[bool, typer.Option(help="Show tracebacks for unexpected errors.")] = False,
) -> None:
    """Tables of what tensorize/extract wrote; --preview draws the sampled frames."""
    from vcp.common.report import file_error
    from vcp.outputs.inspect import inspect

    with user_errors(debug):
        problems = inspect(path, preview=preview, videos=videos, console=console())
    for where, reason in problems:
        file_error(where, reason)
    raise typer.Exit(EXIT_PARTIAL if problems else EXIT_OK)


def export_command(
    features: Annotated[Path, typer.Argument(help="A features folder (*.h5) or one .h5 file.")],
    out: Annotated[Path, typer.Argument(help="Folder for <split>/<category>/<subcategory>/<video>.<ext> and index.csv.")],
    format: Annotated[ExportFormat, typer.Option("--format", help="npy: one array of num_frames rows per video.")] = ExportFormat.npy,
    debug: Annotated[bool, typer.Option(help="Show tracebacks for unexpected errors.")] = False,
) -> None:
    """One file per video (its real rows only) plus index.csv; reruns skip what is up to date."""
    from vcp.outputs.export import export

    with user_errors(debug):
        result = export(features, out, format.value)
    failed = f", {len(result.failures)} failed" if result.failures else ""
    console(stderr=True).print(plain(f"exported {result.written} video(s), {result.skipped} already up to date{failed}: {out}"), soft_wrap=True)
    raise typer.Exit(EXIT_PARTIAL if result.failures else EXIT_OK)
