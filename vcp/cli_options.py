"""Option types shared by ``vcp tensorize`` and ``vcp extract --from-videos``."""

from __future__ import annotations

from typing import Annotated

import typer

from dali_pipes import STRATEGIES

Frames = Annotated[int, typer.Option("--frames", "-T", min=1, help="Frames per video (T).")]
Size = Annotated[int, typer.Option(min=8, help="Output frame size S (S x S).")]
ClipDuration = Annotated[float, typer.Option(min=0.001, help="Window in seconds (center/random).")]
Strategy = Annotated[str, typer.Option(help=f"Sampling for all subcategories: {'|'.join(STRATEGIES)}.")]
StrategyFor = Annotated[list[str], typer.Option(help="SUBCATEGORY=STRATEGY override (repeatable).")]
Augment = Annotated[bool, typer.Option(help="Random segment jitter + horizontal flip (p=0.5, seeded).")]
Seed = Annotated[int, typer.Option(help="Seed for random sampling/augmentation.")]
MaxBatch = Annotated[int, typer.Option(min=1, help="Most videos per DALI batch.")]
CpuDecoder = Annotated[str, typer.Option(help="CPU decode front: auto (DALI for VP8/VP9/MJPEG) | pyav.", hidden=True)]
Pipelines = Annotated[
    int, typer.Option(min=1, help="Parallel DALI pipelines, each on its own slice (GPUs with several NVDECs: 2-4).")
]
Prefetch = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="Decoded batches kept ahead [default: tensorize 1; --from-videos 2 on CUDA, 0 (in line) on CPU].",
    ),
]
ShardOpt = Annotated[
    str | None,
    typer.Option("--shard", help="INDEX/COUNT: this process's slice (default: from torchrun RANK/WORLD_SIZE or srun SLURM_PROCID/SLURM_NTASKS)."),
]
Debug = Annotated[bool, typer.Option(help="Show tracebacks for unexpected errors.")]


def parse_strategy_for(values: list[str]) -> dict[str, str]:
    from .devices import UsageError

    out = {}
    for value in values:
        sub, sep, name = value.partition("=")
        if not sep or not sub or not name:
            raise UsageError(f"--strategy-for expects SUBCATEGORY=STRATEGY, got {value!r}")
        out[sub] = name
    return out
