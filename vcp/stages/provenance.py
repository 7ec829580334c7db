"""What a features file is made from and how: the fingerprint of its inputs and settings,
the weights' identity, the attrs recording the run and the recipe, and whether a file on
disk is current (made from these very inputs)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import torch

from backbones.weights import NoWeights, Weights, WeightsFile
from dali_pipes import VIEW_NAMES
from vcp.common.versions import versions
from vcp.stages import stage
from vcp.stages.encoder import FrameEncoder
from vcp.stages.settings import ExtractConfig
from vcp.stages.stage import SplitResult
from vcp.store.contract import PARTS_DIR, feature_part_name, features_filename
from vcp.store.folders import file_stamp


def fingerprint(files: list[Path], config: ExtractConfig, *, names: list[str] | None = None, **extra) -> str:
    """What a split's features depend on. Inputs count by their name inside the input tree
    (``names``; by default a ``.pt`` group's ``<split>/<category>/<subcategory>/<file>``),
    so the same tree spelled another way (relative, absolute, through a link) is the same input."""
    names = names if names is not None else [Path(*p.parts[-4:]).as_posix() for p in files]
    payload = {
        **extra,
        "inputs": [[name, *file_stamp(p)] for name, p in zip(names, files, strict=True)],
        "backbone": config.backbone, "weights": weights_identity(config.weights), "multi_scale": config.multi_scale,
        "scales": list(config.scales), "precision": config.precision,
    }
    if config.random_init:  # the network is the seed's
        payload["init_seed"] = config.seed
    if config.uses_model_recipe:  # the model's own input recipe (frames as stored: no key, as before it existed)
        payload["recipe"] = ["model", config.input_size]
    if config.views > 1:  # (one view: no key, as before views existed)
        payload["views"] = [config.views, config.views_reduce]
    return stage.fingerprint(payload)


def weights_identity(weights: Weights) -> str:
    """A weights file counts by content stamp (size, mtime), a release by its name."""
    if isinstance(weights, NoWeights):
        return "None"
    path = Path(str(weights))
    if isinstance(weights, WeightsFile) and path.is_file():
        st = path.stat()
        return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    return str(weights)


def output_target(features: Path, split: str, config: ExtractConfig, fp: str) -> tuple[Path, SplitResult | None]:
    """Where this process writes the split (the final file, or its shard's part), and the
    result already there when that file (or the final one) is up to date — a query: it
    writes nothing and changes nothing."""
    final = features / features_filename(split, config.multi_scale)
    part = features / PARTS_DIR / feature_part_name(final.name, config.shard.tag) if config.shard.active else None
    return stage.pick_target(final, part, lambda path: current_result(path, fp, split), overwrite=config.overwrite)


def current_result(path: Path, fp: str, split: str) -> SplitResult | None:
    """The result recorded in ``path`` when it was made from these inputs (``fp``), else None."""
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("fingerprint") != fp:
                return None
            upstream = [tuple(x) for x in json.loads(h5.attrs.get("tensorize_failed_files", "[]"))]
            failures = [tuple(x) for x in json.loads(h5.attrs.get("failed_files", "[]")) if tuple(x) not in upstream]
            return SplitResult(split, videos=int(h5.attrs["num_videos"]), output=path, skipped=1,
                               failures=failures, upstream_failures=upstream)
    except OSError:
        return None


def run_attrs(config: ExtractConfig, encoder: FrameEncoder, fp: str, extra: dict) -> dict:
    """The HDF5 attrs that say how the features were made (None values are left out)."""
    return {
        "backbone": config.backbone,
        "kind": "frame",  # a clip backbone's source says "clip" (with its window, stride and frame rate)
        "weights": encoder.model.weights_source,
        "scales": json.dumps(list(config.scales) if config.multi_scale else [1.0]),
        "precision": config.precision,
        "versions": json.dumps(versions(), sort_keys=True),
        "fingerprint": fp,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "shard_index": config.shard.index if config.shard.active else None,
        "shard_count": config.shard.count if config.shard.active else None,
        "init_seed": config.seed if config.random_init else None,
        "views": json.dumps(VIEW_NAMES[config.views]) if config.views > 1 else None,
        "views_reduce": config.views_reduce if config.views > 1 else None,
        "frames_per_forward": config.forward_batch,
        "compiled": bool(encoder.compiled),
        "weights_cast_once": encoder.weights_cast if encoder.dtype is not None else None,
        "cudnn_benchmark": bool(encoder.cuda),
        "tf32_convolutions": bool(torch.backends.cudnn.allow_tf32) if encoder.cuda and config.precision == "fp32" else None,
        **recipe_attrs(encoder),
        **extra,
    }


def recipe_attrs(encoder: FrameEncoder) -> dict:
    """How each frame was made ready for the network: ``recipe`` ``model`` (the model's own
    resize, crop, interpolation, mean/std, all recorded) or ``stored`` (the frames as stored,
    only re-normalized with the model's mean/std)."""
    target = encoder.target
    record = target.record() if encoder.recipe is not None else {"mean": list(target.mean), "std": list(target.std)}
    return {"recipe": "model" if encoder.recipe is not None else "stored",
            **{k: json.dumps(v) if isinstance(v, list) else v for k, v in record.items()}}
