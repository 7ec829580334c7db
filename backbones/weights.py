"""Weight loading: pretrained releases (cache -> download), local files, random init.

``weights`` is one of:
* ``None`` / ``"none"``: random init (tests; the CLI warns loudly);
* an existing path: a state_dict file as torchvision/timm publish it (the classification
  head's keys may be present: they are ignored because the head is removed);
* a release name (``"DEFAULT"``, ``"IMAGENET1K_V2"``...): the published weights, read from
  the local torch hub cache when present, downloaded where the network allows, and
  otherwise a :class:`WeightsError` naming the file expected in the cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class WeightsError(Exception):
    """Weights that cannot be had; the message says what to do."""


@dataclass(frozen=True)
class NoWeights:
    """Random init (tests; the CLI warns loudly)."""

    def __str__(self) -> str:
        return "none"


@dataclass(frozen=True)
class WeightsFile:
    """A local state_dict file."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class Release:
    """Published weights by name: ``DEFAULT`` or a release such as ``IMAGENET1K_V2``."""

    name: str

    def __str__(self) -> str:
        return self.name


Weights = NoWeights | WeightsFile | Release
_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def parse_weights(value) -> Weights:
    """What ``--weights`` (or a factory's ``weights=``) means, decided once.

    None / ``"none"``: random init. An existing file, or text that can only be a path (a
    folder separator, or a weights file suffix): a state_dict file — missing ones fail
    when read, naming the path. Anything else: a published release name.
    """
    if isinstance(value, (NoWeights, WeightsFile, Release)):
        return value
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        return NoWeights()
    text = os.fspath(value)
    if Path(text).is_file() or os.sep in text or "/" in text or text.endswith(_WEIGHT_SUFFIXES):
        return WeightsFile(Path(text))
    return Release(text)


def plugin_argument(weights: Weights) -> str | None:
    """The value the plugin contract passes a factory: None, a path string, or a release name."""
    return None if isinstance(weights, NoWeights) else str(weights)


def is_random(weights) -> bool:
    return isinstance(parse_weights(weights), NoWeights)


def is_path(weights) -> bool:
    return isinstance(parse_weights(weights), WeightsFile)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state_dict from ``path`` (``.pth``/``.pt`` via ``weights_only`` or ``.safetensors``).

    Files are only ever read with ``weights_only=True``: one that holds anything else is
    refused, never retried with arbitrary unpickling.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}")
    if not path.is_file():
        raise WeightsError(f"{path}: not a regular file (a folder, device or FIFO), not a weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch's own text suggests unsafe loading: not repeated
        kind = "it holds objects other than tensors" if "weights_only" in str(exc) or "Unpickl" in type(exc).__name__ else "not a PyTorch or safetensors weights file"
        raise WeightsError(f"{path}: not a readable state_dict ({kind}; {type(exc).__name__})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a dict of tensors (a state_dict)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _shape(t) -> list[int]:
    return list(getattr(t, "shape", ()))


def fit_report(model: torch.nn.Module, state: dict, head_prefixes: tuple[str, ...]) -> str | None:
    """One line on how ``state`` fails to fit ``model`` (head keys aside), or None if it fits."""
    expected = model.state_dict()

    def body(key: str) -> bool:
        return not key.startswith(head_prefixes)

    mismatched = [k for k in state if k in expected and _shape(state[k]) != _shape(expected[k]) and body(k)]
    missing = [k for k in expected if k not in state and body(k)]
    unexpected = [k for k in state if k not in expected and body(k)]
    if not (mismatched or missing or unexpected):
        return None
    parts = []
    if mismatched:
        k = mismatched[0]
        parts.append(f"{len(mismatched)} of {len(expected)} tensors differ in shape (e.g. {k}: file {_shape(state[k])}, model {_shape(expected[k])})")
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    return "; ".join(parts)


def load_into(model: torch.nn.Module, state: dict, *, head_prefixes: tuple[str, ...], source: str,
              arch: str = "this architecture", assign: bool = False) -> None:
    """Load ``state`` into the classification model; the head's keys may be absent or of
    another shape (the head is removed). Anything else that does not fit is one error line.
    ``assign``: the file's tensors become the model's (in the model's dtypes), not copied."""
    problem = fit_report(model, state, head_prefixes)
    if problem:
        raise WeightsError(f"{source}: does not fit {arch}: {problem}")
    expected = model.state_dict()
    kept = {k: v for k, v in state.items() if k in expected and _shape(v) == _shape(expected[k])}
    if assign:
        kept = {k: v.to(expected[k].dtype) for k, v in kept.items()}
    model.load_state_dict(kept, strict=False, assign=assign)


def built_with(make, state: dict, *, head_prefixes, source: str, arch: str, finish=None):
    """``make()`` (then ``finish(model)``, the head taken off) with ``state``'s weights, checked
    as :func:`load_into` checks them (``head_prefixes``: a tuple, or a function of the model).
    Built on the meta device and given the file's tensors: no weight is first drawn at random
    only to be overwritten, nor held twice (timm's ViT-B/16: 1.5 s of init on a 2-core Xeon).
    A model that holds a tensor the file does not (a buffer made at init and not saved), or
    that cannot be built or loaded there, is built and loaded as before."""
    import torch

    finish = finish or (lambda model: None)

    def heads(model) -> tuple[str, ...]:
        return head_prefixes if isinstance(head_prefixes, tuple) else head_prefixes(model)

    try:
        with torch.device("meta"):
            model = make()
        load_into(model, state, head_prefixes=heads(model), source=source, arch=arch, assign=True)
        finish(model)
    except WeightsError:
        raise
    except Exception:  # noqa: BLE001 - a constructor or loader that computes on its tensors: built for real below
        model = None
    if model is not None and not _holds_meta(model):
        return model
    model = make()
    load_into(model, state, head_prefixes=heads(model), source=source, arch=arch)
    finish(model)
    return model


def _holds_meta(model: torch.nn.Module) -> bool:
    """Any parameter, buffer or tensor attribute of ``model`` still without data."""
    import torch

    tensors = [*model.parameters(), *model.buffers(),
               *(v for m in model.modules() for v in vars(m).values() if isinstance(v, torch.Tensor))]
    return any(t.is_meta for t in tensors)


def torchvision_state_dict(arch: str, release: str) -> tuple[dict, str]:
    """The state_dict of torchvision's ``arch`` release ``release`` and its cache path.

    Looks in ``torch.hub.get_dir()/checkpoints`` first; downloads only when missing.
    """
    import torch
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    try:
        entry = enum.DEFAULT if release.upper() == "DEFAULT" else enum[release]
    except KeyError:
        names = ", ".join(["DEFAULT", *enum.__members__])
        raise WeightsError(
            f"Invalid weights ({release!r}) for {arch}. Supported values are: {names}, none, or a file path."
        ) from None
    filename = os.path.basename(entry.url)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return read_state_dict(cached), f"{entry} ({cached})"
    try:
        state = torch.hub.load_state_dict_from_url(entry.url, progress=True, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - offline, proxy, HTTP errors...
        raise WeightsError(
            f"pretrained weights {entry} for {arch} are not in the local torch cache "
            f"(expected {cached}) and could not be downloaded ({type(exc).__name__}: {exc}). "
            f"Copy {filename} there, or pass --weights PATH to a state_dict file "
            "(--weights none gives random init, for testing only)."
        ) from None
    return state, f"{entry} (downloaded to {cached})"
