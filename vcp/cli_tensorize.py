"""``vcp tensorize RAW OUT``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dali_pipes import STRATEGIES

from . import cli_options as opt
from .cli_common import finish_run, start_run, user_errors
from .devices import resolve_mode


def tensorize_command(
    ctx: typer.Context,
    raw: Annotated[Path, typer.Argument(help="RAW/<split>/<category>/[<subcategory>/]<video>")],
    out: Annotated[Path, typer.Argument(help="Output folder for processed_data.pt files.")],
    mode: Annotated[opt.Mode, typer.Option(help="Where to decode/normalize.")] = opt.Mode.auto,
    frames: opt.Frames = 64,
    size: opt.Size = 256,
    clip_duration: opt.ClipDuration = 10.0,
    strategy: opt.Strategy = opt.StrategyName.uniform,
    strategy_for: opt.StrategyFor = [],  # noqa: B006
    interactive: Annotated[bool, typer.Option(help="Prompt for the mode and each subcategory's strategy.")] = False,
    augment: opt.Augment = False,
    seed: opt.Seed = 0,
    max_batch: opt.MaxBatch = 4,
    storage: Annotated[opt.Storage, typer.Option(help="float32 (the contract), float16, or uint8 (raw pixels, 4x smaller; extract normalizes on load).")] = opt.Storage.float32,
    overwrite: Annotated[bool, typer.Option(help="Redo subcategories whose outputs are up to date.")] = False,
    cpu_decoder: opt.CpuDecoder = opt.CpuDecoderName.auto,
    pipelines: opt.Pipelines = None,
    prefetch: opt.Prefetch = None,
    shard: opt.ShardOpt = None,
    strict: opt.Strict = False,
    config: opt.Config = None,
    print_config: opt.PrintConfig = False,
    dry_run: opt.DryRun = False,
    debug: opt.Debug = False,
) -> None:
    """Decode, sample T frames, resize to SxS and ImageNet-normalize every video."""
    from .layout import discover_raw
    from .settings import TensorizeConfig
    from .shard import resolve_shard
    from .tensorize import tensorize

    if print_config:
        opt.print_config_and_exit(ctx, locals())
    mode, strategy, storage, cpu_decoder = map(opt.value, (mode, strategy, storage, cpu_decoder))
    with user_errors(debug):
        opt.check_finite("--clip-duration", clip_duration)
        this_shard = resolve_shard(shard)
        start_run(this_shard, debug)
        tree = discover_raw(raw)
        overrides = opt.parse_strategy_for(strategy_for)
        if interactive:
            mode, overrides = _prompt(tree, mode, strategy, overrides)
        settings = TensorizeConfig(
            frames=frames,
            size=size,
            clip_duration=clip_duration,
            strategy=strategy,
            strategy_for=overrides,
            augment=augment,
            seed=seed,
            max_batch=max_batch,
            mode=resolve_mode(mode),
            overwrite=overwrite,
            cpu_decoder=cpu_decoder,
            pipelines=pipelines,
            prefetch=prefetch,
            storage=storage,
            shard=this_shard,
            device_id=this_shard.local_rank,
        )
        if dry_run:
            from .plan import tensorize_plan

            Console().print(tensorize_plan(tree, out, settings))
            raise typer.Exit(0)
        result = tensorize(raw, out, settings, console=Console(stderr=True), tree=tree)
        code = finish_run(this_shard, out, len(result.failures), strict)
    raise typer.Exit(code)


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
