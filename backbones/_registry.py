"""The backbone registry: entry-point discovery (group ``vcp.backbones``), then loading.

Finding a plugin is separate from loading it. A plugin that fails to import, is not
callable, or builds something without an int ``feature_dim`` is listed as broken with
its distribution and the error; every other backbone keeps working.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from importlib import metadata
from typing import TYPE_CHECKING

from .spec import IMAGENET, BackboneSpec, InputSpec
from .weights import NoWeights, WeightsError, parse_weights, plugin_argument

if TYPE_CHECKING:
    from .module import Backbone

GROUP = "vcp.backbones"
TIMM_PREFIX = "timm/"
OWN_MODULES = frozenset({"backbones.torchvision_models", "backbones.video_models"})  # the modules of vcp's own built-in entry points


class BackboneError(Exception):
    """Unknown or broken backbone; the message lists what is available."""


def _distribution(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is not None:
        return f"{dist.name} {dist.version}"
    return "vcp-toolkit (source checkout)" if ep.value.startswith("backbones.") else "unknown distribution"


def _describe(ep: metadata.EntryPoint) -> BackboneSpec:
    """Load one entry point and check it against the plugin contract."""
    base = dict(name=ep.name, factory=None, distribution=_distribution(ep), entry_point=ep.value)
    try:
        factory = ep.load()
    except Exception as exc:  # noqa: BLE001 - any import error makes this one plugin broken
        return BackboneSpec(**base, error=f'failed to load plugin "{ep.name}" due to {type(exc).__name__}: {exc}')
    if not callable(factory):
        return BackboneSpec(**base, error=f"{ep.value} is not callable")
    dim, recipe = getattr(factory, "feature_dim", None), getattr(factory, "input_spec", None)
    if dim is None:
        import torch

        try:
            with torch.device("meta"):
                module = factory(weights=None)
        except Exception as exc:  # noqa: BLE001
            return BackboneSpec(**{**base, "factory": factory}, error=f"factory(weights=None) failed: {type(exc).__name__}: {exc}")
        dim, recipe = getattr(module, "feature_dim", None), getattr(module, "input_spec", recipe)
    if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
        return BackboneSpec(**{**base, "factory": factory}, error=f"returned module has no int feature_dim (got {dim!r})")
    problem = None if recipe is None else (recipe.problem() if isinstance(recipe, InputSpec) else "not a backbones.InputSpec")
    if problem:
        return BackboneSpec(**{**base, "factory": factory}, feature_dim=dim, error=f"its input recipe cannot be used: {problem}")
    spec = BackboneSpec(
        **{**base, "factory": factory},
        feature_dim=dim,
        default_weights=getattr(factory, "default_weights", "DEFAULT"),
        input=recipe or IMAGENET,
        frames_as_stored=getattr(factory, "frames_as_stored", False) is True,
        kind=getattr(factory, "kind", "frame"), window=getattr(factory, "window", None),
        frame_rate=getattr(factory, "frame_rate", None), fixed_window=getattr(factory, "fixed_window", False) is True,
    )
    problem = spec.temporal_problem()
    if problem:
        return dataclasses.replace(spec, error=f"its temporal recipe cannot be used: {problem}")
    return spec


def _source_checkout_entry_points() -> list[metadata.EntryPoint]:
    """The project's own entry points read from ``pyproject.toml`` when vcp runs from a
    source checkout that was never installed (e.g. ``PYTHONPATH=.`` on a GPU box)."""
    from pathlib import Path

    try:
        import tomllib
    except ImportError:  # Python 3.10: install the package instead
        return []
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        table = tomllib.loads(pyproject.read_text())["project"]["entry-points"][GROUP]
    except (OSError, KeyError, ValueError):
        return []
    return [metadata.EntryPoint(name=n, value=v, group=GROUP) for n, v in table.items()]


def _installed_entry_points() -> list[metadata.EntryPoint]:
    found = list(metadata.entry_points(group=GROUP))
    if not any(ep.value.split(":")[0] in OWN_MODULES for ep in found):
        found += _source_checkout_entry_points()
    return found


class Registry:
    """Backbones from entry points (``entry_points=None``: the installed ones)."""

    def __init__(self, entry_points: Iterable[metadata.EntryPoint] | None = None):
        if entry_points is None:
            entry_points = _installed_entry_points()
        # vcp's own built-ins first under each name: a plugin reusing one is the duplicate (broken), never the one run
        self._entry_points = sorted(entry_points, key=lambda ep: (ep.name, ep.value.split(":")[0] not in OWN_MODULES))
        self._specs: dict[str, BackboneSpec] | None = None

    def specs(self) -> dict[str, BackboneSpec]:
        if self._specs is None:
            specs: dict[str, BackboneSpec] = {}
            for ep in self._entry_points:
                if ep.name.startswith(TIMM_PREFIX):  # never reachable: timm/<name> is timm's model
                    specs[f"{ep.name} [{_distribution(ep)}]"] = BackboneSpec(
                        name=ep.name, factory=None, distribution=_distribution(ep), entry_point=ep.value,
                        error=f"the name prefix {TIMM_PREFIX} belongs to timm's models: register it under another name")
                    continue
                spec = _describe(ep)
                if ep.name in specs:
                    first = specs[ep.name]
                    spec = BackboneSpec(
                        name=ep.name, factory=None, distribution=spec.distribution, entry_point=ep.value,
                        error=f"duplicate backbone name (already provided by {first.distribution}: {first.entry_point})",
                    )
                    specs[f"{ep.name} [{spec.distribution}]"] = spec
                    continue
                specs[ep.name] = spec
            self._specs = specs
        return self._specs

    def names(self, *, include_broken: bool = False) -> list[str]:
        return [n for n, s in self.specs().items() if include_broken or s.ok]

    def spec(self, name: str) -> BackboneSpec:
        if name.startswith(TIMM_PREFIX):
            from . import timm_models

            model_name = name[len(TIMM_PREFIX):]
            if not timm_models.known(model_name):
                raise BackboneError(f"unknown timm model {model_name!r} (see timm.list_models())")
            # its width is learnt from the model when it is built (timm_models.feature_dim: without building it)
            return BackboneSpec(
                name=name, factory=lambda weights=None, input_size=None: timm_models.build(model_name, weights, input_size),
                feature_dim=None, default_weights="DEFAULT", distribution="timm", entry_point="timm.create_model",
            )
        if self._specs is not None:
            spec = self._specs.get(name)
        else:  # finding is separate from loading: only this name's plugin is imported
            ep = next((e for e in self._entry_points if e.name == name), None)  # the first of a duplicated name wins
            spec = _describe(ep) if ep is not None else None
        if spec is None:
            available = ", ".join(self.names()) + ", timm/<model_name>"  # (an error path: loads them all to list them)
            raise BackboneError(f"Invalid backbone ({name!r}). Available: {available}.")
        if not spec.ok:
            raise BackboneError(f"backbone {name!r} is broken: {spec.error}")
        return spec

    def create(self, name: str, weights="DEFAULT", *, input_size: int | None = None) -> Backbone:
        """Build ``name`` with ``weights``; returns it frozen, as a :class:`Backbone`.
        ``input_size``: a timm model built for that size; any other backbone keeps its network
        and its recipe takes that size (a network that pools whatever it gets)."""
        from .timm_models import InputSizeError

        spec = self.spec(name)
        parsed = parse_weights(weights)
        try:
            if input_size is not None and name.startswith(TIMM_PREFIX):
                model = spec.factory(weights=plugin_argument(parsed), input_size=input_size)
            else:
                model = spec.factory(weights=plugin_argument(parsed))
        except WeightsError:
            raise
        except InputSizeError as exc:
            raise BackboneError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001
            raise BackboneError(f"backbone {name!r} ({spec.distribution}) failed to build: {type(exc).__name__}: {exc}") from None
        source = "random init" if isinstance(parsed, NoWeights) else str(parsed)
        from .module import Backbone

        try:
            backbone = Backbone.of(model, input_spec=spec.input, weights_source=source)
        except TypeError:
            raise BackboneError(f"backbone {name!r} ({spec.distribution}) returned no nn.Module with int feature_dim") from None
        backbone.kind = spec.kind
        problem = backbone.input_spec.problem() if isinstance(backbone.input_spec, InputSpec) else "not an InputSpec"
        if problem:
            raise BackboneError(f"backbone {name!r} ({spec.distribution}) declares an input recipe vcp cannot use: {problem}")
        if input_size is not None and not name.startswith(TIMM_PREFIX):
            current = backbone.input_spec
            backbone.input_spec = dataclasses.replace(
                current, size=(input_size, input_size), scale=None, resize_mode=current.resize_mode if current.has_recipe else "squash",
                crop_pct=current.crop_pct if current.has_recipe else 1.0)
        return backbone


_default: Registry | None = None


def default_registry() -> Registry:
    global _default
    if _default is None:
        _default = Registry()
    return _default


def list_backbones(*, include_broken: bool = False) -> list[str]:
    return default_registry().names(include_broken=include_broken)


def get_backbone(name: str, weights="DEFAULT", *, input_size: int | None = None) -> Backbone:
    return default_registry().create(name, weights, input_size=input_size)
