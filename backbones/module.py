"""The :class:`Backbone` vcp runs: a plugin's (or a built-in's) module, frozen, with the
contract's facts as fields (``backbones.spec`` has the contract; this is its torch half)."""

from __future__ import annotations

from torch import nn

from .spec import IMAGENET, InputSpec


class Backbone(nn.Module):
    """A frozen backbone as vcp runs it: forward ``[B, 3, H, W]`` -> ``[B, feature_dim]``.

    ``net`` is the factory's module, unchanged (eval mode, no gradients); ``input_spec`` is
    how its input must be normalized; ``weights_source`` says where its weights came from.
    The wrapper is transparent where users look: ``state_dict()`` has the module's own keys
    (no ``net.`` prefix: it loads into the bare architecture and back), and attributes the
    wrapper lacks (``.fc``, ``.features``) are the module's.
    """

    def __init__(self, net: nn.Module, *, feature_dim: int, input_spec: InputSpec = IMAGENET, weights_source: str = "unknown",
                 kind: str = "frame"):
        super().__init__()
        self.net = net
        self.feature_dim, self.input_spec, self.weights_source = int(feature_dim), input_spec, weights_source
        self.kind = kind  # "clip": forward takes [B, 3, T, H, W]
        self.eval().requires_grad_(False)
        self.register_state_dict_post_hook(_drop_net_prefix)
        self.register_load_state_dict_pre_hook(_add_net_prefix)

    def forward(self, x):
        return self.net(x)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            net = self.__dict__.get("_modules", {}).get("net")
            if net is None or name.startswith("__"):
                raise
            return getattr(net, name)

    @classmethod
    def of(cls, module: nn.Module, *, input_spec: InputSpec = IMAGENET, weights_source: str = "unknown") -> Backbone:
        """``module`` itself when it is a Backbone; else wrapped, its contract attributes read
        here once (``feature_dim`` must be an int; ``input_spec`` and ``weights_source``, when
        the module has them, win over the defaults given)."""
        if isinstance(module, Backbone):
            return module
        dim = getattr(module, "feature_dim", None)
        if not isinstance(module, nn.Module) or not isinstance(dim, int):
            raise TypeError(f"not an nn.Module with an int feature_dim (feature_dim={dim!r})")
        return cls(
            module, feature_dim=dim, input_spec=getattr(module, "input_spec", input_spec),
            weights_source=getattr(module, "weights_source", weights_source), kind=getattr(module, "kind", "frame"),
        )


def _drop_net_prefix(module, state_dict, prefix, local_metadata) -> None:
    """state_dict post-hook: ``<prefix>net.k`` -> ``<prefix>k`` (order kept)."""
    inner = prefix + "net."
    items = [(prefix + k[len(inner):] if k.startswith(inner) else k, v) for k, v in state_dict.items()]
    state_dict.clear()
    state_dict.update(items)


def _add_net_prefix(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs) -> None:
    """load_state_dict pre-hook: ``<prefix>k`` -> ``<prefix>net.k`` (files with ``net.`` keys load too)."""
    inner = prefix + "net."
    for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(inner)]:
        state_dict[inner + key[len(prefix):]] = state_dict.pop(key)
