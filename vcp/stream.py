"""``vcp extract --from-videos RAW FEATURES``: DALI straight into the backbone.

No ``.pt`` files: each split's videos go through the same :class:`ClipLoader` as
``vcp tensorize`` (same sampling, same graph) and the clips reach the backbone directly
(on CUDA as DALI GPU memory copied device-to-device into torch, never through the host).
Decoding runs in a bounded background thread, so the next batch decodes while the
backbone works on this one. The HDF5 equals tensorize + extract on the same inputs.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from dali_pipes import ClipLoader
from dali_pipes.prefetch import prefetch

from .atomic import remove_stale_tmp
from .extract import (
    ExtractConfig,
    FrameEncoder,
    SplitResult,
    fingerprint,
    skip_if_current,
    summary_table,
    write_features,
)
from .h5_writer import features_filename
from .layout import discover_raw
from .tensorize import TensorizeConfig


def extract_from_videos(
    raw: str | Path,
    features: str | Path,
    config: ExtractConfig,
    sampling: TensorizeConfig,
    *,
    model=None,
    console: Console | None = None,
    prefetch_depth: int = 2,
) -> list[SplitResult]:
    console = console or Console(stderr=True)
    features = Path(features)
    tree = discover_raw(raw, splits=list(config.splits) if config.splits else None)
    mapping = tree.category_mapping
    if model is None:
        from backbones import get_backbone

        model = get_backbone(config.backbone, config.weights)
    encoder = FrameEncoder(model, config)
    stored = encoder.target  # clips are normalized for this backbone directly
    loader = ClipLoader(
        size=sampling.size, mean=stored.mean, std=stored.std,
        device="gpu" if config.device == "cuda" else "cpu", device_id=sampling.device_id,
        max_batch=sampling.max_batch, cpu_decoder=sampling.cpu_decoder,
    )
    remove_stale_tmp(features)
    results = []
    for split in tree.splits:
        groups = sorted(tree.groups_of(split), key=lambda g: (g.category, g.subcategory))
        result = SplitResult(split)
        out_path = features / features_filename(split, config.multi_scale)
        settings = {
            "sampling": {f"{g.category}/{g.subcategory}": asdict(sampling.sampling(g)) for g in groups},
            "size": sampling.size,
        }
        fp = fingerprint([f for g in groups for f in g.files], config, stream=settings)
        if not config.overwrite and skip_if_current(out_path, fp, result):
            results.append(result)
            continue

        def clips(groups=groups, result=result):
            for group in groups:
                items = [(str(p), tree.relpath(p)) for p in group.files]
                for batch in prefetch(loader.load(items, sampling.sampling(group)), depth=prefetch_depth):
                    for r in batch:
                        if r.ok:
                            name = f"{group.category}/{group.subcategory}/{Path(r.path).name}"
                            yield r.clip, stored, mapping[group.category], name
                        else:
                            result.failures.append((r.relpath, r.error.reason))
                            print(f"vcp: error: {r.relpath}: {r.error.reason}", file=sys.stderr, flush=True)

        write_features(
            split, out_path, clips(), result=result, total=sum(len(g.files) for g in groups),
            frame_counts=[sampling.frames], mapping=mapping, config=config, encoder=encoder,
            fp=fp, attrs={"source": "videos", "raw_root": str(tree.root)}, console=console,
        )
        results.append(result)
    console.print(summary_table(results))
    return results
