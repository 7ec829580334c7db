"""``--dry-run``: what a stage would do, computed exactly as the stage decides it, writing nothing.

Per group (tensorize, ``--from-videos``) or split (extract): the videos found, whether the
outputs are up to date with the inputs and settings (skipped) or would be made, and the
files that will be rejected on sight — empty, not a regular file, a broken link, a name
that is not UTF-8 (a file that passes may still fail when it is probed); under the table,
what discovery did not take (hidden, non-video, outside the layout), as the real run says it.
"""

from __future__ import annotations

from pathlib import Path

from vcp.common.progress import PlainTable, human_bytes
from vcp.inputs.layout import RawTree, ignored_summary
from vcp.inputs.sight import rejected_lines
from vcp.stages.space import free_caption


def _table(title: str, first: str, tree: RawTree | None, out: Path, needed: dict, ways=()) -> PlainTable:
    """The plan's table; under it what discovery ignored, and each split's estimated output
    size (``needed``: split or group -> bytes) against the free space at ``out``."""
    per_split: dict[str, int] = {}
    for key, size in needed.items():
        per_split[key.split("/")[0]] = per_split.get(key.split("/")[0], 0) + size
    writes = ", ".join(f"{split} {human_bytes(n)}" for split, n in per_split.items())
    lines = [ignored_summary(tree.ignored) if tree is not None else None,
             free_caption(out, sum(needed.values()), ways, detail=f" ({writes})" if writes else "")]
    table = PlainTable(title=title, caption="\n".join(x for x in lines if x))
    table.add_column(first, no_wrap=False, overflow="fold")  # a long name folds (never cut), the numbers stay whole
    for col in ("videos", "up to date", "to do"):
        table.add_column(col, justify="right", no_wrap=True, min_width=len(col))
    table.add_column("rejected on sight", overflow="fold")
    return table


def _dim(config) -> int:
    """The backbone's output width, without building it."""
    from backbones import default_registry
    from backbones.timm_models import feature_dim

    dim = default_registry().spec(config.backbone).feature_dim
    if dim is None and config.backbone.startswith("timm/"):  # learnt without building it
        dim = feature_dim(config.backbone[len("timm/"):])
    return dim or 0


def tensorize_plan(tree: RawTree, out: Path, config) -> PlainTable:
    """One row per split/category/subcategory, as ``vcp tensorize`` would decide it."""
    from vcp.stages.tensorize import bytes_to_write

    config.check(tree)
    needed = bytes_to_write(tree, Path(out), config)  # the groups that are not up to date, and their size
    from vcp.stages.tensorize import ways_for

    table = _table(f"vcp tensorize --dry-run: {_input_name(tree)} -> {out} (nothing written)", "group", tree, out, needed,
                   ways_for(needed, config))
    for group in tree.groups:
        rejected = rejected_lines(group.files)
        n, key = len(group.files), group.rel_dir.as_posix()
        current = key not in needed
        table.add_row(key, str(n), str(n) if current else "0", "0" if current else str(n - len(rejected)),
                      "; ".join(rejected) or "-")
    return table


def extract_plan(processed: Path, features: Path, config) -> PlainTable:
    """One row per split, as ``vcp extract`` would decide it; the groups the run would
    reject (an unreadable ``.pt``) are named."""
    from vcp.stages.extract import PtSource

    return _source_plan(PtSource(processed, config), f"vcp extract --dry-run: {processed} -> {features} (nothing written)",
                        Path(features), config)


def _input_name(tree: RawTree) -> str:
    return str(tree.manifest) if tree.manifest is not None else str(tree.root)


def stream_plan(tree: RawTree, features: Path, config, clip, max_pixels: int) -> PlainTable:
    """One row per split for ``vcp extract --from-videos``."""
    from vcp.stages.settings import DecodeSettings, decode_mode
    from vcp.stages.stream import video_source

    source = video_source(None, config, clip, DecodeSettings(max_pixels=max_pixels, mode=decode_mode(config.device)), tree=tree)
    return _source_plan(source, f"vcp extract --from-videos --dry-run: {_input_name(tree)} -> {features} (nothing written)",
                        Path(features), config)


def _source_plan(source, title: str, features: Path, config) -> PlainTable:
    """The rows of an extract source's splits: videos, up to date or to do, rejected."""
    from vcp.stages.sources import bytes_to_write

    needed = bytes_to_write(source, features, config, _dim(config))
    table = _table(title, "split", source.tree, features, needed)
    for split in source.splits:
        n, todo, rejected = source.plan_row(split)
        current = split not in needed
        table.add_row(split, str(n), str(n) if current else "0", "0" if current else str(todo), "; ".join(rejected) or "-")
    return table
