"""``vcp backbones NAME``: one backbone's input, and how to make ``.pt`` files right for it."""

from __future__ import annotations


def _spec_and_input(name: str):
    """(the registry's spec, the input recipe): a timm model's is read from the model built
    on the meta device (no weights)."""
    from backbones import default_registry

    spec = default_registry().spec(name)  # BackboneError (one line) for an unknown or broken name
    if not name.startswith("timm/"):
        return spec, spec.input
    import timm
    import torch

    from backbones.timm_models import recipe

    with torch.device("meta"):
        model = timm.create_model(name[len("timm/"):], pretrained=False, num_classes=0)
    return spec, recipe(model)


def two_stage(spec, recipe) -> list[str]:
    """The ``vcp tensorize`` options whose ``.pt`` frames, through the model's recipe, give
    the features ``vcp extract --from-videos`` gives (or why there are none)."""
    if spec.kind == "clip":
        return ["a clip backbone reads windows of consecutive frames: vcp extract --from-videos only"]
    if not recipe.has_recipe:
        return ["the frames as stored: any vcp tensorize output (its --size is what the network sees)"]
    (h, w), (sh, sw) = recipe.size, recipe.scale_size
    extra = "" if recipe.interpolation == "bilinear" else f" --interpolation {recipe.interpolation}"
    lines = []
    if spec.frames_as_stored:
        lines.append("by default (--recipe auto) the frames as stored: any vcp tensorize output; with --recipe model:")
    if recipe.resize_mode == "center" and sh == sw and h == w:
        lines.append(f"vcp tensorize RAW OUT --fit center --size {sh}{extra}   (the shorter edge to {sh}, its centre "
                     f"{sh}x{sh} kept; the recipe then crops {w}x{h})")
    elif recipe.resize_mode == "squash" and sh == sw and h == w:
        lines.append(f"vcp tensorize RAW OUT --fit squash --size {sh}{extra}   (both edges to {sh}; the recipe then "
                     f"crops {w}x{h})")
    else:
        lines.append(f"no .pt holds its input exactly ({recipe.resize_mode} to {sw}x{sh}, crop {w}x{h}): "
                     "use vcp extract --from-videos")
    return lines


def describe(name: str) -> str:
    spec, recipe = _spec_and_input(name)
    dim = spec.feature_dim
    if dim is None and name.startswith("timm/"):
        from backbones.timm_models import feature_dim

        dim = feature_dim(name[len("timm/"):])
    lines = [f"{name}: {spec.kind} backbone, {dim}-d features, from {spec.distribution}"]
    if spec.kind == "clip":
        lines.append(f"  windows of {spec.window} frames at {spec.frame_rate:g} fps" + (" (no other window)" if spec.fixed_window else ""))
    if recipe.has_recipe:
        (h, w), (sh, sw) = recipe.size, recipe.scale_size
        how = {"center": f"the shorter edge to {sh}", "squash": f"both edges to {sw}x{sh}",
               "border": f"the longer edge to {max(sh, sw)}"}[recipe.resize_mode]
        lines.append(f"  input: {how}, centre crop {w}x{h}, {recipe.interpolation}"
                     f"{'' if recipe.antialias else ' (not antialiased)'}, mean {list(recipe.mean)}, std {list(recipe.std)}")
    else:
        lines.append(f"  input: the frames as stored, mean {list(recipe.mean)}, std {list(recipe.std)}")
    lines.append("  from .pt files (two stages), the features of --from-videos come from:")
    steps = two_stage(spec, recipe)
    lines += [f"    {line}" for line in steps]
    if steps[-1].startswith("vcp tensorize"):
        lines.append(f"    then: vcp extract OUT FEATURES --backbone {name}" + (" --recipe model" if spec.frames_as_stored else ""))
    return "\n".join(lines)
