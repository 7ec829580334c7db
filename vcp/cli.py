"""The ``vcp`` command line: one small Typer app per command, composed here.

Exit codes: 0 all inputs succeeded; 3 some inputs failed and everything else was
written; 2 usage errors (bad options, missing folders); 1 anything else.
"""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from .cli_common import EXIT_ERROR, EXIT_OK
from .cli_extract import backbones_command, extract_command
from .cli_merge import merge_command
from .cli_outputs import export_command, inspect_command
from .cli_tensorize import tensorize_command
from .report import one_line


class _Commands(TyperGroup):
    """vcp's command group: a usage error (a bad option, a bad ``--config`` value) is one
    ``vcp: error:`` line a script can read, not a framed panel."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except Exception as exc:  # click's own, by shape: typer may bring its own copy of click
            kind = type(exc).__name__
            if kind == "NoArgsIsHelpError":  # `vcp` alone: the help, as click shows it
                return super().main(*args, standalone_mode=True, **kwargs)
            if kind == "Abort":
                print("vcp: aborted", file=sys.stderr)
                sys.exit(EXIT_ERROR)
            if not (hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)):
                raise
            ctx = getattr(exc, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            print(f"vcp: error: {one_line(exc.format_message())}{hint}", file=sys.stderr, flush=True)
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else EXIT_OK)


app = typer.Typer(
    cls=_Commands,
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
