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
    return Backbone(model, feature_dim=feature_dim(model_name), input_spec=spec, weights_source=source)


def feature_dim(model_name: str) -> int:
    """The width of what the headless model returns, from one forward on the meta device
    (no weights allocated, nothing computed). Not ``num_features``: that is the width before
    pooling, and models with a hidden layer after it (MobileNetV3/V4, GhostNet, LCNet,
    HGNetV2: ``head_hidden_size``) return wider rows. Where the meta forward fails, timm's
    own declaration of the output width is taken."""
    import timm
    import torch

    with torch.device("meta"):
        net = timm.create_model(model_name, pretrained=False, num_classes=0).eval()
    size = tuple((getattr(net, "pretrained_cfg", {}) or {}).get("input_size") or (3, 224, 224))
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, *size, device="meta"))
        if out.ndim == 2:
            return int(out.shape[1])
    except Exception:  # noqa: BLE001 - an op without a meta kernel: timm's declared width
        pass
    return int(getattr(net, "head_hidden_size", None) or net.num_features)
