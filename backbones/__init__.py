"""Backbone registry for vcp: built-in torchvision models, any timm model, plugins.

Plugins register a factory under the entry-point group ``vcp.backbones``::

    [project.entry-points."vcp.backbones"]
    my_net = "my_pkg.models:my_net"   # my_net(weights=None) -> nn.Module with .feature_dim

The contract is in ``spec.py``; :func:`get_backbone` returns a frozen :class:`Backbone`.
"""

from ._registry import (
    GROUP,
    BackboneError,
    Registry,
    default_registry,
    get_backbone,
    list_backbones,
)
from .spec import IMAGENET, BackboneSpec, InputSpec
from .weights import NoWeights, Release, Weights, WeightsError, WeightsFile, parse_weights

__all__ = [
    "GROUP",
    "IMAGENET",
    "Backbone",
    "BackboneError",
    "BackboneSpec",
    "InputSpec",
    "Registry",
    "NoWeights",
    "Release",
    "Weights",
    "WeightsError",
    "WeightsFile",
    "parse_weights",
    "default_registry",
    "get_backbone",
    "list_backbones",
]


def __getattr__(name: str):
    if name == "Backbone":  # an nn.Module: torch is imported when it is first asked for (listing needs none)
        from .module import Backbone

        return Backbone
    raise AttributeError(name)
