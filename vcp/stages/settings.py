"""What a run is asked to do, split by concern.

* :class:`ClipSettings` — what a clip is: frames, size, sampling strategy, clip duration,
  augmentation, seed, normalization. Both stages that decode videos share it.
* :class:`DecodeSettings` — how to decode: mode, device, max batch, pipelines, decode-ahead
  depth, CPU decoder. Both share it too; it never changes what is computed.
* :class:`WriteSettings` — how tensorize writes and runs: storage, overwrite, shard.
* :class:`ExtractConfig` — what ``vcp extract`` is asked: backbone, weights, device,
  precision, scales, frames per forward, which splits, overwrite, shard.

:class:`TensorizeConfig` is the three together; :meth:`TensorizeConfig.from_options`
takes them flat, by the CLI's names.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import torch

from backbones.spec import IMAGENET, InputSpec
from backbones.weights import NoWeights, Weights, parse_weights
from dali_pipes import MAX_PIXELS, STRATEGIES, VIEWS, ClipLoader, Geometry, SamplingSpec
from vcp.common.errors import UsageError
from vcp.inputs.layout import Group, RawTree
from vcp.stages.multiscale import DEFAULT_SCALES
from vcp.stages.shard import Shard
from vcp.stages.temporal import Temporal
from vcp.store.contract import STORAGES

FITS = ("squash", "center")


@dataclass(frozen=True)
class ClipSettings:
    frames: int = 64
    size: int = 256
    clip_duration: float = 10.0
    strategy: str = "uniform"
    strategy_for: dict[str, str] = field(default_factory=dict)  # "sub" or "category/sub"
    augment: bool = False
    seed: int = 0
    normalization: InputSpec = IMAGENET
    fit: str = "squash"  # squash: both edges to size (the seed's); center: shorter edge to size, centre crop
    interpolation: str = "bilinear"  # the resize's (bicubic: as most timm models' recipes resample)

    @property
    def geometry(self):
        """How each frame becomes ``size`` x ``size``: None squashes it (the seed's rule, the
        graph's plain resize); ``center`` keeps its aspect: the shorter edge to ``size``
        (torchvision's ``Resize(size)``), then the centre crop."""
        if self.fit == "squash" and self.interpolation == "bilinear":
            return None

        mode = "squash" if self.fit == "squash" else "center"
        return Geometry(size=(self.size, self.size), scale=(self.size, self.size), mode=mode, interpolation=self.interpolation)

    def strategy_of(self, group: Group) -> str:
        key = f"{group.category}/{group.subcategory}"
        return self.strategy_for.get(key, self.strategy_for.get(group.subcategory, self.strategy))

    def sampling(self, group: Group) -> SamplingSpec:
        return SamplingSpec(
            strategy=self.strategy_of(group), frames=self.frames, clip_duration=self.clip_duration,
            seed=self.seed, augment=self.augment,
        )

    def check(self, tree: RawTree | None = None) -> None:
        """Every strategy must exist, and every ``--strategy-for`` rule must name a
        subcategory of ``tree`` (a typo would silently change the sampling)."""
        if self.fit not in FITS:
            raise UsageError(f"Invalid fit ({self.fit!r}). Supported values are: {', '.join(FITS)}.")
        if self.interpolation not in ("bilinear", "bicubic"):
            raise UsageError(f"Invalid interpolation ({self.interpolation!r}). Supported values are: bilinear, bicubic.")
        for name in [self.strategy, *self.strategy_for.values()]:
            if name not in STRATEGIES:
                raise UsageError(f"Invalid sampling strategy ({name!r}). Supported values are: {', '.join(STRATEGIES)}.")
        if tree is None:
            return
        keys = {g.subcategory for g in tree.groups} | {f"{g.category}/{g.subcategory}" for g in tree.groups}
        unknown = [k for k in self.strategy_for if k not in keys]
        if unknown:
            existing = sorted({f"{g.category}/{g.subcategory}" for g in tree.groups})
            raise UsageError(
                f"--strategy-for {', '.join(unknown)}: no such subcategory in {tree.root}; "
                f"the subcategories are: {', '.join(existing)}"
            )


def decode_mode(device: str) -> str:
    """Where clips from videos are made for a backbone on ``device``: ``gpu`` (NVDEC, the
    resize on the card) for CUDA, else ``cpu``."""
    return "gpu" if device.startswith("cuda") else "cpu"


@dataclass(frozen=True)
class DecodeSettings:
    mode: str = "cpu"  # resolved: "gpu" or "cpu"
    device_id: int = 0
    max_batch: int = 4
    pipelines: int | None = None  # None: one per NVDEC engine on a GPU, 1 on the CPU
    prefetch: int | None = None  # batches decoded ahead; None: see prefetch_depth()
    cpu_decoder: str = "auto"
    max_pixels: int = MAX_PIXELS  # streams with larger frames are refused before decoding

    def prefetch_depth(self, default: int) -> int:
        """Decoded batches kept ahead of the consumer: ``--prefetch``, else ``default``.

        The defaults: 1 in tensorize (the consumer is the writer, mostly I/O); in the
        streaming path 2 when the backbone runs on CUDA and 0 (in line) when it runs on
        the CPU, where a decode thread and the backbone's OpenMP threads would fight for
        the same cores (measured slower there: docs/benchmarks.md).
        """
        return default if self.prefetch is None else self.prefetch

    def loader(self, size: int, spec: InputSpec, geometry=None) -> ClipLoader:  # geometry: a model's, or ClipSettings.geometry
        """A loader giving ``size`` x ``size`` clips normalized as ``spec`` says (with a
        model's ``geometry``: resized and cropped as its recipe says instead)."""
        return ClipLoader(
            size=size, mean=spec.mean, std=spec.std, device=self.mode, device_id=self.device_id,
            max_batch=self.max_batch, cpu_decoder=self.cpu_decoder, pipelines=self.pipelines, max_pixels=self.max_pixels,
            geometry=geometry,
        )


@dataclass(frozen=True)
class WriteSettings:
    storage: str = "float32"  # the contract; float16 / uint8 are opt-in
    overwrite: bool = False
    shard: Shard = Shard()
    space_check: bool = True  # refuse a run whose estimated output exceeds the free space

    def check(self) -> None:
        if self.storage not in STORAGES:
            raise UsageError(f"Invalid storage ({self.storage!r}). Supported values are: {', '.join(STORAGES)}.")


@dataclass(frozen=True)
class TensorizeConfig:
    clip: ClipSettings = ClipSettings()
    decode: DecodeSettings = DecodeSettings()
    write: WriteSettings = WriteSettings()

    @classmethod
    def from_options(cls, **options) -> TensorizeConfig:
        """The three settings from flat options named as the CLI names them (``frames=``,
        ``mode=``, ``storage=`` ...); an unknown name is a TypeError."""
        parts = {}
        for name, kind in (("clip", ClipSettings), ("decode", DecodeSettings), ("write", WriteSettings)):
            names = {f.name for f in dataclasses.fields(kind)}
            parts[name] = kind(**{k: options.pop(k) for k in list(options) if k in names})
        if options:
            raise TypeError(f"unknown tensorize option(s): {', '.join(sorted(options))}")
        return cls(**parts)

    @property
    def stored_normalization(self) -> InputSpec:
        """What the stored values mean: uint8 keeps raw 0..255 pixels (mean 0, std 1/255)."""
        if self.write.storage == "uint8":
            return InputSpec(mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))
        return self.clip.normalization

    def check(self, tree: RawTree | None = None) -> None:
        self.write.check()
        self.clip.check(tree)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # autocast dtype (None: plain fp32)

# Frames per forward when --batch-size is not given: on the CPU small batches stay in the
# caches; on CUDA a few hundred frames fill the card (measurements: docs/benchmarks.md,
# "Numbers behind the defaults").
AUTO_BATCH = {"cpu": 8, "cuda": 256}
RECIPES = ("auto", "model", "stored")



@dataclass(frozen=True)
class ExtractConfig:
    backbone: str = "efficientnet_v2_s"
    weights: Weights | str | None = "DEFAULT"  # parsed into a Weights value on construction
    device: str = "cpu"  # resolved: "cpu", "cuda" or "cuda:<local rank>"
    multi_scale: bool = True
    scales: tuple[float, ...] = DEFAULT_SCALES
    batch_size: int | None = None  # frames per forward; None: AUTO_BATCH for the device
    splits: tuple[str, ...] | None = None
    precision: str = "fp32"
    overwrite: bool = False
    channels_last: bool = True
    fuse_conv_bn: bool = True  # fold eval-mode BatchNorm into convs (same numbers, ~15% faster)
    compile: bool = False  # torch.compile the network (fixed shapes: the last batch is padded on CUDA)
    cuda_graph: bool = False  # CUDA: the network captured once as a CUDA graph and replayed per batch
    shard: Shard = Shard()
    seed: int = 0  # seeds random init (weights=None)
    space_check: bool = True  # refuse a run whose estimated output exceeds the free space
    recipe: str = "auto"  # model: the backbone's own input recipe; stored: frames as stored; auto: see uses_recipe
    input_size: int | None = None  # the model built for this input size (where it allows it)
    window: int | None = None  # a clip backbone's frames per window (None: its release's)
    stride: int | None = None  # resampled frames between window starts (None: the window)
    fps: float | None = None  # the rate windows are sampled at (None: the release's; 0: the video's own)
    views: int = 1  # crops per frame or window: 1 (the recipe's centre crop), 3 (along the longer side), 10 (TenCrop)
    views_reduce: str | None = None  # "mean": the views' mean is stored, not each view
    _temporal: Temporal | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def uses_model_recipe(self) -> bool:
        """``--recipe model``, or ``auto`` for every backbone whose spec does not declare
        ``frames_as_stored`` (the four built-ins do: the original script fed them the stored
        256x256 frames, and their features keep that meaning; a plugin may declare it too)."""
        return self.recipe == "model" or (self.recipe == "auto" and not _frames_as_stored(self.backbone))

    @property
    def random_init(self) -> bool:
        """No weights: a randomly initialized network (seeded by ``seed``)."""
        return isinstance(self.weights, NoWeights)

    @property
    def forward_batch(self) -> int:
        """Frames per forward pass: ``batch_size`` or the device's default."""
        return self.batch_size or AUTO_BATCH["cuda" if self.device.startswith("cuda") else "cpu"]

    def __post_init__(self):
        object.__setattr__(self, "weights", parse_weights(self.weights))  # decided once, here
        if self.precision not in PRECISIONS:
            raise UsageError(f"Invalid precision ({self.precision!r}). Supported values are: {', '.join(PRECISIONS)}.")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.recipe not in RECIPES:
            raise UsageError(f"Invalid recipe ({self.recipe!r}). Supported values are: {', '.join(RECIPES)}.")
        if self.input_size is not None and self.recipe == "stored":
            raise UsageError("--input-size sets the model's own input: it goes with --recipe model, not stored")
        if self.input_size is not None and not self.uses_model_recipe:  # auto on a built-in: frames as stored
            raise UsageError(f"--input-size sets the model's own input, but {self.backbone} takes the frames as stored "
                             "by default (--recipe auto): add --recipe model to give it its own recipe at that size")
        if not self.scales or any(s <= 0 for s in self.scales):
            raise UsageError(f"scales must be positive numbers, got {self.scales}")
        if self.views not in VIEWS:
            raise UsageError(f"--views must be {', '.join(map(str, VIEWS[:-1]))} or {VIEWS[-1]}, got {self.views}")
        if self.views_reduce not in (None, "mean"):
            raise UsageError(f"--views-reduce must be mean, got {self.views_reduce!r}")
        if self.views > 1 and not self.uses_model_recipe:
            raise UsageError(f"--views {self.views} crops the model's own recipe, but {self.backbone} takes the frames as "
                             "stored by default (--recipe auto): add --recipe model")
        for name, low in (("window", 1), ("stride", 1), ("fps", 0)):
            value = getattr(self, name)
            if value is not None and not (value >= low and value < 1e6):  # also NaN
                raise UsageError(f"--{name} must be a number >= {low}, got {value}")
        object.__setattr__(self, "_temporal", self._windows())  # decided once, here (a usage error at once)

    @property
    def stored_views(self) -> int:
        """Views each row holds in the file (1 without views, or with their mean)."""
        return 1 if self.views_reduce == "mean" else self.views

    @property
    def temporal(self) -> Temporal | None:
        """A clip backbone's windows: its release's recipe, ``--window/--stride/--fps`` applied."""
        return self._temporal

    def _windows(self) -> Temporal | None:
        """:attr:`temporal`; windows asked of a frame backbone, a window the backbone cannot
        take, or a clip backbone without its own recipe are usage errors."""
        spec = _spec_of(self.backbone)
        asked = [f"--{n}" for n in ("window", "stride", "fps") if getattr(self, n) is not None]
        if spec is None or spec.kind != "clip":
            if asked:
                raise UsageError(f"{', '.join(asked)}: {self.backbone} is a frame backbone; windows are for clip "
                                 "backbones (kind clip in `vcp backbones`)")
            return None
        if self.recipe == "stored":
            raise UsageError(f"--recipe stored: {self.backbone} is a clip backbone; it takes its release's own input "
                             "(resize, crop, statistics) only")
        window = self.window or spec.window
        if spec.fixed_window and window != spec.window:
            raise UsageError(f"--window {window}: {self.backbone} takes windows of {spec.window} frames only "
                             "(its position embedding is made for them)")
        rate = spec.frame_rate if self.fps is None else (None if self.fps == 0 else float(self.fps))
        return Temporal(window=window, stride=self.stride or window, frame_rate=rate)


@functools.lru_cache(maxsize=16)
def _spec_of(backbone: str):
    """``backbone``'s registered spec (None: a timm model, or a name loading will refuse)."""
    from backbones import BackboneError, default_registry

    if backbone is None or backbone.startswith("timm/"):
        return None
    try:
        return default_registry().spec(backbone)
    except BackboneError:
        return None


def _frames_as_stored(backbone: str) -> bool:
    """Whether ``backbone``'s spec declares ``frames_as_stored`` (a timm model never does; an
    unknown name is not: loading it says why)."""
    spec = _spec_of(backbone)
    return spec is not None and spec.frames_as_stored
