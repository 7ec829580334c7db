"""``timm/<model_name>``: any timm model, head removed (``num_classes=0``)."""

from __future__ import annotations

from .spec import IMAGENET, Backbone, InputSpec
from .weights import NoWeights, WeightsError, WeightsFile, load_into, parse_weights, read_state_dict


def build(model_name: str, weights=None) -> Backbone:
    import timm

    if model_name not in timm.list_models(pretrained=False) and not timm.is_model(model_name):
        raise KeyError(model_name)
    weights = parse_weights(weights)
    if isinstance(weights, NoWeights):
        model, source = timm.create_model(model_name, pretrained=False, num_classes=0), "random init"
    elif isinstance(weights, WeightsFile):
        # A state_dict of this timm model (as timm saves it), loaded strictly: every tensor
        # of the network must come from the file (timm's own file loading let resnet18
        # weights into a resnet34 without a word).
        model = timm.create_model(model_name, pretrained=False, num_classes=0)
        classifier = (getattr(model, "pretrained_cfg", {}) or {}).get("classifier") or ()
        heads = tuple(f"{c}." for c in ([classifier] if isinstance(classifier, str) else classifier))
        load_into(model, read_state_dict(weights.path), head_prefixes=heads, source=str(weights), arch=f"timm/{model_name}")
        source = str(weights)
    else:
        tag = "" if weights.name.upper() == "DEFAULT" else f".{weights.name}"
        try:
            model = timm.create_model(model_name + tag, pretrained=True, num_classes=0)
        except Exception as exc:  # noqa: BLE001
            repo = f"models--timm--{model_name}"
            raise WeightsError(
                f"pretrained weights for timm/{model_name}{tag} are not in the local Hugging Face/timm "
                f"cache (expected ~/.cache/huggingface/hub/{repo}) and could not be downloaded "
                f"({type(exc).__name__}: {str(exc)[:200]}). Pass --weights PATH to a state_dict file "
                "(--weights none gives random init, for testing only)."
            ) from None
        source = f"timm {model_name}{tag}"
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    spec = InputSpec(tuple(cfg["mean"]), tuple(cfg["std"])) if "mean" in cfg and "std" in cfg else IMAGENET
    return Backbone(model, feature_dim=model.num_features, input_spec=spec, weights_source=source)


def feature_dim(model_name: str) -> int:
    """``num_features`` without allocating weights (built on the meta device)."""
    import timm
    import torch

    with torch.device("meta"):
        return int(timm.create_model(model_name, pretrained=False, num_classes=0).num_features)
