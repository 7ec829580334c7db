"""Factories used as third-party plugins by the registry tests."""

import torch
from torch import nn

from backbones.spec import InputSpec


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


class Tiny3D(nn.Module):
    """A small 3D network: a clip backbone, [B, 3, T, H, W] -> [B, 16]."""

    feature_dim = 16

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 16, kernel_size=(3, 3, 3), padding=1)
        self.bn = nn.BatchNorm3d(16)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3, 4))


def tiny3d(weights=None):
    model = Tiny3D()
    if weights is not None:
        model.load_state_dict(torch.load(weights, weights_only=True))
    return model


tiny3d.kind, tiny3d.window, tiny3d.frame_rate = "clip", 4, 10.0
tiny3d.input_spec = InputSpec(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), size=(32, 32), resize_mode="center",
                              scale=(36, 36))
