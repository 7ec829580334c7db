"""Option types shared by ``vcp tensorize`` and ``vcp extract``, and the option bundles
(:func:`bundled`) that both declare once: what a clip is, how to decode, how to run."""

from __future__ import annotations

import functools
import inspect
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from dali_pipes import MAX_PIXELS, STRATEGIES


def choices(name: str, values) -> type[Enum]:
    """A str Enum of fixed choices: click validates them, help lists them, shells complete them."""
    return Enum(name, {value: value for value in values}, type=str)


Mode = choices("Mode", ("auto", "gpu", "cpu"))
Precision = choices("Precision", ("fp32", "bf16", "fp16"))
Storage = choices("Storage", ("float32", "float16", "uint8"))
CpuDecoderName = choices("CpuDecoderName", ("auto", "pyav"))
StrategyName = choices("StrategyName", STRATEGIES)
Recipe = choices("Recipe", ("auto", "model", "stored"))


def value(choice) -> str:
    """An Enum choice's plain string (``str()`` of a str-Enum is ``'Mode.auto'``)."""
    return choice.value if isinstance(choice, Enum) else choice


SAMPLING, DECODING, OUTPUT, RUN = "Sampling", "Decoding", "Output", "Run"  # help sections
INPUT = "Input"

Manifest = Annotated[Path | None, typer.Option(metavar="CSV", rich_help_panel=INPUT, show_default=False,
                                               help="Videos from a manifest CSV (columns split,path,label) instead of RAW.")]
Root = Annotated[Path | None, typer.Option(metavar="DIR", rich_help_panel=INPUT, show_default=False,
                                           help="Folder the manifest's paths are relative to (default: its own).")]
Classes = Annotated[str | None, typer.Option(metavar="FILE|numeric", rich_help_panel=INPUT, show_default=False,
                                             help="Class indices: names, 'index name' lines or JSON; numeric: folder numbers.")]
AllowOverlap = Annotated[bool, typer.Option("--allow-overlap", rich_help_panel=INPUT, show_default=False,
                                            help="No warning for videos listed in two splits.")]

Frames = Annotated[int, typer.Option("--frames", "-T", min=1, max=4096, metavar="T", rich_help_panel=SAMPLING,
                                     help="Frames per video.")]
Size = Annotated[int, typer.Option(min=8, max=4096, metavar="S", rich_help_panel=SAMPLING, help="Output frames are S x S.")]
Fit = Annotated[str, typer.Option(metavar="squash|center", rich_help_panel=SAMPLING,
                                  help="squash: both edges to S; center: the shorter edge to S, then the centre crop.")]
Interpolation = Annotated[str, typer.Option(metavar="bilinear|bicubic", rich_help_panel=SAMPLING,
                                            help="The resize's interpolation (antialiased).")]
ClipDuration = Annotated[float, typer.Option(min=0.001, max=86400.0, metavar="SECONDS", rich_help_panel=SAMPLING,
                                             help="Window for center/random.")]
Strategy = Annotated[StrategyName, typer.Option(metavar="NAME", rich_help_panel=SAMPLING,
                                                help=f"Sampling: {', '.join(STRATEGIES)}.")]
StrategyFor = Annotated[list[str], typer.Option(metavar="SUB=NAME", rich_help_panel=SAMPLING,
                                                help="Another strategy for one subcategory (or CATEGORY/SUB); repeatable.")]
Augment = Annotated[bool, typer.Option("--augment", rich_help_panel=SAMPLING, show_default=False,
                                       help="Random jitter and horizontal flip (p=0.5, seeded).")]
Seed = Annotated[int, typer.Option(min=0, metavar="N", rich_help_panel=SAMPLING,
                                   help="Seed of random sampling, augmentation and --weights none.")]
MaxBatch = Annotated[int, typer.Option(min=1, max=1024, metavar="N", rich_help_panel=DECODING, help="Most videos per DALI batch.")]
MaxPixels = Annotated[int, typer.Option(min=1, metavar="N", rich_help_panel=DECODING,
                                        help="Refuse streams with larger frames (default 8K: 7680x4320).")]
