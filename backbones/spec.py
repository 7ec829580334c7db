"""What a backbone expects as input, and the spec that describes a registered backbone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class InputSpec:
    """How frames must be prepared: RGB in 0..1, then ``(x - mean) / std``."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size: int = 224  # the resolution the weights were trained at (a hint, not enforced)
    interpolation: str = "bilinear"


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

    @property
    def ok(self) -> bool:
        return self.error is None
