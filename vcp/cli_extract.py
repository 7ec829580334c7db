"""``vcp extract PROCESSED FEATURES`` and ``vcp backbones``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from . import cli_options as opt
from .cli_common import EXIT_USAGE, fail, finish_run, start_run, user_errors

MAX_SCALE = 4.0  # a scale s reads int(T*s) frames: 4x T is already far past any use


def _parse_scales(text: str) -> tuple[float, ...]:
    from .devices import UsageError

    example = "comma-separated numbers like 1.0,0.85,1.15"
    entries = [x.strip() for x in text.split(",")]
    if not text.strip() or any(not x for x in entries):
        raise UsageError(f"--scales expects {example}, got {text!r} (an empty entry)")
    try:
        scales = tuple(float(x) for x in entries)
    except ValueError:
        raise UsageError(f"--scales expects {example}, got {text!r}") from None
    bad = [x for x in scales if not (0 < x <= MAX_SCALE)]  # also catches nan and inf
    if bad:
        raise UsageError(f"--scales must each be in (0, {MAX_SCALE:g}], got {', '.join(map(str, bad))}")
    return scales


def _parse_splits(text: str | None) -> tuple[str, ...] | None:
    from .devices import UsageError

    if text is None:
        return None
    splits = tuple(s.strip() for s in text.split(","))
    if not text.strip() or any(not s for s in splits):
        raise UsageError(f"--splits expects comma-separated split names like train,val, got {text!r}")
    return splits


def extract_command(
    ctx: typer.Context,
    processed: Annotated[Path, typer.Argument(help="Output of vcp tensorize (or RAW videos with --from-videos).")],
    features: Annotated[Path, typer.Argument(help="Folder for <split>_features[_multiscale].h5.")],
    backbone: Annotated[str, typer.Option(help="Backbone name (see `vcp backbones`), or timm/<model>.")] = "efficientnet_v2_s",
    weights: Annotated[str, typer.Option(help="DEFAULT, a release name, a state_dict PATH, or none (random).")] = "DEFAULT",
    device: Annotated[opt.Device, typer.Option(help="Where the backbone runs.")] = opt.Device.auto,
    multi_scale: Annotated[bool, typer.Option("--multi-scale/--no-multi-scale", help="Three-scale temporal pass.")] = True,
    scales: Annotated[str, typer.Option(help="Temporal scales for the multi-scale pass.")] = "1.0,0.85,1.15",
    batch_size: Annotated[
        int | None, typer.Option(min=1, max=65536, help="Frames per forward pass, packed across videos [default: 8 on CPU (cache-sized), 256 on CUDA].")
    ] = None,
    splits: Annotated[str | None, typer.Option(help="Comma-separated splits (default: all found).")] = None,
    precision: Annotated[opt.Precision, typer.Option(help="fp32 is the compatible default.")] = opt.Precision.fp32,
    compile_net: Annotated[bool, typer.Option("--compile", help="torch.compile the backbone (pays off on long CUDA runs; recorded in the HDF5).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Recompute splits whose HDF5 is up to date.")] = False,
    from_videos: Annotated[bool, typer.Option("--from-videos", help="Read RAW videos and stream DALI -> backbone (no .pt files).")] = False,
    frames: opt.Frames = 64,
    size: opt.Size = 256,
    clip_duration: opt.ClipDuration = 10.0,
    strategy: opt.Strategy = opt.StrategyName.uniform,
    strategy_for: opt.StrategyFor = [],  # noqa: B006
    augment: opt.Augment = False,
    seed: opt.Seed = 0,
    max_batch: opt.MaxBatch = 4,
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
    """Frozen backbone over every frame, three temporal scales averaged, gzip HDF5 per split."""
    from backbones import BackboneError, WeightsError

    from .devices import slow_precision_warning
    from .features import ExtractConfig, check_device
    from .shard import resolve_shard

    if print_config:
        opt.print_config_and_exit(ctx, locals())
    device, precision, strategy, cpu_decoder = map(opt.value, (device, precision, strategy, cpu_decoder))
    with user_errors(debug):
        try:
            parsed_scales, parsed_splits = _parse_scales(scales), _parse_splits(splits)
            opt.check_finite("--clip-duration", clip_duration)
            this_shard = resolve_shard(shard)
            start_run(this_shard, debug)
            resolved = check_device(device)
            if resolved == "cuda":
                resolved = f"cuda:{this_shard.local_rank}"
            settings = ExtractConfig(
                backbone=backbone,
                weights=_chosen_weights(weights, seed),
                device=resolved,
                multi_scale=multi_scale,
                scales=parsed_scales,
                batch_size=batch_size,
                splits=parsed_splits,
                precision=precision,
                overwrite=overwrite,
                shard=this_shard,
                seed=seed,
                compile=compile_net,
            )
            slow = slow_precision_warning(precision, resolved)
            if slow:
                print(f"vcp: WARNING: {slow}", file=sys.stderr, flush=True)
            sampling = None
            if from_videos:
                from .settings import TensorizeConfig

                sampling = TensorizeConfig(
                    frames=frames, size=size, clip_duration=clip_duration, strategy=strategy,
                    strategy_for=opt.parse_strategy_for(strategy_for), augment=augment, seed=seed,
                    max_batch=max_batch, cpu_decoder=cpu_decoder, pipelines=pipelines, prefetch=prefetch,
                    device_id=this_shard.local_rank,
                )
            results = _run(processed, features, settings, sampling, dry_run=dry_run)
            code = finish_run(this_shard, features, sum(len(r.failures) for r in results), strict)
        except (BackboneError, WeightsError) as exc:
            raise fail(str(exc), EXIT_USAGE) from None
    raise typer.Exit(code)


def _chosen_weights(weights: str, seed: int):
    """``--weights`` parsed once; random init is announced loudly."""
    from backbones import NoWeights, parse_weights

    chosen = parse_weights(weights)
    if isinstance(chosen, NoWeights):
        print(
            "vcp: WARNING: --weights none: RANDOMLY INITIALIZED backbone, features are "
            f"meaningless for training (use only for tests; seeded by --seed {seed})", file=sys.stderr, flush=True,
        )
    return chosen


def _run(source: Path, features: Path, settings, sampling, *, dry_run: bool):
    """From ``.pt`` groups (``sampling`` None) or from videos; ``--dry-run`` prints the plan."""
    if sampling is not None:
        from .settings import validate_strategies
        from .stream import extract_from_videos

        validate_strategies(sampling)
        if dry_run:
            from .plan import stream_plan

            Console().print(stream_plan(source, features, settings, sampling))
            raise typer.Exit(0)
        return extract_from_videos(source, features, settings, sampling, console=Console(stderr=True))
    from .extract import extract

    if dry_run:
        from .plan import extract_plan

        Console().print(extract_plan(source, features, settings))
        raise typer.Exit(0)
    return extract(source, features, settings, console=Console(stderr=True))


def backbones_command() -> None:
    """List backbones: built-ins, timm, plugins (broken ones with their error)."""
    from backbones import default_registry

    table = Table(title="vcp backbones (entry-point group vcp.backbones)")
    for col in ("name", "feature_dim", "default weights", "source", "status"):
        table.add_column(col)
    registry = default_registry()
    for name, spec in registry.specs().items():
        status = "ok" if spec.ok else f"broken: {spec.error}"
        table.add_row(name, str(spec.feature_dim or "-"), str(spec.default_weights or "-"), spec.distribution, status)
    table.add_row("timm/<model_name>", "model's num_features", "DEFAULT", "timm", "ok")
    Console(width=200).print(table)
