"""Stage 1, ``vcp tensorize RAW OUT``: videos -> ``processed_data.pt`` per subcategory.

For each split/category/subcategory: skip when its outputs are up to date with its
inputs and settings, else probe + sample + decode + resize + normalize through
:class:`dali_pipes.ClipLoader` and stream the clips into a :class:`PtWriter`.
Bad files are reported (stderr and ``metadata.json``) and skipped; the rest is written.
"""

from __future__ import annotations

import functools
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console

from dali_pipes import DECODE_RULES, ClipLoader, SamplingSpec
from vcp.common.errors import UsageError
from vcp.common.progress import console as progress_console
from vcp.common.progress import human_bytes, make_progress
from vcp.common.report import file_error, one_line
from vcp.inputs.layout import Group, RawTree, discover_raw
from vcp.stages import stage
from vcp.stages.interrupt import check_stop, checkpoint_seconds, stop_requested
from vcp.stages.metadata import group_metadata, run_record, video_record
from vcp.stages.settings import TensorizeConfig
from vcp.stages.space import (
    PT_OVERHEAD,
    check_space,
    removed_if_refused,
    tensorize_bytes,
    tensorize_ways,
)
from vcp.stages.stage import RunResult, SplitResult
from vcp.stages.stale import remove_stale_groups
from vcp.store.atomic import remove_stale_tmp
from vcp.store.contract import META_NAME, PARTS_DIR, PT_NAME, storage_dtype, tensor_part_names
from vcp.store.folders import file_stamp, link_under, prepare_output_dir
from vcp.store.lock import output_lock
from vcp.store.pair import settle_pair
from vcp.store.pt_writer import PtWriter
from vcp.store.readers import read_json

FORMAT_VERSION = 1


@functools.lru_cache(maxsize=64)
def _spec_fields(spec: SamplingSpec) -> dict:
    """``asdict(spec)``, once per distinct spec (a tree of 12,000 groups has a few)."""
    return asdict(spec)


def fingerprint(group: Group, spec: SamplingSpec, config: TensorizeConfig, classes_id: str) -> str:
    """Hash of everything that determines a group's output: inputs and settings, the class
    list (``classes_id``: :attr:`RawTree.classes_id`), and for a manifest's group its rows
    (paths, class and segments)."""
    rows = {"rows": group.rows} if group.rows is not None else {}
    return stage.fingerprint({
        "format": FORMAT_VERSION,
        "decode": DECODE_RULES,
        "max_pixels": config.decode.max_pixels,
        "files": [[path.name, *file_stamp(path)] for path in group.files],
        "sampling": _spec_fields(spec),
        "size": config.clip.size,
        **({"fit": [config.clip.fit, config.clip.interpolation]} if config.clip.geometry is not None else {}),
        "storage": config.write.storage,
        "mean": config.stored_normalization.mean,
        "std": config.stored_normalization.std,
        "classes": classes_id,
        **rows,
    })


@dataclass(frozen=True)
class Slot:
    """Where a group's pair is written: the contract's files, or a shard's part files."""

    directory: Path
    name: str = PT_NAME
    meta_name: str = META_NAME


def up_to_date(slot: Slot, fp: str, *, repair: bool = True) -> bool:
    """True when the pair in ``slot`` is whole (same ``pair_id``) and made from ``fp``
    (``repair``: finishing a killed commit on the way)."""
    meta = settle_pair(slot.directory, slot.name, slot.meta_name, repair=repair)
    return meta is not None and meta.get("fingerprint") == fp


def group_target(out_dir: Path, fp: str, config: TensorizeConfig, *, repair: bool = True) -> tuple[Slot, bool]:
    """Where this process writes a group, and whether the pair there is up to date.

    A sharded rank still points at the final files when they are already up to date
    (merged earlier), so the group is skipped instead of redone as a part.
    """
    shard = config.write.shard
    part = Slot(out_dir / PARTS_DIR, *tensor_part_names(shard.tag)) if shard.active else None
    slot, found = stage.pick_target(
        Slot(out_dir), part, lambda s: True if up_to_date(s, fp, repair=repair) else None, overwrite=config.write.overwrite,
    )
    return slot, found is not None