CpuDecoder = Annotated[CpuDecoderName, typer.Option(help="CPU decode front: auto (DALI for VP8/VP9/MJPEG) | pyav.", hidden=True)]
Pipelines = Annotated[
    int | None,
    typer.Option(min=1, max=64, metavar="N", rich_help_panel=DECODING, show_default=False,
                 help="Parallel DALI pipelines (default: one per NVDEC engine, at most 4; 1 on the CPU)."),
]
Prefetch = Annotated[
    int | None,
    typer.Option(min=0, max=64, metavar="N", rich_help_panel=DECODING, show_default=False,
                 help="Decoded batches kept ahead (default: 1; --from-videos: 2 on CUDA, 0 on the CPU)."),
]
ShardOpt = Annotated[
    str | None,
    typer.Option("--shard", metavar="I/N", rich_help_panel=RUN, show_default=False,
                 help="This process's slice (default: from torchrun or srun)."),
]
Debug = Annotated[bool, typer.Option("--debug", rich_help_panel=RUN, show_default=False,
                                     help="Tracebacks for unexpected errors, and FFmpeg's log lines.")]
Strict = Annotated[
    bool,
    typer.Option("--strict", rich_help_panel=RUN, show_default=False,
                 help="Under torchrun/srun, exit 3 when input files failed (default there: 0)."),
]


def parse_strategy_for(values: list[str]) -> dict[str, str]:
    from vcp.common.errors import UsageError

    out = {}
    for value in values:
        sub, sep, name = value.rpartition("=")  # a subcategory may hold "=", a strategy name never does
        if not sep or not sub or not name:
            raise UsageError(f"--strategy-for expects SUBCATEGORY=STRATEGY, got {value!r}")
        out[sub] = name
    return out


def parse_splits(text: str | None) -> tuple[str, ...] | None:
    """``--splits train,val`` -> ``("train", "val")`` (None: all)."""
    from vcp.common.errors import UsageError

    if text is None:
        return None
    splits = tuple(s.strip() for s in text.split(","))
    if not text.strip() or any(not s for s in splits):
        raise UsageError(f"--splits expects comma-separated split names like train,val, got {text!r}")
    return splits


def check_finite(option: str, value: float) -> float:
    import math

    from vcp.common.errors import UsageError

    if not math.isfinite(value):
        raise UsageError(f"{option} must be a finite number, got {value}")
    return value


def _load_config(ctx: typer.Context, param: typer.CallbackParam, value):
    from vcp.cli.config_file import load_config

    return load_config(ctx, param, value)


Config = Annotated[
    Path | None,
    typer.Option("--config", is_eager=True, callback=_load_config, metavar="FILE", rich_help_panel=RUN, show_default=False,
                 help="TOML settings (keys: option names; [tensorize]/[extract] tables); flags override it."),
]
PrintConfig = Annotated[bool, typer.Option("--print-config", rich_help_panel=RUN, help="Print the resolved settings as TOML and exit.")]
NoSpaceCheck = Annotated[bool, typer.Option("--no-space-check", rich_help_panel=RUN,
                                            help="Run even when the estimated output exceeds the free space.")]
DryRun = Annotated[bool, typer.Option("--dry-run", rich_help_panel=RUN,
                                      help="Say what would be done (found, up to date, to do, rejected); write nothing.")]


def print_config_and_exit(ctx: typer.Context, values: dict) -> None:
    from vcp.cli.config_file import settings_toml

    print(settings_toml(ctx, values), end="")
    raise typer.Exit(0)


# -- bundles: options both stage commands take, declared once ----------------------------------
Bundle = dict  # the annotation of a bundle's place in a command (see bundled)


def clip_options(
    frames: Frames = 64,
    size: Size = 256,
    fit: Fit = "squash",
    interpolation: Interpolation = "bilinear",
    clip_duration: ClipDuration = 10.0,
    strategy: Strategy = StrategyName.uniform,
    strategy_for: StrategyFor = [],  # noqa: B006 - typer copies defaults
    augment: Augment = False,
    seed: Seed = 0,
):
    """What a clip is (see :class:`vcp.stages.settings.ClipSettings`)."""


def decode_options(
    max_batch: MaxBatch = 4,
    cpu_decoder: CpuDecoder = CpuDecoderName.auto,
    pipelines: Pipelines = None,
    prefetch: Prefetch = None,
    max_pixels: MaxPixels = MAX_PIXELS,
):
    """How to decode (see :class:`vcp.stages.settings.DecodeSettings`)."""


