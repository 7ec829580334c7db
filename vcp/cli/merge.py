"""``vcp merge DIR``: join a sharded run's part files into the contract's files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vcp.cli.common import EXIT_USAGE, fail, user_errors
from vcp.common.progress import console, plain


def merge_command(
    directory: Annotated[Path, typer.Argument(help="A tensorize OUT folder or an extract FEATURES folder.")],
    debug: Annotated[bool, typer.Option(help="Show tracebacks for unexpected errors.")] = False,
) -> None:
    """Merge the part files that `--shard` / torchrun / srun ranks wrote."""
    from vcp.stages.merge import MergeError, merge_all

    with user_errors(debug):
        try:
            merged = merge_all(directory)
        except MergeError as exc:
            raise fail(str(exc), EXIT_USAGE) from None
    out = console(stderr=True)
    if not merged:
        out.print(plain(f"nothing to merge under {directory}"), soft_wrap=True)
    for path in merged:
        out.print(plain(f"merged {path}"), soft_wrap=True)
