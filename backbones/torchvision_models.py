"""Built-in torchvision backbones, registered through this project's entry points.

Each factory follows the plugin contract (``spec.py``): ``factory(weights=None)`` returns a
:class:`Backbone` (an ``nn.Module`` with an int ``feature_dim``); forward maps ``[B, 3, H, W]`` ImageNet-normalized float32 to
``[B, feature_dim]`` (the pooled feature: the classification head is replaced by
``Identity``).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from .spec import InputSpec
from .weights import (
    NoWeights,
    WeightsFile,
    built_with,
    parse_weights,
    read_state_dict,
    torchvision_state_dict,
)

if TYPE_CHECKING:
    from torch import nn

    from .module import Backbone

# name -> (feature_dim, default release, head attribute)
BUILTINS: dict[str, tuple[int, str, str]] = {
    "resnet50": (2048, "IMAGENET1K_V2", "fc"),
    "resnet101": (2048, "IMAGENET1K_V2", "fc"),
    "efficientnet_v2_s": (1280, "IMAGENET1K_V1", "classifier"),
    "efficientnet_v2_m": (1280, "IMAGENET1K_V1", "classifier"),
}
RECOMMENDED = "efficientnet_v2_s"

# name -> (crop, resize) of its default release's preset, written down so that listing the
# built-ins needs no torchvision import (1.5 s); tests check them against recipe(), which reads
# the preset itself. Bilinear, ImageNet's mean and std for all four.
PRESETS: dict[str, tuple[int, int]] = {
    "resnet50": (224, 232), "resnet101": (224, 232), "efficientnet_v2_s": (384, 384), "efficientnet_v2_m": (480, 480),
}


def preset(arch: str) -> InputSpec:
    """The default release's preset as :func:`recipe` reads it, from :data:`PRESETS`."""
    crop, resize = PRESETS[arch]
    return InputSpec(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), size=(crop, crop), resize_mode="center",
                     crop_pct=round(crop / resize, 6), interpolation="bilinear", scale=(resize, resize))




def headless(arch: str, weights, *, default_release: str, head: str) -> tuple[nn.Module, str]:
    """torchvision's ``arch`` with ``weights`` (none, a local state_dict, a release: its
    classification head's keys ignored) and its head replaced by ``Identity``; and where its
    weights came from."""
    import torchvision
    from torch import nn

    make = partial(torchvision.models.get_model, arch, weights=None)
    weights = parse_weights(weights)
    if isinstance(weights, NoWeights):
        model = make()
        setattr(model, head, nn.Identity())
        return model, "random init"
    if isinstance(weights, WeightsFile):
        state, source = read_state_dict(weights.path), str(weights)
    else:
        release = default_release if weights.name.upper() == "DEFAULT" else weights.name
        state, source = torchvision_state_dict(arch, release)
    model = built_with(make, state, head_prefixes=(head + ".",), source=source, arch=arch,
                       finish=lambda m: setattr(m, head, nn.Identity()))
    return model, source


def build(arch: str, weights=None) -> Backbone:
    from .module import Backbone

    feature_dim, default_release, head = BUILTINS[arch]
    model, source = headless(arch, weights, default_release=default_release, head=head)
    return Backbone(model, feature_dim=feature_dim, input_spec=preset(arch), weights_source=source)


def recipe(arch: str, release: str | None = None) -> InputSpec:
    """The release's own preset (``weights.transforms()``): the shorter edge to its resize
    size, the centre crop, its interpolation, ImageNet's statistics. vcp applies it with
    ``--recipe model``; the default for these four is the frames as stored (``stored``)."""
    import torchvision

    preset = torchvision.models.get_model_weights(arch)[release or BUILTINS[arch][1]].transforms()
    crop, resize = int(preset.crop_size[0]), int(preset.resize_size[0])
    return InputSpec(mean=tuple(preset.mean), std=tuple(preset.std), size=(crop, crop), resize_mode="center",
                     crop_pct=round(crop / resize, 6), interpolation=preset.interpolation.value, scale=(resize, resize))


def _factory(arch: str):
    fn = partial(build, arch)
    fn.feature_dim = BUILTINS[arch][0]  # lets `vcp backbones` list it without building
    fn.default_weights = BUILTINS[arch][1]
    fn.input_spec = preset(arch)  # `vcp backbones` shows it; vcp applies it with --recipe model
    fn.frames_as_stored = True  # --recipe auto: the stored 256x256 frames, as the original script fed them
    fn.__doc__ = f"torchvision {arch}, pooled {BUILTINS[arch][0]}-d features."
    return fn


resnet50 = _factory("resnet50")
resnet101 = _factory("resnet101")
efficientnet_v2_s = _factory("efficientnet_v2_s")
efficientnet_v2_m = _factory("efficientnet_v2_m")

