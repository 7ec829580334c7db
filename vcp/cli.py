"""The ``vcp`` command line: one small Typer app per command, composed here.

Exit codes: 0 all inputs succeeded; 3 some inputs failed and everything else was
written; 2 usage errors (bad options, missing folders); 1 anything else.
"""

from __future__ import annotations

import sys

import typer

from .cli_extract import backbones_command, extract_command
from .cli_merge import merge_command
from .cli_outputs import export_command, inspect_command
from .cli_tensorize import tensorize_command

app = typer.Typer(
    name="vcp",
    help="Video preprocessing for video classification: videos -> tensors -> CNN features.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """vcp: videos -> tensors (tensorize) -> CNN features (extract)."""


app.command("tensorize")(tensorize_command)
app.command("merge")(merge_command)
app.command("extract")(extract_command)
app.command("backbones")(backbones_command)
app.command("inspect")(inspect_command)
app.command("export")(export_command)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("vcp: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
