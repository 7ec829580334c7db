"""The ``vcp`` command line: one small Typer app per command, composed here.

Exit codes: 0 all inputs succeeded; 3 some inputs failed and everything else was
written; 2 usage errors (bad options, missing folders); 1 anything else.
"""

from __future__ import annotations

import sys

import typer
from typer.core import TyperCommand, TyperGroup

from vcp.cli.common import EXIT_ERROR, EXIT_OK
from vcp.cli.extract import backbones_command, extract_command
from vcp.cli.manifest import app as manifest_app
from vcp.cli.merge import merge_command
from vcp.cli.outputs import export_command, inspect_command
from vcp.cli.tensorize import tensorize_command
from vcp.common import collector
from vcp.common.report import one_line


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

    def resolve_command(self, ctx, args):
        """The command chosen; the garbage collector paused at start-up (:mod:`vcp.common.collector`)
        runs again now for every command but the two whose start-up imports torch, timm and
        DALI (they resume it when their work begins)."""
        name, command, rest = super().resolve_command(ctx, args)
        if name not in ("tensorize", "extract"):
            collector.resume()
        return name, command, rest


app = typer.Typer(
    cls=_Commands,
    name="vcp",
    help="Video preprocessing for video classification: videos -> tensors -> CNN features.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class _Command(TyperCommand):
    """A command whose help groups its options in sections (each option's ``rich_help_panel``:
    Sampling, Decoding, Output, Run...), in plain text that wraps at the terminal's width."""

    def format_options(self, ctx, formatter) -> None:
        args, sections = [], {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                args.append(record)
            else:
                sections.setdefault(getattr(param, "rich_help_panel", None) or "Options", []).append(record)
        for title, rows in ([("Arguments", args)] if args else []) + list(sections.items()):
            with formatter.section(title):
                formatter.write_dl(rows)


def _version(value: bool) -> None:
    if value:
        from vcp.cli.environment import environment_report

        print(environment_report())
        raise typer.Exit(0)


@app.callback(context_settings={"help_option_names": ["-h", "--help"]})
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                 help="Print vcp's version, its main packages' and what CUDA/NVDEC it sees, then exit."),
) -> None:
    """vcp: videos -> tensors (tensorize) -> CNN features (extract)."""


for _name, _function, _short in (
    ("tensorize", tensorize_command, "Videos -> processed_data.pt per split/category/subcategory."),
    ("extract", extract_command, "Tensors (or videos) -> a features HDF5 per split."),
    ("merge", merge_command, "Join the part files of a sharded run."),
    ("inspect", inspect_command, "Tables of what was written; --preview draws the frames."),
    ("export", export_command, "One .npy per video, and index.csv."),
    ("backbones", backbones_command, "The backbones: built-in, timm, plugins."),
):
    app.command(_name, cls=_Command, short_help=_short, context_settings={"help_option_names": ["-h", "--help"]})(_function)
app.add_typer(manifest_app, name="manifest", short_help="A dataset's files (UCF101, Kinetics, SSv2, lists) -> a manifest.",
              context_settings={"help_option_names": ["-h", "--help"]})


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("vcp: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
