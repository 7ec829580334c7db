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
