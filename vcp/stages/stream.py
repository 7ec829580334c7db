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

import functools
from dataclasses import asdict, replace
from pathlib import Path

from rich.console import Console

from dali_pipes import DECODE_RULES, MAX_PIXELS
from vcp.common.progress import console as progress_console
from vcp.inputs.layout import Group, RawTree, discover_raw
from vcp.stages import stage
from vcp.stages.encoder import FrameEncoder
from vcp.stages.features import (
    Clip,
    ExtractConfig,
    Failed,
    fingerprint,
    load_backbone,
    max_rows,
    output_target,
    summary_table,
    write_features,
)
from vcp.stages.settings import ClipSettings, DecodeSettings
from vcp.stages.space import check_space, features_bytes
from vcp.stages.stage import RunResult, SplitResult
from vcp.store.folders import prepare_output_dir
from vcp.store.lock import output_lock


def split_fingerprint(groups, config: ExtractConfig, clip: ClipSettings, max_pixels: int = MAX_PIXELS) -> str:
    """What a split's features from videos depend on: its files, the sampling of each group,
    the frame size, the largest frame decoded, and the extract settings."""
    settings = {
        "sampling": {f"{g.category}/{g.subcategory}": asdict(clip.sampling(g)) for g in groups},
        "size": clip.size,
        "decode": DECODE_RULES,
        "max_pixels": max_pixels,
    }
    return fingerprint([f for g in groups for f in g.files], config, names=[
        f"{g.rel_dir.as_posix()}/{f.name}" for g in groups for f in g.files], stream=settings)


def bytes_to_write(tree: RawTree, features: Path, config: ExtractConfig, clip: ClipSettings, max_pixels: int, dim: int) -> dict[str, int]:
    """Estimated bytes per split this process will write (uncompressed: :mod:`vcp.space`)."""
    out = {}
    for split in tree.splits:
        groups = split_groups(tree, split)
        if output_target(features, split, config, split_fingerprint(groups, config, clip, max_pixels))[1] is None:
            videos = sum(len(g.files) for g in groups) // max(1, config.shard.count)
            out[split] = features_bytes(videos, max_rows([clip.frames], config), dim)
    return out


def split_groups(tree: RawTree, split: str) -> list[Group]:
    """A split's groups in row order (category, subcategory)."""
    return sorted(tree.groups_of(split), key=lambda g: (g.category, g.subcategory))


def extract_from_videos(
    raw: str | Path,
    features: str | Path,
    config: ExtractConfig,
    clip: ClipSettings,
    decode: DecodeSettings,
    *,
    model=None,
    console: Console | None = None,
) -> RunResult:
    console = console or progress_console(stderr=True)
    clip.check()
    tree = discover_raw(raw, splits=list(config.splits) if config.splits else None)
    clip.check(tree)
    features = prepare_output_dir(features, inputs=tree.root, what="FEATURES")
    encoder = FrameEncoder(model if model is not None else load_backbone(config), config)
    needed = bytes_to_write(tree, features, config, clip, decode.max_pixels, encoder.model.feature_dim)
    check_space(features, sum(needed.values()), skip=not config.space_check)
    # the loader (and its probe processes) before the lock and any output is opened
    with _VideoSource(tree, encoder, clip, decode) as source, output_lock(features, config.shard):
        results = RunResult(_extract_split(split, source, features, config, encoder, console) for split in tree.splits)
    console.print(summary_table(results, tree=tree))
    return results


def _extract_split(split: str, source: _VideoSource, features: Path, config: ExtractConfig, encoder, console) -> SplitResult:
    groups = split_groups(source.tree, split)
    fp = split_fingerprint(groups, config, source.clip, source.max_pixels)
    out_path, previous = output_target(features, split, config, fp)
    if previous is not None:
        return previous
    result = SplitResult(split)
    everything = [f for g in groups for f in g.files]
    mine = stage.owned_files(everything, config.shard)  # balanced by file size
    write_features(
        split, out_path, functools.partial(source.clips, groups, everything, mine), result=result, total=len(mine),
        frame_counts=[source.clip.frames], mapping=source.mapping, config=config, encoder=encoder,
        fp=fp, attrs={"source": "videos", "raw_root": str(source.tree.root)}, console=console,
    )
    return result


class _VideoSource:
    """Clips of a split's videos, straight from the loader, normalized for the backbone."""

    def __init__(self, tree: RawTree, encoder: FrameEncoder, clip: ClipSettings, decode: DecodeSettings):
        self.tree, self.clip, self.mapping = tree, clip, tree.category_mapping
        self.stored = encoder.target  # clips are normalized for this backbone directly
        on_cuda = encoder.device.type == "cuda"
        self.loader = replace(decode, mode="gpu" if on_cuda else "cpu").loader(clip.size, self.stored)
        self.depth = decode.prefetch_depth(default=2 if on_cuda else 0)
        self.max_pixels = decode.max_pixels

    def __enter__(self) -> _VideoSource:
        return self

    def __exit__(self, *exc) -> None:
        self.loader.close()

    def clips(self, groups: list[Group], everything: list[Path], mine: set[Path], resume_at: int = 0):
        """This rank's clips (and :class:`Failed` videos) in row order, from ``resume_at``."""
        order = {f: i for i, f in enumerate(everything)}  # single-process row order
        for group in groups:
            items = [(str(p), self.tree.relpath(p)) for p in group.files if p in mine and order[p] >= resume_at]
            if not items:
                continue
            for batch in self.loader.load(items, self.clip.sampling(group), ahead=self.depth):
                for r in batch:
                    if r.ok:
                        name = f"{group.category}/{group.subcategory}/{Path(r.path).name}"
                        yield Clip(
                            order[Path(r.path)], r.clip, self.stored, self.mapping[group.category], name, str(group.rel_dir),
                            fps=r.info.fps, frame_indices=r.indices.tolist(), frame_times=r.info.times_of(r.indices),
                        )
                    else:
                        yield Failed(order[Path(r.path)], r.relpath, r.error.reason)
