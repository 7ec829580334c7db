"""``vcp extract --from-videos RAW FEATURES``: DALI straight into the backbone.

No ``.pt`` files: each split's videos go through the same :class:`ClipLoader` as
``vcp tensorize`` (same sampling, same graph) and the clips reach the backbone directly
(on CUDA through DLPack, cloned device-to-device, never through the host).
With the backbone on CUDA, decoding runs in a bounded background thread, so the next
batch decodes while the backbone works on this one; with the backbone on the CPU it runs
in line by default (the two would share the same cores; ``--prefetch`` overrides).
The HDF5 equals tensorize + extract on the same inputs.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from dali_pipes import ClipLoader

from .encoder import FrameEncoder
from .features import (
    Clip,
    ExtractConfig,
    SplitResult,
    fingerprint,
    load_backbone,
    output_target,
    summary_table,
    write_features,
)
from .layout import discover_raw, file_stamp, prepare_output_dir
from .lock import output_lock
from .report import file_error
from .settings import TensorizeConfig, validate_strategy_rules
from .shard import assign_balanced


def split_fingerprint(groups, config: ExtractConfig, sampling: TensorizeConfig) -> str:
    """What a split's features from videos depend on: its files, the sampling of each group,
    the frame size, and the extract settings."""
    settings = {
        "sampling": {f"{g.category}/{g.subcategory}": asdict(sampling.sampling(g)) for g in groups},
        "size": sampling.size,
    }
    return fingerprint([f for g in groups for f in g.files], config, stream=settings)


def extract_from_videos(
    raw: str | Path,
    features: str | Path,
    config: ExtractConfig,
    sampling: TensorizeConfig,
    *,
    model=None,
    console: Console | None = None,
) -> list[SplitResult]:
    console = console or Console(stderr=True)
    tree = discover_raw(raw, splits=list(config.splits) if config.splits else None)
    validate_strategy_rules(sampling, tree)
    features = prepare_output_dir(features, inputs=tree.root, what="FEATURES")
    with output_lock(features, config.shard):
        return _extract_locked(tree, features, config, sampling, model=model, console=console)


def _extract_locked(tree, features: Path, config: ExtractConfig, sampling: TensorizeConfig, *, model, console):
    mapping = tree.category_mapping
    encoder = FrameEncoder(model if model is not None else load_backbone(config), config)
    stored = encoder.target  # clips are normalized for this backbone directly
    loader = ClipLoader(
        size=sampling.size, mean=stored.mean, std=stored.std,
        device="gpu" if config.device.startswith("cuda") else "cpu", device_id=sampling.device_id,
        max_batch=sampling.max_batch, cpu_decoder=sampling.cpu_decoder, pipelines=sampling.pipelines,
    )
    depth = sampling.prefetch_depth(default=2 if config.device.startswith("cuda") else 0)
    results = []
    for split in tree.splits:
        groups = sorted(tree.groups_of(split), key=lambda g: (g.category, g.subcategory))
        result = SplitResult(split)
        everything = [f for g in groups for f in g.files]
        fp = split_fingerprint(groups, config, sampling)
        out_path, previous = output_target(features, split, config, fp)
        if previous is not None:
            results.append(previous)
            continue
        order = {f: i for i, f in enumerate(everything)}  # single-process row order
        mine = set(everything)
        if config.shard.active:  # balanced by file size
            ranks = assign_balanced([file_stamp(f)[0] for f in everything], config.shard.count)
            mine = {f for f, r in zip(everything, ranks, strict=True) if r == config.shard.index}

        def clips(groups=groups, result=result, mine=mine, order=order):
            for group in groups:
                items = [(str(p), tree.relpath(p)) for p in group.files if p in mine]
                for batch in loader.load(items, sampling.sampling(group), ahead=depth):
                    for r in batch:
                        if r.ok:
                            name = f"{group.category}/{group.subcategory}/{Path(r.path).name}"
                            yield Clip(
                                order[Path(r.path)], r.clip, stored, mapping[group.category], name, str(group.rel_dir),
                                fps=r.info.fps, frame_indices=r.indices.tolist(),
                                frame_times=r.info.times_of(r.indices),
                            )
                        else:
                            result.failures.append((r.relpath, r.error.reason))
                            file_error(r.relpath, r.error.reason)

        write_features(
            split, out_path, clips(), result=result, total=len(mine),
            frame_counts=[sampling.frames], mapping=mapping, config=config, encoder=encoder,
            fp=fp, attrs={"source": "videos", "raw_root": str(tree.root)}, console=console,
        )
        results.append(result)
    console.print(summary_table(results))
    return results
