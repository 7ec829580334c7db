"""``vcp extract PROCESSED FEATURES`` and ``vcp backbones``."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vcp.cli import options as opt
from vcp.cli.common import EXIT_USAGE, fail, finish_run, start_run, user_errors
from vcp.common.progress import PlainTable, console

if TYPE_CHECKING:
    from vcp.stages.settings import ClipSettings

BACKBONE = "Backbone"  # a help section
MAX_SCALE = 4.0  # a scale s reads int(T*s) frames: 4x T is already far past any use


def _parse_scales(text: str) -> tuple[float, ...]:
    from vcp.common.errors import UsageError

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


ProcessedArgument = Annotated[Path | None, typer.Argument(
    metavar="PROCESSED", show_default=False, help="vcp tensorize's OUT (RAW with --from-videos; none with --manifest).")]
FeaturesArgument = Annotated[Path | None, typer.Argument(
    metavar="FEATURES", show_default=False, help="Folder for <split>_features[_multiscale].h5.")]
RecipeOption = Annotated[opt.Recipe, typer.Option(
    metavar="auto|model|stored", rich_help_panel=BACKBONE,
    help="Input: the model's own resize, crop and statistics, or the frames as stored (auto: stored for the "
         "four built-ins, else model).")]
BackboneOption = Annotated[str, typer.Option(metavar="NAME", rich_help_panel=BACKBONE,
                                             help="See `vcp backbones`; or timm/<model>.")]
WeightsOption = Annotated[str, typer.Option(metavar="W", rich_help_panel=BACKBONE,
                                            help="DEFAULT, a release name, a state_dict PATH, or none (random).")]
DeviceOption = Annotated[str, typer.Option(metavar="auto|cpu|cuda[:N]", rich_help_panel=BACKBONE, help="Where the backbone runs.")]
PrecisionOption = Annotated[opt.Precision, typer.Option(metavar="fp32|bf16|fp16", rich_help_panel=BACKBONE,
                                                        help="fp32 is the compatible default.")]
BatchOption = Annotated[int | None, typer.Option(
    min=1, max=65536, metavar="N", rich_help_panel=BACKBONE, show_default=False,
    help="Frames (windows, for a clip backbone) per forward, across videos (default: 8 on the CPU, 256 on CUDA).")]
CLIPS = "Clip backbones"  # a help section
WindowOption = Annotated[int | None, typer.Option(
    min=1, max=4096, metavar="N", rich_help_panel=CLIPS, show_default=False,
    help="Frames per window (default: the release's clip_len).")]
StrideOption = Annotated[int | None, typer.Option(
    min=1, max=4096, metavar="N", rich_help_panel=CLIPS, show_default=False,
    help="Resampled frames between window starts (default: the window; less overlaps them).")]
FpsOption = Annotated[float | None, typer.Option(
    min=0.0, max=1000.0, metavar="F", rich_help_panel=CLIPS, show_default=False,
    help="Frames per second windows are sampled at (default: the release's; 0: the video's own).")]
ViewsOption = Annotated[int, typer.Option(
    metavar="1|3|10", rich_help_panel=opt.OUTPUT,
    help="Crops per frame or window: the recipe's centre (1), three along the longer side (3), TenCrop (10).")]
ViewsReduceOption = Annotated[str | None, typer.Option(
    metavar="mean", rich_help_panel=opt.OUTPUT, show_default=False, help="Store the views' mean, not each view.")]
InputSizeOption = Annotated[int | None, typer.Option(
    min=8, max=4096, metavar="N", rich_help_panel=BACKBONE, show_default=False,
    help="Build the model for NxN input (a ViT's N: a multiple of its patch, else refused; not padded).")]


@opt.bundled(inputs=opt.input_options, clip=opt.clip_options, decode=opt.decode_options, run=opt.run_options)
def extract_command(
    ctx: typer.Context,
    processed: ProcessedArgument = None,
    features: FeaturesArgument = None,
    inputs: opt.Bundle = None,
    backbone: BackboneOption = "efficientnet_v2_s",
    weights: WeightsOption = "DEFAULT",
    device: DeviceOption = "auto",
    precision: PrecisionOption = opt.Precision.fp32,
    batch_size: BatchOption = None,
    compile_net: Annotated[bool, typer.Option("--compile", rich_help_panel=BACKBONE, show_default=False,
                                              help="torch.compile the backbone (long CUDA runs).")] = False,
    cuda_graph: Annotated[bool, typer.Option("--cuda-graph", rich_help_panel=BACKBONE, show_default=False,
                                             help="CUDA: replay the backbone as one CUDA graph per batch.")] = False,
    recipe: RecipeOption = opt.Recipe.auto,
    input_size: InputSizeOption = None,
    window: WindowOption = None,
    stride: StrideOption = None,
    fps: FpsOption = None,
    views: ViewsOption = 1,
    views_reduce: ViewsReduceOption = None,
    multi_scale: Annotated[bool, typer.Option("--multi-scale/--no-multi-scale", rich_help_panel=opt.OUTPUT,
                                              help="The three-scale temporal pass.")] = True,
    scales: Annotated[str, typer.Option(metavar="A,B,C", rich_help_panel=opt.OUTPUT, help="Temporal scales.")] = "1.0,0.85,1.15",
    splits: Annotated[str | None, typer.Option(metavar="A,B", rich_help_panel=opt.OUTPUT, show_default=False,
                                               help="Only these splits (default: all found).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", rich_help_panel=opt.OUTPUT, show_default=False,
                                            help="Redo splits whose HDF5 is up to date.")] = False,
    from_videos: Annotated[bool, typer.Option("--from-videos", rich_help_panel=opt.OUTPUT, show_default=False,
                                              help="Read RAW videos straight into the backbone (no .pt files).")] = False,
    clip: opt.Bundle = None,
    decode: opt.Bundle = None,
    run: opt.Bundle = None,
) -> None:
    """Frozen backbone over every frame, three temporal scales averaged, gzip HDF5 per split."""
    with user_errors(run["debug"], stoppable=True):
        parsed_scales, parsed_splits = _parse_scales(scales), opt.parse_splits(splits)
        processed, features = _arguments(processed, features, inputs, from_videos)
        # the videos (every manifest row against --root) before torch and the backbone load: a wrong root fails at once
        tree = opt.read_input(processed, inputs, parsed_splits) if from_videos else None
        opt.clip_settings(clip).check()
        opt.print_config_if_asked(ctx, {k: v for k, v in locals().items() if k != "tree"})
        from backbones import BackboneError, WeightsError

        try:
            this_shard = start_run(run)
            settings = _extract_config(
                backbone=backbone, weights=weights, device=device, multi_scale=multi_scale, scales=parsed_scales,
                batch_size=batch_size, splits=parsed_splits, precision=opt.value(precision), overwrite=overwrite,
                shard=this_shard, seed=clip["seed"], compile=compile_net, cuda_graph=cuda_graph,
                space_check=not run["no_space_check"], recipe=opt.value(recipe), input_size=input_size,
                window=window, stride=stride, fps=fps, views=views, views_reduce=views_reduce,
            )
            source = _VideoSource(opt.clip_settings(clip), decode, tree) if from_videos else None
            results = _run(processed, features, settings, source, dry_run=run["dry_run"])
            code = finish_run(this_shard, features, sum(len(r.failures) for r in results), run["strict"])
        except (BackboneError, WeightsError) as exc:
            raise fail(str(exc), EXIT_USAGE) from None
    raise typer.Exit(code)


def _arguments(processed, features, inputs: dict, from_videos: bool):
    """(PROCESSED or RAW or None, FEATURES): the input options go with --from-videos only."""
    if not from_videos and (inputs["manifest"] or inputs["root"] or inputs["classes"] or inputs["allow_overlap"]):
        from vcp.common.errors import UsageError

        raise UsageError("--manifest, --root, --classes and --allow-overlap choose videos: they go with --from-videos "
                         "(.pt files keep the classes they were made with)")
    return opt.input_arguments(processed, features, inputs, "RAW FEATURES" if from_videos else "PROCESSED FEATURES")


def _extract_config(*, device: str, weights: str, shard, seed: int, **settings):
    """The resolved :class:`ExtractConfig`: the device for this rank, the weights parsed once."""
    from vcp.common.devices import resolve_mode, slow_precision_warning
    from vcp.stages.settings import ExtractConfig

    resolved = resolve_mode(device, gpu_name="cuda")
    if resolved == "cuda":
        resolved = f"cuda:{shard.local_rank}"
    config = ExtractConfig(device=resolved, weights=weights, shard=shard, seed=seed, **settings)  # weights parsed there, once
    if config.random_init:  # announced loudly
        print("vcp: WARNING: --weights none: RANDOMLY INITIALIZED backbone, features are meaningless for training "
              f"(use only for tests; seeded by --seed {seed})", file=sys.stderr, flush=True)
    slow = slow_precision_warning(config.precision, resolved)
    if slow:
        print(f"vcp: WARNING: {slow}", file=sys.stderr, flush=True)
    return config


@dataclass
class _VideoSource:
    """``--from-videos``: what a clip is, and the decode options (the mode follows --device)."""

    clip: ClipSettings
    decode: dict
    tree: object  # the videos (a RawTree: RAW, or --manifest with --classes), read before the backbone


def _run(source: Path, features: Path, settings, videos: _VideoSource | None, *, dry_run: bool):
    """From ``.pt`` groups, or from videos (``videos``); ``--dry-run`` prints the plan."""
    if videos is not None:
        from vcp.stages.settings import decode_mode
        from vcp.stages.stream import extract_from_videos

        tree = videos.tree
        if dry_run:
            from vcp.cli.plan import stream_plan

            console().print(stream_plan(tree, features, settings, videos.clip, videos.decode["max_pixels"]))
            raise typer.Exit(0)
        import torch

        index = torch.device(settings.device).index
        decode = opt.decode_settings(videos.decode, mode=decode_mode(settings.device),
                                     device_id=settings.shard.local_rank if index is None else index)
        return extract_from_videos(source, features, settings, videos.clip, decode, console=console(stderr=True), tree=tree)
    from vcp.stages.extract import extract

    if dry_run:
        from vcp.cli.plan import extract_plan

        console().print(extract_plan(source, features, settings))
        raise typer.Exit(0)
    return extract(source, features, settings, console=console(stderr=True))


def backbones_command(
    name: Annotated[str | None, typer.Argument(metavar="[NAME]", show_default=False,
                                               help="One backbone: its input, and the options that make .pt right for it.")] = None,
) -> None:
    """List backbones: built-ins, timm, plugins (broken ones with their error)."""
    from backbones import default_registry

    if name is not None:
        from vcp.cli.backbone_info import describe

        with user_errors(False):
            console().print(describe(name), soft_wrap=True)
        return

    table = PlainTable(title="vcp backbones (entry-point group vcp.backbones)")
    for col in ("name", "kind", "dim", "input (recipe)", "default weights", "from", "status"):
        table.add_column(col, overflow="fold")
    registry = default_registry()
    for name, spec in registry.specs().items():
        status = "ok" if spec.ok else f"broken: {spec.error}"
        recipe = spec.input
        shown = f"{recipe.size[1]}x{recipe.size[0]} {recipe.resize_mode}" if recipe.has_recipe else "as stored"
        if spec.frames_as_stored:
            shown = f"as stored ({shown} with --recipe model)"
        kind = spec.kind
        if spec.kind == "clip" and spec.window:  # its window: frames at a rate
            kind = f"clip {spec.window}@{spec.frame_rate:g}fps" + (" only" if spec.fixed_window else "")
        table.add_row(name, kind, str(spec.feature_dim or "-"), shown, str(spec.default_weights or "-"), spec.distribution, status)
    table.add_row("timm/<model>", "frame", "its own", "its own", "DEFAULT", "timm", "ok")
    console().print(table)
