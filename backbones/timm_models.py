"""``timm/<model_name>``: any timm model, head removed (``num_classes=0``)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from .spec import IMAGENET, InputSpec
from .weights import (
    NoWeights,
    WeightsError,
    WeightsFile,
    built_with,
    parse_weights,
    read_state_dict,
)

if TYPE_CHECKING:
    from .module import Backbone


def build(model_name: str, weights=None, input_size: int | None = None) -> Backbone:
    """The headless model with its own input recipe; ``input_size`` builds it for that size
    (a ViT's position embedding resampled as timm does) where the model allows it."""
    import timm

    from .module import Backbone

    if not known(model_name):
        raise KeyError(model_name)
    size_args = _size_arguments(model_name, input_size) if input_size else {}
    weights = parse_weights(weights)
    if isinstance(weights, NoWeights):
        model, source = timm.create_model(model_name, pretrained=False, num_classes=0, **size_args), "random init"
    elif isinstance(weights, WeightsFile):
        # A state_dict of this timm model (as timm saves it), loaded strictly: every tensor
        # of the network must come from the file (timm's own file loading let resnet18
        # weights into a resnet34 without a word).
        model = built_with(functools.partial(timm.create_model, model_name, pretrained=False, num_classes=0, **size_args),
                           read_state_dict(weights.path), head_prefixes=_head_prefixes, source=str(weights),
                           arch=f"timm/{model_name}")
        source = str(weights)
    else:
        model, source = _pretrained(model_name, weights.name, size_args)
    return Backbone(model, feature_dim=width_of(model), input_spec=recipe(model, input_size), weights_source=source)


def _head_prefixes(model) -> tuple[str, ...]:
    """The keys of the classification head (removed) that a state_dict file may hold."""
    classifier = (getattr(model, "pretrained_cfg", {}) or {}).get("classifier") or ()
    return tuple(f"{c}." for c in ([classifier] if isinstance(classifier, str) else classifier))


def width_of(model) -> int:
    """The width of what the built headless ``model`` returns: one forward of it on the meta
    device with meta stand-ins for its weights (``torch.func.functional_call``: its own
    tensors untouched, nothing allocated or computed, no second model built); timm's own
    declaration where that forward fails."""
    import itertools

    import torch

    size = tuple((getattr(model, "pretrained_cfg", {}) or {}).get("input_size") or (3, 224, 224))
    stand_ins = {name: torch.empty_like(t, device="meta")
                 for name, t in itertools.chain(model.named_parameters(), model.named_buffers())}
    try:
        with torch.no_grad():
            out = torch.func.functional_call(model, stand_ins, (torch.zeros(1, *size, device="meta"),))
        if out.ndim == 2:
            return int(out.shape[1])
    except Exception:  # noqa: BLE001 - an op without a meta kernel: timm's declared width
        pass
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


def known(model_name: str) -> bool:
    """Whether timm has an architecture ``model_name`` (a pretrained tag after a dot allowed)."""
    import timm

    return timm.is_model(model_name) or model_name in timm.list_models(pretrained=False)


def recipe(model, input_size: int | None = None) -> InputSpec:
    """The model's eval recipe as timm's own ``create_transform(..., is_training=False)``
    reads it (``resolve_model_data_config``): size, crop mode and fraction, interpolation,
    mean and std; ``input_size`` replaces the size (the crop fraction kept)."""
    from timm.data import resolve_model_data_config

    cfg = resolve_model_data_config(model)
    size = (input_size, input_size) if input_size else tuple(int(v) for v in cfg["input_size"][1:])
    return InputSpec(
        mean=tuple(float(v) for v in cfg.get("mean", IMAGENET.mean)), std=tuple(float(v) for v in cfg.get("std", IMAGENET.std)),
        size=size, resize_mode=cfg.get("crop_mode") or "center", crop_pct=float(cfg.get("crop_pct") or 0.875),
        interpolation=str(cfg.get("interpolation") or "bilinear"),
    )


class InputSizeError(ValueError):
    """``--input-size`` a model cannot take (one line, with the sizes that would work)."""


def _size_arguments(model_name: str, input_size: int) -> dict:
    """timm's arguments that build ``model_name`` for ``input_size`` pixels: ``img_size`` for
    models with a fixed grid (ViTs: the size must be a multiple of the patch); none for
    models that pool whatever they are given (CNNs). Checked on the meta device."""
    import timm
    import torch

    with torch.device("meta"):
        try:
            net = timm.create_model(model_name, pretrained=False, num_classes=0, img_size=input_size).eval()
            args = {"img_size": input_size}
        except TypeError:  # no img_size argument: a network that takes any size, or one that takes only its own
            net, args = timm.create_model(model_name, pretrained=False, num_classes=0).eval(), {}
        except AssertionError as exc:
            raise InputSizeError(f"--input-size {input_size}: timm/{model_name} refuses it ({exc})") from None
    patch = getattr(getattr(net, "patch_embed", None), "patch_size", None)
    if patch is not None:
        p = int(patch[0] if isinstance(patch, tuple | list) else patch)
        if input_size % p:
            low, high = input_size // p * p, (input_size // p + 1) * p
            raise InputSizeError(f"--input-size {input_size} is not a multiple of timm/{model_name}'s {p}-pixel patch: "
                                 f"use {low} or {high}")
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, input_size, input_size, device="meta"))
    except Exception as exc:  # noqa: BLE001 - a shape error: the model takes only its own size
        raise InputSizeError(f"--input-size {input_size}: timm/{model_name} takes only its own input size "
                             f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None
    return args


@functools.cache
def feature_dim(model_name: str) -> int:
    """The width of what the headless model returns, from one forward on the meta device
    (no weights allocated, nothing computed). Not ``num_features``: that is the width before
    pooling, and models with a hidden layer after it (MobileNetV3/V4, GhostNet, LCNet,
    HGNetV2: ``head_hidden_size``) return wider rows. Where the meta forward fails, timm's
    own declaration of the output width is taken."""
    import timm
    import torch

    with torch.device("meta"):
        net = timm.create_model(model_name, pretrained=False, num_classes=0).eval()
    size = tuple((getattr(net, "pretrained_cfg", {}) or {}).get("input_size") or (3, 224, 224))
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, *size, device="meta"))
        if out.ndim == 2:
            return int(out.shape[1])
    except Exception:  # noqa: BLE001 - an op without a meta kernel: timm's declared width
        pass
    return int(getattr(net, "head_hidden_size", None) or net.num_features)