def tensorize(
    raw: str | Path,
    out: str | Path,
    config: TensorizeConfig,
    *,
    console: Console | None = None,
    tree: RawTree | None = None,
) -> RunResult:
    """Run the stage; returns per-split results (``.failures``: every file it could not use)."""
    console = console or progress_console(stderr=True)
    config.check()
    tree = tree or discover_raw(raw)
    config.clip.check(tree)
    # a RAW tree's outputs inside it would be read back as inputs; a manifest lists its own
    existed = Path(out).exists()
    out = prepare_output_dir(out, inputs=tree.root if tree.manifest is None else None, what="OUT")
    linked = next((link for g in tree.groups if (link := link_under(out, g.rel_dir)) is not None), None)
    if linked is not None:
        raise UsageError(f"OUT folder {linked} is a symbolic link: vcp writes only inside OUT (remove the link, or "
                         "write elsewhere)")
    needed = bytes_to_write(tree, out, config)
    with removed_if_refused(out, existed):
        check_space(out, sum(needed.values()), skip=not config.write.space_check, ways=ways_for(needed, config))
    # the loader (and its probe processes) before the lock and any output is opened
    with config.decode.loader(config.clip.size, config.stored_normalization, config.clip.geometry) as loader, output_lock(out, config.write.shard):
        if config.write.shard.index == 0:  # one process reconciles; other ranks only add parts
            remove_stale_groups(out, tree, console)
        results = _Run(tree, out, config, console, loader).all_splits()
    console.print(stage.summary_table("vcp tensorize", results, COLUMNS, tree=tree))
    return results


def ways_for(needed: dict[str, int], config: TensorizeConfig) -> list[tuple[str, int]]:
    """The smaller ways to this run's videos (``needed``: :func:`bytes_to_write`), with their
    sizes (:func:`vcp.stages.space.tensorize_ways`)."""
    from vcp.stages.multiscale import DEFAULT_SCALES

    clip = tensorize_bytes(1, config.clip.frames, config.clip.size, config.write.storage)
    clips = sum(n - PT_OVERHEAD for n in needed.values()) // max(1, clip)
    return tensorize_ways(clips, len(needed), config.clip.frames, config.clip.size, config.write.storage, DEFAULT_SCALES)


def bytes_to_write(tree: RawTree, out: Path, config: TensorizeConfig) -> dict[str, int]:
    """Estimated bytes per group (``split/category/sub``) this process will write: its videos
    of every group that is not up to date (:mod:`vcp.stages.space`)."""
    mine = stage.owned_files([p for g in tree.groups for p in g.files], config.write.shard)
    out_bytes = {}
    for group in tree.groups:
        fp = fingerprint(group, config.clip.sampling(group), config, tree.classes_id)
        if not group_target(Path(out) / group.rel_dir, fp, config, repair=False)[1]:
            videos = sum(p in mine for p in group.files)
            out_bytes[group.rel_dir.as_posix()] = tensorize_bytes(videos, config.clip.frames, config.clip.size, config.write.storage) + PT_OVERHEAD
    return out_bytes


COLUMNS: list[stage.Column] = [
    ("split", lambda r: r.split, "left"),
    ("videos", lambda r: str(r.videos), "right"),
    ("written", lambda r: str(r.written), "right"),
    ("failed", lambda r: str(len(r.failures)), "right"),
    ("up-to-date groups", lambda r: str(r.skipped), "right"),
    ("seconds", lambda r: f"{r.seconds:.1f}", "right"),
    ("output", lambda r: human_bytes(r.output_bytes), "right"),
]


