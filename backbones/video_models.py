"""Built-in clip backbones: torchvision's video classification models.

Each factory follows the clip side of the plugin contract (``spec.py``): ``kind = "clip"``,
its temporal recipe (``window`` frames at ``frame_rate`` frames per second) and its spatial
recipe (``input_spec``); forward maps ``[B, 3, T, H, W]`` normalized float32 to
``[B, feature_dim]`` (the pooled embedding: the classification head replaced by
``Identity``). Both recipes are the release's own: the spatial one from its
``weights.transforms()`` preset, the temporal one from the evaluation parameters its
weight metadata states (``frame_rate=15 ... clip_len=16``).
"""

from __future__ import annotations

import re
from functools import partial
from typing import TYPE_CHECKING

from .spec import InputSpec
from .torchvision_models import headless

if TYPE_CHECKING:
    from .module import Backbone

# name -> (feature_dim, default release, head attribute, fixed window: the only window it takes, or None)
VIDEO_BUILTINS: dict[str, tuple[int, str, str, int | None]] = {
    "r3d_18": (512, "KINETICS400_V1", "fc", None),
    "mc3_18": (512, "KINETICS400_V1", "fc", None),
    "r2plus1d_18": (512, "KINETICS400_V1", "fc", None),
    "s3d": (1024, "KINETICS400_V1", "classifier", None),
    "mvit_v1_b": (768, "KINETICS400_V1", "head", 16),  # its position embedding is made for 16 frames
    "mvit_v2_s": (768, "KINETICS400_V1", "head", 16),
    "swin3d_t": (768, "KINETICS400_V1", "head", None),
    "swin3d_s": (768, "KINETICS400_V1", "head", None),
    "swin3d_b": (1024, "KINETICS400_V1", "head", None),
}


# name -> (crop, resize as the preset gives it, mean, std, clip_len, frame_rate) of the default
# release, written down so that listing them needs no torchvision import; tests check them
# against recipe() and temporal_recipe(), which read the release itself. Bilinear for all.
KINETICS = ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989))
MVIT = ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
PRESETS = {
    "r3d_18": ((112, 112), (128, 171), *KINETICS, 16, 15.0),
    "mc3_18": ((112, 112), (128, 171), *KINETICS, 16, 15.0),
    "r2plus1d_18": ((112, 112), (128, 171), *KINETICS, 16, 15.0),
    "s3d": ((224, 224), (256, 256), *KINETICS, 128, 15.0),
    "mvit_v1_b": ((224, 224), (256,), *MVIT, 16, 7.5),
    "mvit_v2_s": ((224, 224), (256,), *MVIT, 16, 7.5),
    "swin3d_t": ((224, 224), (256,), *IMAGENET_STATS, 32, 15.0),
    "swin3d_s": ((224, 224), (256,), *IMAGENET_STATS, 32, 15.0),
    "swin3d_b": ((224, 224), (256,), *IMAGENET_STATS, 32, 15.0),
}


def _spec(crop, resize, mean, std, interpolation: str = "bilinear") -> InputSpec:
    """A ``VideoClassification`` preset as an :class:`InputSpec`: one resize number takes the
    shorter edge to it, two squash to (height, width); no antialiasing, as the preset resizes."""
    scale, mode = ((resize[0], resize[0]), "center") if len(resize) == 1 else ((resize[0], resize[1]), "squash")
    return InputSpec(mean=tuple(mean), std=tuple(std), size=tuple(crop), resize_mode=mode,
                     crop_pct=round(crop[0] / scale[0], 6), interpolation=interpolation, scale=scale, antialias=False)


def preset(arch: str) -> InputSpec:
    """The default release's spatial recipe, from :data:`PRESETS`."""
    crop, resize, mean, std, _, _ = PRESETS[arch]
    return _spec(crop, resize, mean, std)


def _release(arch: str, release: str | None = None):
    import torchvision

    return torchvision.models.get_model_weights(arch)[release or VIDEO_BUILTINS[arch][1]]


def temporal_recipe(arch: str, release: str | None = None) -> tuple[int, float]:
    """``(clip_len, frame_rate)`` the release was evaluated with, read from its metadata."""
    docs = _release(arch, release).meta.get("_docs", "")
    rate, length = re.search(r"frame_rate=([0-9.]+)", docs), re.search(r"clip_len=([0-9]+)", docs)
    if rate is None or length is None:
        raise ValueError(f"torchvision's {arch} weights state no frame_rate / clip_len")
    return int(length.group(1)), float(rate.group(1))


def recipe(arch: str, release: str | None = None) -> InputSpec:
    """The release's ``VideoClassification`` preset: a one-number resize takes the shorter
    edge to it, two numbers squash to (height, width); then the centre crop, bilinear
    without antialiasing (as the preset resizes), the release's mean and std."""
    transforms = _release(arch, release).transforms()
    return _spec((int(transforms.crop_size[0]), int(transforms.crop_size[1])), [int(x) for x in transforms.resize_size],
                 transforms.mean, transforms.std, transforms.interpolation.value)


def build(arch: str, weights=None) -> Backbone:
    from .module import Backbone

    feature_dim, default_release, head, _ = VIDEO_BUILTINS[arch]
    model, source = headless(arch, weights, default_release=default_release, head=head)
    return Backbone(model, feature_dim=feature_dim, input_spec=preset(arch), weights_source=source, kind="clip")


def _factory(arch: str):
    fn = partial(build, arch)
    fn.feature_dim, fn.default_weights = VIDEO_BUILTINS[arch][0], VIDEO_BUILTINS[arch][1]
    fn.input_spec = preset(arch)
    fn.kind = "clip"
    fn.window, fn.frame_rate = PRESETS[arch][4:]
    fn.fixed_window = VIDEO_BUILTINS[arch][3] is not None
    fn.__doc__ = f"torchvision {arch}, pooled {fn.feature_dim}-d clip features."
    return fn


r3d_18 = _factory("r3d_18")
mc3_18 = _factory("mc3_18")
r2plus1d_18 = _factory("r2plus1d_18")
s3d = _factory("s3d")
mvit_v1_b = _factory("mvit_v1_b")
mvit_v2_s = _factory("mvit_v2_s")
swin3d_t = _factory("swin3d_t")
swin3d_s = _factory("swin3d_s")
swin3d_b = _factory("swin3d_b")