def _pretrained(model_name: str, release: str, size_args: dict | None = None):
    """timm's published weights: read from the local cache when they are there (no network
    call at all), downloaded only when the hub answers; otherwise a :class:`WeightsError`
    at once, naming the cache folder timm uses for this very release."""
    import timm
    from timm.models import get_pretrained_cfg

    tag = "" if release.upper() == "DEFAULT" else f".{release}"
    cfg = get_pretrained_cfg(model_name + tag)
    if cfg is None:
        raise WeightsError(f"timm has no pretrained release {release!r} for {model_name} (--weights none or a file PATH)")
    full = f"{model_name}.{cfg.tag}" if cfg.tag else model_name
    where, cached = _cached_file(cfg)
    if cached is not None:
        model = timm.create_model(full, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(cached)},
                                  **(size_args or {}))
        return model, f"timm {full} ({cached})"
    if not _hub_reachable():
        raise WeightsError(
            f"pretrained weights for timm/{full} are not in the local cache (expected {where}) and the hub "
            "cannot be reached. Copy them there, or pass --weights PATH to a state_dict file "
            "(--weights none gives random init, for testing only)."
        )
    try:
        return (timm.create_model(full, pretrained=True, num_classes=0, **(size_args or {})),
                f"timm {full} (downloaded to {where})")
    except Exception as exc:  # noqa: BLE001 - HTTP errors, a proxy...
        raise WeightsError(
            f"pretrained weights for timm/{full} could not be downloaded to {where} "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}). Pass --weights PATH to a state_dict file "
            "(--weights none gives random init, for testing only)."
        ) from None


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin", "open_clip_model.safetensors")


def _cached_file(cfg):
    """(the cache folder timm uses for ``cfg``'s weights, the weights file in it or None)."""
    import torch

    if cfg.hf_hub_id:
        from huggingface_hub import constants

        folder = Path(constants.HF_HUB_CACHE) / f"models--{cfg.hf_hub_id.split('@')[0].replace('/', '--')}"
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else list(WEIGHT_FILES)
        for snapshot in sorted((folder / "snapshots").glob("*")) if folder.is_dir() else []:
            for name in names:
                if (snapshot / name).is_file():
                    return folder, snapshot / name
        return folder, None
    if cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
        return path, path if path.is_file() else None
    return Path("(no published file)"), None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers within ``timeout`` (never when told to stay offline)."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout).close()
        return True
    except OSError:
        return False
