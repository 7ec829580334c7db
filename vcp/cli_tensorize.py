"""``vcp tensorize RAW OUT``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dali_pipes import STRATEGIES

from .cli_common import EXIT_OK, EXIT_PARTIAL, user_errors
from .devices import UsageError, resolve_mode


def _parse_strategy_for(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        sub, sep, name = value.partition("=")
        if not sep or not sub or not name:
            raise UsageError(f"--strategy-for expects SUBCATEGORY=STRATEGY, got {value!r}")
        out[sub] = name
    return out


def tensorize_command(
    raw: Annotated[Path, typer.Argument(help="RAW/<split>/<category>/[<subcategory>/]<video>")],
    out: Annotated[Path, typer.Argument(help="Output folder for processed_data.pt files.")],
    mode: Annotated[str, typer.Option(help="Where to decode/normalize: auto|gpu|cpu.")] = "auto",
    frames: Annotated[int, typer.Option("--frames", "-T", min=1, help="Frames per video (T).")] = 64,
    size: Annotated[int, typer.Option(min=8, help="Output frame size S (S x S).")] = 256,
    clip_duration: Annotated[float, typer.Option(min=0.001, help="Window in seconds (center/random).")] = 10.0,
    strategy: Annotated[str, typer.Option(help=f"Sampling for all subcategories: {'|'.join(STRATEGIES)}.")] = "uniform",
    strategy_for: Annotated[list[str], typer.Option(help="SUBCATEGORY=STRATEGY override (repeatable).")] = [],  # noqa: B006
    interactive: Annotated[bool, typer.Option(help="Prompt for the mode and each subcategory's strategy.")] = False,
    augment: Annotated[bool, typer.Option(help="Random segment jitter + horizontal flip (p=0.5, seeded).")] = False,
    seed: Annotated[int, typer.Option(help="Seed for random sampling/augmentation.")] = 0,
    max_batch: Annotated[int, typer.Option(min=1, help="Most videos per DALI batch.")] = 4,
    overwrite: Annotated[bool, typer.Option(help="Redo subcategories whose outputs are up to date.")] = False,
    cpu_decoder: Annotated[str, typer.Option(help="CPU decode front: auto (DALI for VP8/VP9/MJPEG) | pyav.", hidden=True)] = "auto",
    debug: Annotated[bool, typer.Option(help="Show tracebacks for unexpected errors.")] = False,
) -> None:
    """Decode, sample T frames, resize to SxS and ImageNet-normalize every video."""
    from .layout import discover_raw
    from .tensorize import TensorizeConfig, tensorize

    with user_errors(debug):
        tree = discover_raw(raw)
        overrides = _parse_strategy_for(strategy_for)
        if interactive:
            mode, overrides = _prompt(tree, mode, strategy, overrides)
        config = TensorizeConfig(
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
        )
        result = tensorize(raw, out, config, console=Console(stderr=True), tree=tree)
    raise typer.Exit(EXIT_PARTIAL if result.failures else EXIT_OK)


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