class _Run:
    """One tensorize run over a tree: split -> group -> batches of clips -> one pair per group."""

    def __init__(self, tree: RawTree, out: Path, config: TensorizeConfig, console: Console, loader: ClipLoader):
        self.tree, self.out, self.config, self.console = tree, out, config, console
        self.mapping = tree.category_mapping
        self.loader = loader
        self.mine = stage.owned_files([p for g in tree.groups for p in g.files], config.write.shard)

    def owned(self, group: Group) -> list[Path]:
        return [p for p in group.files if p in self.mine]

    def all_splits(self) -> RunResult:
        return RunResult(self.split(split) for split in self.tree.splits)

    def split(self, split: str) -> SplitResult:
        result = SplitResult(split)
        groups = self.tree.groups_of(split)
        result.videos = sum(len(self.owned(g)) for g in groups)
        started = time.perf_counter()
        with make_progress(self.console, "videos") as progress:
            task = progress.add_task(f"tensorize {split}{stage.shard_label(self.config.write.shard)}", total=result.videos)
            for group in groups:
                self.group(group, result, on_video=lambda n=1, task=task: progress.advance(task, n))
        result.seconds = time.perf_counter() - started
        return result

    def group(self, group: Group, result: SplitResult, *, on_video) -> None:
        files = self.owned(group)
        spec = self.config.clip.sampling(group)
        fp = fingerprint(group, spec, self.config, self.tree.classes_id)
        slot, current = group_target(self.out / group.rel_dir, fp, self.config)  # finishes a killed commit
        remove_stale_tmp(slot.directory, [slot.name, slot.meta_name])
        if current:
            result.skipped += 1
            on_video(len(files))
            result.failures += _previous_failures(slot.directory / slot.meta_name, group)
        else:
            failed = self.write(group, files, spec, fp, slot, on_video=on_video)
            result.failures += failed
            result.written += len(files) - len(failed)
        result.output_bytes += (slot.directory / slot.name).stat().st_size

    def write(self, group: Group, files: list[Path], spec: SamplingSpec, fp: str, slot: Slot, *, on_video) -> list:
        config, loader = self.config, self.loader
        label = self.tree.label_of(group)
        mine = set(files)
        items = [self.tree.item(v) for v in group.videos if v.file in mine]
        paths = {v.file.name: self.tree.name_of(v) for v in group.videos}  # file names are unique in a group
        failed, records = [], []
        started = time.perf_counter()
        stats_before = (dict(loader.stats.batch_sizes), len(loader.stats.fallbacks))
        with PtWriter(
            slot.directory, frames=config.clip.frames, size=config.clip.size, category_mapping=self.mapping,
            dtype=storage_dtype(config.write.storage), name=slot.name, meta_name=slot.meta_name,
            normalization=(config.stored_normalization.mean, config.stored_normalization.std),
            expected=[(Path(p).name, label) for p in files],  # laid out up front: no copy when all decode
            resume=fp, state_problem=functools.partial(_state_problem, videos=len(files)),
        ) as writer:
            done = 0  # items handled (written or failed), in order
            if writer.resumed is not None:  # a stopped run's checkpoint of this very group
                records, done = list(writer.resumed["records"]), int(writer.resumed["done"])
                failed = [tuple(f) for f in writer.resumed["failed"]]
                on_video(done)
                print(one_line(f"vcp: resuming {group.rel_dir.as_posix()}{stage.shard_label(config.write.shard)}: "
                               f"{len(records)} of {len(files)} videos already written"), file=sys.stderr, flush=True)
            interval, last_save = checkpoint_seconds(), time.monotonic()
            # Each batch is written inside its ``with``: one batch being written plus the ones
            # decoded ahead is all the clip memory tensorize ever holds.
            for batch in loader.load(items[done:], spec, ahead=config.decode.prefetch_depth(default=1)):
                with batch:
                    for r in batch:
                        if r.ok:
                            writer.add(r.clip, Path(r.path).name, label)
                            records.append(video_record(r, config.decode.mode, paths[Path(r.path).name]))
                        else:
                            failed.append((r.relpath, r.error.reason))
                            file_error(r.relpath, r.error.reason)
                        on_video()
                        done += 1
                stop = stop_requested() is not None
                if stop or time.monotonic() - last_save >= interval:
                    writer.checkpoint({"records": records, "failed": failed, "done": done})
                    last_save = time.monotonic()
                if stop:
                    check_stop()
            metadata = group_metadata(group, label, spec, config, self.mapping, records, failed)
            metadata.update(run_record(loader, stats_before, started, fp, config))
            writer.commit(metadata)
        _warn_cut_short(group, items, records)
        return failed


def _state_problem(state, clips: int, *, videos: int) -> str | None:
    """Why a checkpoint's progress record does not fit its ``clips`` (None: it does): one
    record per clip written, ``done`` = written + failed, within the group's ``videos``."""
    if not (isinstance(state, dict) and isinstance(state.get("records"), list) and len(state["records"]) == clips
            and all(isinstance(r, dict) for r in state["records"])
            and type(state.get("done")) is int and clips <= state["done"] <= videos
            and isinstance(state.get("failed"), list) and len(state["failed"]) == state["done"] - clips
            and all(isinstance(f, list) and len(f) == 2 for f in state["failed"])):
        return "its progress record does not match its clips"
    return None


def _warn_cut_short(group: Group, items: list, records: list) -> None:
    relpaths = {Path(item[0]).name: item[1] for item in items}
    cut_short = [f"{relpaths[r['file']]} ({r['frames_missing']} missing)" for r in records if r["frames_missing"]]
    if cut_short:
        print(
            one_line(f"vcp: warning: {len(cut_short)} video(s) in {group.rel_dir.as_posix()} are cut short and kept "
                     f"with the frames present (frames_missing in metadata.json): {', '.join(cut_short)}"),
            file=sys.stderr, flush=True,
        )


def _previous_failures(meta_path: Path, group: Group) -> list[tuple[str, str]]:
    meta = read_json(meta_path) or {}
    return [(f"{group.rel_dir.as_posix()}/{f['file']}", f["reason"]) for f in meta.get("failed", [])]


__all__ = ["Slot", "TensorizeConfig", "fingerprint", "group_target", "remove_stale_groups", "tensorize", "up_to_date"]
