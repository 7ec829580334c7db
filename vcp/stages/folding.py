"""The network as vcp runs it: conv+BatchNorm folded into one convolution (a traced copy,
torch.fx), and under bf16/fp16 the weights of that copy cast once instead of at every
forward."""

from __future__ import annotations

from collections import Counter

import torch


def cast_weights_once(net: torch.nn.Module, dtype: torch.dtype) -> int:
    """Cast, once, the weights of the plain convolutions and linear layers that autocast
    casts at every forward; the number of layers cast.

    Under autocast these layers run in ``dtype`` whatever their weights' dtype, and the
    cast is the same rounding, so casting ahead gives the same bits and saves two small
    kernels per layer per forward (340 for efficientnet_v2_s, conv+BN folded). Only in
    vcp's own folded copy of the network (an fx graph): its code reads no weight's dtype
    at run time (tracing froze such reads into constants), and a layer whose parameters
    the graph also reads directly (``get_attr``), shares with another layer (tied
    weights) or makes at run time (a hook, as ``weight_norm`` has) is left as it is.
    """
    if not isinstance(net, torch.fx.GraphModule):
        return 0
    read = {n.target for n in net.graph.nodes if n.op == "get_attr"}
    modules = dict(net.named_modules())
    owners = Counter(id(p) for m in net.modules() for p in m.parameters(recurse=False))
    cast: set[str] = set()
    for node in net.graph.nodes:
        module = modules.get(node.target) if node.op == "call_module" else None
        if type(module) not in (torch.nn.Conv2d, torch.nn.Linear) or node.target in cast:
            continue
        if any(r == node.target or r.startswith(f"{node.target}.") for r in read):
            continue
        if any(owners[id(p)] > 1 for p in module.parameters(recurse=False)):  # tied to another layer
            continue
        own = {name for name, _ in module.named_parameters(recurse=False)}
        if not {"weight"} <= own <= {"weight", "bias"} or module._forward_pre_hooks or module._forward_hooks:
            continue  # its weight is made at run time (e.g. weight_norm's hook from weight_g, weight_v)
        module.to(dtype)
        cast.add(node.target)
    return len(cast)


def has_batchnorm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def fused(model: torch.nn.Module) -> torch.nn.Module:
    """Conv+BatchNorm folded (torch.fx) when the model traces; the model itself otherwise."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(model)
    except Exception:  # noqa: BLE001 - untraceable plugin models simply run unfused
        return model
