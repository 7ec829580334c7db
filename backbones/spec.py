"""The backbone contract: what a plugin's factory returns, what vcp runs, what it expects.

A plugin registers ``factory(weights=None) -> nn.Module`` under the entry-point group
``vcp.backbones``; the module has an int ``feature_dim`` (and, optionally, an
``input_spec`` when it wants other statistics than ImageNet's); its forward maps
``[B, 3, H, W]`` normalized float32 to ``[B, feature_dim]``. A clip backbone declares
``kind = "clip"`` and its temporal recipe (``window`` frames at ``frame_rate`` frames per
second) on the factory; its forward maps ``[B, 3, T, H, W]`` to ``[B, feature_dim]``.
The registry checks that once and hands vcp a :class:`~backbones.module.Backbone`: the
module, unchanged, with those facts as fields. This module needs no torch (``vcp backbones``
lists the registry without it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

RESIZE_MODES = ("center", "squash", "border")
INTERPOLATIONS = ("bilinear", "bicubic")


MIN_STD = 1e-6  # a smaller std turns a pixel step into more than 1e6: overflow in fp16, NaN soon after


@dataclass(frozen=True)
class InputSpec:
    """How frames must be prepared: RGB in 0..1, then ``(x - mean) / std``; with ``size``,
    the model's whole input recipe (timm's eval transform, torchvision's preset):

    - ``center``: the shorter edge to ``scale`` (default ``floor(size / crop_pct)``), then
      the centre ``size`` crop (the aspect ratio kept, the borders lost);
    - ``squash``: both edges to ``scale``, then the centre crop (the aspect ratio not kept);
    - ``border``: the longer edge to ``scale``, then the centre crop, padded with the mean
      where the frame is smaller (nothing lost);

    resampled with ``interpolation`` (antialiased). Without ``size`` (the seed's backbones,
    plugins that declare only statistics) frames go in as stored.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size: tuple[int, int] | None = None  # (height, width) the network takes
    resize_mode: str = "center"
    crop_pct: float = 1.0
    interpolation: str = "bilinear"
    scale: tuple[int, int] | None = None  # the size before the crop (None: floor(size / crop_pct))
    antialias: bool = True  # False: resampled as torchvision's video presets do (no antialiasing)

    @property
    def has_recipe(self) -> bool:
        return self.size is not None

    @property
    def scale_size(self) -> tuple[int, int]:
        """What the frame is resized to before the centre crop (timm: ``floor(size / crop_pct)``)."""
        if self.scale is not None:
            return self.scale
        return (math.floor(self.size[0] / self.crop_pct), math.floor(self.size[1] / self.crop_pct))

    def problem(self) -> str | None:
        """Why this spec cannot be used (a plugin's nonsense), or None."""
        for name in ("mean", "std"):
            value = getattr(self, name)
            if not isinstance(value, tuple | list) or len(value) != 3 or not all(
                    isinstance(v, int | float) and math.isfinite(v) for v in value):
                return f"{name} must be 3 finite numbers, got {value!r}"
        if any(v < MIN_STD for v in self.std):  # 1/std of a pixel in 0..1 must stay a finite, sane number
            return f"std must be >= {MIN_STD:g} (pixels are 0..1), got {self.std!r}"
        if self.size is None:
            return None
        for name in ("size", "scale"):
            value = getattr(self, name)
            if value is None and name == "scale":
                continue
            if not isinstance(value, tuple | list) or len(value) != 2 or not all(
                    isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8192 for v in value):
                return f"input {name} must be (height, width) in 1..8192 pixels, got {value!r}"
        if self.resize_mode not in RESIZE_MODES:
            return f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {self.resize_mode!r}"
        if self.interpolation not in INTERPOLATIONS:
            return f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}"
        if not isinstance(self.crop_pct, int | float) or not 0.05 <= self.crop_pct <= 4:
            return f"crop_pct must be in 0.05..4, got {self.crop_pct!r}"
        return None

    def record(self) -> dict:
        """The recipe as recorded beside features (HDF5 attrs, inspect)."""
        out = {"mean": list(self.mean), "std": list(self.std)}
        if self.size is not None:
            out.update(input_size=list(self.size), resize_mode=self.resize_mode, crop_pct=self.crop_pct,
                       interpolation=self.interpolation, resize_size=list(self.scale_size))
            if not self.antialias:
                out["antialias"] = False
        return out


KINDS = ("frame", "clip")  # a network over single frames, or over windows of consecutive frames

# The one place the ImageNet statistics are written down.
IMAGENET = InputSpec(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: ``factory(weights=None) -> nn.Module`` with ``feature_dim``."""

    name: str
    factory: Callable | None
    feature_dim: int | None = None
    default_weights: str | None = None
    input: InputSpec = IMAGENET
    distribution: str = ""
    entry_point: str = ""
    error: str | None = None  # set when the plugin could not be loaded
    frames_as_stored: bool = False  # --recipe auto gives it the frames as stored, not its own recipe
    kind: str = "frame"  # "clip": forward takes [B, 3, T, H, W] windows
    window: int | None = None  # a clip backbone's frames per window (its release's clip_len)
    frame_rate: float | None = None  # and the rate they are sampled at (frames per second)
    fixed_window: bool = False  # it takes no other window (e.g. MViT's position embedding)

    def temporal_problem(self) -> str | None:
        """Why a clip backbone's temporal recipe cannot be used, or None."""
        if self.kind not in KINDS:
            return f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}"
        if self.kind == "frame":
            return None
        if not isinstance(self.window, int) or isinstance(self.window, bool) or not 1 <= self.window <= 4096:
            return f"a clip backbone's window must be an int in 1..4096 frames, got {self.window!r}"
        if not isinstance(self.frame_rate, int | float) or not 0 < self.frame_rate <= 1000:
            return f"a clip backbone's frame_rate must be in (0, 1000] frames per second, got {self.frame_rate!r}"
        return None

    @property
    def ok(self) -> bool:
        return self.error is None
