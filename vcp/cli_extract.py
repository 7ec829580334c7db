"""``vcp extract PROCESSED FEATURES`` and ``vcp backbones``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from . import cli_options as opt
from .cli_common import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, fail, user_errors


def _parse_scales(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--scales expects comma-separated numbers like 1.0,0.85,1.15, got {text!r}") from None
    if not scales:
        raise ValueError("--scales is empty")
    return scales


def extract_command(
    processed: Annotated[Path, typer.Argument(help="Output of vcp tensorize (or RAW videos with --from-videos).")],
    features: Annotated[Path, typer.Argument(help="Folder for <split>_features[_multiscale].h5.")],
    backbone: Annotated[str, typer.Option(help="Backbone name (see `vcp backbones`), or timm/<model>.")] = "efficientnet_v2_s",
    weights: Annotated[str, typer.Option(help="DEFAULT, a release name, a state_dict PATH, or none (random).")] = "DEFAULT",
    device: Annotated[str, typer.Option(help="auto|cuda|cpu.")] = "auto",
    multi_scale: Annotated[bool, typer.Option("--multi-scale/--no-multi-scale", help="Three-scale temporal pass.")] = True,
    scales: Annotated[str, typer.Option(help="Temporal scales for the multi-scale pass.")] = "1.0,0.85,1.15",
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Frames per forward pass [default: 8 on CPU (cache-sized), 64 on CUDA].")
    ] = None,
    splits: Annotated[str | None, typer.Option(help="Comma-separated splits (default: all found).")] = None,
    precision: Annotated[str, typer.Option(help="fp32|bf16|fp16 (fp32 is the compatible default).")] = "fp32",
    overwrite: Annotated[bool, typer.Option(help="Recompute splits whose HDF5 is up to date.")] = False,
    from_videos: Annotated[bool, typer.Option("--from-videos", help="Read RAW videos and stream DALI -> backbone (no .pt files).")] = False,
    frames: opt.Frames = 64,
    size: opt.Size = 256,
    clip_duration: opt.ClipDuration = 10.0,
    strategy: opt.Strategy = "uniform",
    strategy_for: opt.StrategyFor = [],  # noqa: B006
    augment: opt.Augment = False,
    seed: opt.Seed = 0,
    max_batch: opt.MaxBatch = 4,
    cpu_decoder: opt.CpuDecoder = "auto",
    pipelines: opt.Pipelines = 1,
    prefetch: opt.Prefetch = None,
    shard: opt.ShardOpt = None,
    debug: opt.Debug = False,
) -> None:
    """Frozen backbone over every frame, three temporal scales averaged, gzip HDF5 per split."""
    from backbones import BackboneError, WeightsError

    from .devices import slow_precision_warning
    from .extract import ExtractConfig, check_device, extract
    from .merge import finish_sharded_run
    from .shard import resolve_shard

    with user_errors(debug):
        try:
            this_shard = resolve_shard(shard)
            resolved = check_device(device)
            if resolved == "cuda":
                resolved = f"cuda:{this_shard.local_rank}"
            if weights.lower() == "none":
                print(
                    "vcp: WARNING: --weights none: RANDOMLY INITIALIZED backbone, features are "
                    "meaningless for training (use only for tests)", file=sys.stderr, flush=True,
                )
            config = ExtractConfig(
                backbone=backbone,
                weights=None if weights.lower() == "none" else weights,
                device=resolved,
                multi_scale=multi_scale,
                scales=_parse_scales(scales),
                batch_size=batch_size,
                splits=tuple(s.strip() for s in splits.split(",")) if splits else None,
                precision=precision,
                overwrite=overwrite,
                shard=this_shard,
            )
            slow = slow_precision_warning(precision, resolved)
            if slow:
                print(f"vcp: WARNING: {slow}", file=sys.stderr, flush=True)
            if from_videos:
                from .stream import extract_from_videos
                from .tensorize import TensorizeConfig, validate_strategies

                sampling = TensorizeConfig(
                    frames=frames, size=size, clip_duration=clip_duration, strategy=strategy,
                    strategy_for=opt.parse_strategy_for(strategy_for), augment=augment, seed=seed,
                    max_batch=max_batch, cpu_decoder=cpu_decoder, pipelines=pipelines, prefetch=prefetch,
                    device_id=this_shard.local_rank,
                )
                validate_strategies(sampling)
                results = extract_from_videos(processed, features, config, sampling, console=Console(stderr=True))
            else:
                results = extract(processed, features, config, console=Console(stderr=True))
            finish_sharded_run(this_shard, features)
        except (BackboneError, WeightsError) as exc:
            raise fail(str(exc), EXIT_USAGE) from None
    raise typer.Exit(EXIT_PARTIAL if any(r.failures for r in results) else EXIT_OK)


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
