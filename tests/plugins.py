"""Factories used as third-party plugins by the registry tests."""

import torch
from torch import nn


class Tiny(nn.Module):
    feature_dim = 7

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 7)

    def forward(self, x):
        return self.proj(x.mean(dim=(2, 3)))


def tiny(weights=None):
    model = Tiny()
    if weights is not None:
        model.load_state_dict(torch.load(weights, weights_only=True))
    return model


def no_feature_dim(weights=None):
    return nn.Identity()


def raises(weights=None):
    raise RuntimeError("plugin exploded")


NOT_CALLABLE = 42


class BadRecipe(Tiny):
    """Declares an input recipe with two means and a zero std."""

    def __init__(self):
        super().__init__()
        from backbones import InputSpec

        self.input_spec = InputSpec(mean=(0.5, 0.5), std=(0.0, 1.0, 1.0))


def bad_recipe(weights=None):
    return BadRecipe()


def own_recipe(weights=None):
    """A plugin that declares its whole recipe: 64x64, squashed, bicubic, mean/std 0.5."""
    from backbones import InputSpec

    model = Tiny()
    model.input_spec = InputSpec(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), size=(64, 64), resize_mode="squash",
                                 interpolation="bicubic")
    return model


def as_stored(weights=None):
    return tiny(weights)


as_stored.frames_as_stored = True  # like the four built-ins: --recipe auto feeds it the frames as stored
