"""``vcp tensorize RAW OUT``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dali_pipes import STRATEGIES
from vcp.cli import options as opt
from vcp.cli.common import finish_run, start_run, user_errors
from vcp.common.devices import resolve_mode
from vcp.common.progress import console, print_table

if TYPE_CHECKING:
    from vcp.inputs.layout import RawTree
    from vcp.stages.settings import TensorizeConfig


@opt.bundled(inputs=opt.input_options, clip=opt.clip_options, decode=opt.decode_options, run=opt.run_options)
def tensorize_command(
    ctx: typer.Context,
    raw: Annotated[Path | None, typer.Argument(metavar="RAW", show_default=False,
                                               help="RAW/<split>/<category>/[<subcategory>/]<video> (not with --manifest)")] = None,
    out: Annotated[Path | None, typer.Argument(metavar="OUT", show_default=False,
                                               help="Folder for the processed_data.pt files.")] = None,
    inputs: opt.Bundle = None,
    mode: Annotated[opt.Mode, typer.Option(metavar="auto|gpu|cpu", rich_help_panel=opt.DECODING,
                                           help="Where to decode, resize and normalize.")] = opt.Mode.auto,
    clip: opt.Bundle = None,
    interactive: Annotated[bool, typer.Option("--interactive", rich_help_panel=opt.SAMPLING, show_default=False,
                                              help="Ask for the mode and each subcategory's strategy.")] = False,
    decode: opt.Bundle = None,
    storage: Annotated[opt.Storage, typer.Option(metavar="float32|float16|uint8", rich_help_panel=opt.OUTPUT,
                                                 help="float32 is the contract; uint8 keeps pixels, 4x smaller.")] = opt.Storage.float32,
    splits: Annotated[str | None, typer.Option(metavar="A,B", rich_help_panel=opt.OUTPUT, show_default=False,
                                               help="Only these splits (default: all found).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", rich_help_panel=opt.OUTPUT, show_default=False,
                                            help="Redo groups whose outputs are up to date.")] = False,
    run: opt.Bundle = None,
) -> None:
    """Decode, sample T frames, resize to SxS and ImageNet-normalize every video."""
    with user_errors(run["debug"], stoppable=True):
        if run["print_config"]:  # settings only: the videos are not read
            opt.clip_settings(clip).check()
            opt.print_config_if_asked(ctx, locals())
        raw, out = opt.input_arguments(raw, out, inputs, "RAW OUT")
        tree = opt.read_input(raw, inputs, opt.parse_splits(splits))  # before torch loads: a wrong --root fails at once
        opt.clip_settings(clip).check()
        this_shard = start_run(run)
        settings = _settings(tree, mode, clip, interactive, decode, storage, overwrite, this_shard, not run["no_space_check"])
        if run["dry_run"]:
            from vcp.cli.plan import tensorize_plan

            print_table(console(), tensorize_plan(settings.tree, out, settings.config))
            raise typer.Exit(0)
        from vcp.stages.tensorize import tensorize

        result = tensorize(raw, out, settings.config, console=console(stderr=True), tree=settings.tree)
        code = finish_run(this_shard, out, len(result.failures), run["strict"])
    raise typer.Exit(code)


@dataclass
class _Resolved:
    tree: RawTree
    config: TensorizeConfig


def _settings(tree, mode, clip: dict, interactive: bool, decode: dict, storage, overwrite: bool, shard,
              space_check: bool) -> _Resolved:
    """The options -> the tree and a :class:`TensorizeConfig` (after the prompts, if asked)."""
    from vcp.stages.settings import TensorizeConfig, WriteSettings

    clip_settings = opt.clip_settings(clip)
    mode = opt.value(mode)
    if interactive:
        mode, overrides = _prompt(tree, mode, clip_settings.strategy, clip_settings.strategy_for)
        clip_settings = replace(clip_settings, strategy_for=overrides)
    return _Resolved(tree, TensorizeConfig(
        clip=clip_settings,
        decode=opt.decode_settings(decode, mode=resolve_mode(mode), device_id=shard.local_rank),
        write=WriteSettings(storage=opt.value(storage), overwrite=overwrite, shard=shard, space_check=space_check),
    ))


def _prompt(tree, mode: str, strategy: str, overrides: dict[str, str]):
    """The original tool's interactive flow: the mode, then one strategy per subcategory."""
    choice = typer.prompt("Processing mode (auto/gpu/cpu)", default=mode)
    overrides = dict(overrides)
    seen = []
    for group in tree.groups:
        key = f"{group.category}/{group.subcategory}"
        if key in seen:
            continue
        seen.append(key)
        default = overrides.get(key, overrides.get(group.subcategory, strategy))
        while True:
            answer = typer.prompt(f"Strategy for {key} ({'/'.join(STRATEGIES)})", default=default)
            if answer in STRATEGIES:
                break
            typer.echo(f"  {answer!r} is not one of: {', '.join(STRATEGIES)}", err=True)
        overrides[key] = answer
    return choice, overrides