def input_options(
    manifest: Manifest = None,
    root: Root = None,
    classes: Classes = None,
    allow_overlap: AllowOverlap = False,
):
    """Where the videos come from when not from a RAW tree (see :func:`read_input`)."""


def read_input(raw: Path | None, inputs: dict, splits):
    """The videos to process: the manifest's (``--manifest``) or RAW's, ``--classes`` applied."""
    from vcp.common.errors import UsageError
    from vcp.inputs.classes import with_classes
    from vcp.inputs.layout import discover_raw
    from vcp.inputs.manifest import read_manifest

    wanted = list(splits) if splits else None
    if inputs["manifest"] is not None:
        return read_manifest(inputs["manifest"], root=inputs["root"], classes=inputs["classes"], splits=wanted,
                             allow_overlap=inputs["allow_overlap"])
    if inputs["root"] is not None:
        raise UsageError("--root is for --manifest (a RAW tree's paths are relative to RAW)")
    return with_classes(discover_raw(raw, splits=wanted), inputs["classes"])


def input_arguments(first: Path | None, second: Path | None, inputs: dict, names: str) -> tuple[Path | None, Path]:
    """``RAW OUT``, or ``OUT`` alone with ``--manifest``: (RAW or None, OUT)."""
    from vcp.common.errors import UsageError

    source, target = names.split()
    if inputs["manifest"] is not None:
        if second is not None:
            raise UsageError(f"with --manifest give {target} only ({source} is the manifest), got {first} {second}")
        if first is None:
            raise UsageError(f"missing argument {target}")
        return None, first
    if first is None or second is None:
        raise UsageError(f"missing argument {target if first is not None else source} (or give --manifest CSV and {target})")
    return first, second


def run_options(
    shard: ShardOpt = None,
    strict: Strict = False,
    config: Config = None,
    print_config: PrintConfig = False,
    dry_run: DryRun = False,
    no_space_check: NoSpaceCheck = False,
    debug: Debug = False,
):
    """How the command runs: sharding, exit codes, settings files, dry run, debugging."""


def bundled(**bundles):
    """``@bundled(clip=clip_options)``: the command's parameter ``clip`` stands for every
    parameter of ``clip_options`` (in its place, so help and ``--print-config`` list them
    there); the command receives their values as one dict under ``clip``."""

    def decorate(command):
        signature = inspect.signature(command, eval_str=True)
        params, members = [], {}
        for param in signature.parameters.values():
            if param.name in bundles:
                inner = list(inspect.signature(bundles[param.name], eval_str=True).parameters.values())
                members[param.name] = [p.name for p in inner]
                params += inner
            else:
                params.append(param)

        @functools.wraps(command)
        def wrapper(**kwargs):
            for name, names in members.items():
                kwargs[name] = {n: kwargs.pop(n) for n in names}
            return command(**kwargs)

        wrapper.__signature__ = signature.replace(parameters=params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


def clip_settings(clip: dict):
    """The ``clip`` bundle's values -> :class:`vcp.stages.settings.ClipSettings` (checked)."""
    from vcp.stages.settings import ClipSettings

    check_finite("--clip-duration", clip["clip_duration"])
    return ClipSettings(**{**clip, "strategy": value(clip["strategy"]), "strategy_for": parse_strategy_for(clip["strategy_for"])})


def decode_settings(decode: dict, *, mode: str, device_id: int):
    """The ``decode`` bundle's values -> :class:`vcp.stages.settings.DecodeSettings`."""
    from vcp.stages.settings import DecodeSettings

    return DecodeSettings(**{**decode, "cpu_decoder": value(decode["cpu_decoder"])}, mode=mode, device_id=device_id)


def print_config_if_asked(ctx: typer.Context, values: dict) -> None:
    """``--print-config``: the resolved settings as TOML, then exit (bundles flattened).
    Call it after the values are validated: it prints only settings a run would accept."""
    flat = dict(values)
    for bundle in ("inputs", "clip", "decode", "run"):
        flat.update(flat.pop(bundle, None) or {})
    if flat.get("print_config"):
        print_config_and_exit(ctx, flat)
