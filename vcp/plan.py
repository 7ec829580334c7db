"""``--dry-run``: what a stage would do, computed exactly as the stage decides it, writing nothing.

Per group (tensorize, ``--from-videos``) or split (extract): the videos found, whether the
outputs are up to date with the inputs and settings (skipped) or would be made, and the
files that will be rejected on sight — empty, not a regular file, a broken link, a name
that is not UTF-8 (a file that passes may still fail when it is probed); under the table,
what discovery did not take (hidden, non-video, outside the layout), as the real run says it.
"""

from __future__ import annotations

import stat
from pathlib import Path

from .contract import PT_NAME
from .layout import RawTree, discover_raw, ignored_summary, utf8_name
from .progress import PlainTable
from .report import one_line


def rejected_on_sight(path: Path) -> str | None:
    """Why ``path`` will be rejected without decoding it, or None. (The real run probes
    every file discovery takes, whatever its extension: so does this.)"""
    try:
        st = path.stat()
    except OSError:
        return "broken symbolic link" if path.is_symlink() else "cannot be read"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    if not utf8_name(path):
        return "file name is not valid UTF-8"
    return None


def _table(title: str, first: str, tree: RawTree | None = None) -> PlainTable:
    table = PlainTable(title=title, caption=ignored_summary(tree.ignored) if tree is not None else None)
    for col in (first, "videos", "up to date", "to do", "rejected on sight"):
        table.add_column(col, justify="left" if col in (first, "rejected on sight") else "right")
    return table


def _rejections(files) -> list[str]:
    return [one_line(f"{p.name}: {why}") for p in files if (why := rejected_on_sight(p))]


def tensorize_plan(tree: RawTree, out: Path, config) -> PlainTable:
    """One row per split/category/subcategory, as ``vcp tensorize`` would decide it."""
    from .tensorize import fingerprint, group_target

    config.check(tree)
    table = _table(f"vcp tensorize --dry-run: {tree.root} -> {out} (nothing written)", "group", tree)
    mapping = tree.category_mapping
    for group in tree.groups:
        fp = fingerprint(group, config.clip.sampling(group), config, mapping)
        current = group_target(Path(out) / group.rel_dir, fp, config, repair=False)[1]
        rejected = _rejections(group.files)
        n = len(group.files)
        table.add_row(group.rel_dir.as_posix(), str(n), str(n) if current else "0", "0" if current else str(n - len(rejected)),
                      "; ".join(rejected) or "-")
    return table


def extract_plan(processed: Path, features: Path, config) -> PlainTable:
    """One row per split, as ``vcp extract`` would decide it."""
    from .features import fingerprint, output_target
    from .pt_reader import PtSchemaError, discover_processed, open_tensor_file

    table = _table(f"vcp extract --dry-run: {processed} -> {features} (nothing written)", "split")
    for split, files in discover_processed(processed, config.splits).items():
        current = output_target(Path(features), split, config, fingerprint(files, config))[1] is not None
        videos = 0
        for pt in files:
            try:
                videos += open_tensor_file(pt).data["videos"].shape[0]
            except PtSchemaError:  # reported by the real run
                pass
        table.add_row(split, str(videos), str(videos) if current else "0", "0" if current else str(videos),
                      f"{len(files)} {PT_NAME} group(s)")
    return table


def stream_plan(raw: Path, features: Path, config, clip, max_pixels: int) -> PlainTable:
    """One row per split for ``vcp extract --from-videos``."""
    from .features import output_target
    from .stream import split_fingerprint, split_groups

    clip.check()
    tree = discover_raw(raw, splits=list(config.splits) if config.splits else None)
    clip.check(tree)
    table = _table(f"vcp extract --from-videos --dry-run: {raw} -> {features} (nothing written)", "split", tree)
    for split in tree.splits:
        groups = split_groups(tree, split)
        everything = [f for g in groups for f in g.files]
        fp = split_fingerprint(groups, config, clip, max_pixels)
        current = output_target(Path(features), split, config, fp)[1] is not None
        rejected = _rejections(everything)
        n = len(everything)
        table.add_row(split, str(n), str(n) if current else "0", "0" if current else str(n - len(rejected)), "; ".join(rejected) or "-")
    return table
