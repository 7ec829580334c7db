"""``vcp inspect PATH [--preview FILE.png]``: what the stages wrote, as tables and a picture.

PATH is a processed tree (``<split>/<category>/<subcategory>/processed_data.pt``), a
features folder (``*.h5``), or one ``.pt`` / ``.h5`` file. ``--preview`` draws a contact
sheet of the sampled frames (denormalized, one row per video, each tile labelled with its
frame index and time) so sampling, colour and orientation can be checked at a glance.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch
from rich.console import Console

from vcp.common.progress import PlainTable, plain
from vcp.common.progress import console as progress_console
from vcp.store.contract import PT_NAME, UNLABELED, group_files


def find_outputs(path: Path) -> tuple[list[Path], list[Path]]:
    """``(.pt files, .h5 files)`` at or under ``path``."""
    if not path.is_dir():  # one file (opened, and checked to be a regular file, later)
        return ([path], []) if path.suffix == ".pt" else ([], [path])
    return group_files(path), sorted(path.glob("*.h5"))


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def processed_table(pts: list[Path], problems: list | None = None) -> PlainTable:
    from vcp.store.pt_reader import PtSchemaError, open_tensor_file

    table = PlainTable(title="processed groups")
    for col in ("group", "videos", "T", "size", "strategy", "storage", "decoders", "failed"):
        table.add_column(col, justify="right" if col in ("videos", "T", "size") else "left")
    for pt in pts:
        group = "/".join(pt.parent.parts[-3:])
        try:
            tf = open_tensor_file(pt)
        except PtSchemaError as exc:
            table.add_row(group, "-", "-", "-", "-", "-", "-", _short(f"unreadable: {exc.reason}"))
            if problems is not None:
                problems.append((pt, exc.reason))
            continue
        n, t, _, h, w = tf.data["videos"].shape
        meta = tf.meta or {}
        decoders = Counter(v.get("decoder", "?") for v in meta.get("videos", []))
        failed = meta.get("failed", [])
        table.add_row(
            group, str(n), str(t), f"{h}x{w}", meta.get("sampling_strategy", "?"), tf.data.get("storage", str(tf.data["videos"].dtype)),
            ", ".join(f"{k} {v}" for k, v in sorted(decoders.items())) or "-",
            _short("; ".join(f"{f['file']}: {f['reason']}" for f in failed)) if failed else "0",
        )
    return table


def features_table(h5s: list[Path], problems: list | None = None) -> PlainTable:
    """One row per features file; an unreadable one is a row saying why (and is added to
    ``problems`` as ``(path, reason)``)."""
    from vcp.store.readers import InputFileError, failed_files_attr, open_features

    table = PlainTable(title="features")
    for col in ("file", "shape", "classes", "backbone", "weights", "scales", "precision", "failed"):
        table.add_column(col)
    for path in h5s:
        try:
            with open_features(path) as h5:
                attrs = h5.attrs
                failed = failed_files_attr(h5)
                table.add_row(
                    path.name, str(tuple(h5["features"].shape)), _classes_cell(h5), str(attrs.get("backbone", "?")), _short(str(attrs.get("weights", "?")), 40),
                    str(attrs.get("scales", "?")), str(attrs.get("precision", "?")),
                    _short("; ".join(f"{p}: {r}" for p, r in failed)) if failed else "0",
                )
        except InputFileError as exc:
            table.add_row(path.name, "-", "-", "-", "-", "-", "-", _short(f"unreadable: {exc.reason}"))
            if problems is not None:
                problems.append((path, exc.reason))
    return table


def _classes_cell(h5) -> str:
    """``101`` (the class list's length: labels 0..100), ``+ 12 unlabeled`` when some are."""
    import json

    from vcp.store.contract import class_list

    try:
        classes = json.loads(h5.attrs["classes"]) if "classes" in h5.attrs else None
    except ValueError:
        classes = None
    if not isinstance(classes, list):
        classes = class_list(json.loads(h5.attrs["category_mapping"]))
    unlabeled = int((h5["labels"][:] == UNLABELED).sum())
    return f"{len(classes)}" + (f" + {unlabeled} (unlabeled)" if unlabeled else "")


def contact_sheet(pts: list[Path], out: Path, *, videos: int = 8, tile: int = 96, max_tiles: int = 32) -> int:
    """Write a PNG: one row per video (at most ``videos``), up to ``max_tiles`` of its
    sampled frames (evenly chosen when T is larger), each labelled ``#index time``; the
    row's header names the video and its label. Returns the number of rows drawn."""
    rows = _preview_rows(pts, videos=videos, tile=tile, max_tiles=max_tiles)
    if not rows:
        from vcp.common.errors import LayoutError

        raise LayoutError(f"no clips to preview in {', '.join(map(str, pts)) or 'the given path'}")
    _draw_sheet(rows, out, tile=tile)
    return len(rows)


def _preview_rows(pts: list[Path], *, videos: int, tile: int, max_tiles: int) -> list[tuple]:
    """``(title, tiles uint8 [k, 3, tile, tile], tile labels)`` for the first ``videos`` videos."""
    import torch.nn.functional as F

    from vcp.store.pt_reader import PtSchemaError, open_tensor_file

    rows = []
    for pt in pts:
        try:
            tf = open_tensor_file(pt)
        except PtSchemaError:  # shown as unreadable in the table; the other groups are drawn
            continue
        mapping = {v: k for k, v in tf.data["category_mapping"].items()}
        for i in range(tf.data["videos"].shape[0]):
            if len(rows) == videos:
                break
            clip = tf.data["videos"][i].float()
            t = clip.shape[0]
            pick = sorted({round(j * (t - 1) / (max_tiles - 1)) for j in range(max_tiles)}) if t > max_tiles else list(range(t))
            mean = torch.tensor(tf.normalization.mean).view(1, 3, 1, 1)
            std = torch.tensor(tf.normalization.std).view(1, 3, 1, 1)
            pixels = (clip[pick] * std + mean).clamp(0, 1)
            pixels = F.interpolate(pixels, size=(tile, tile), mode="bilinear", antialias=True, align_corners=False)
            name = tf.data["filenames"][i]
            record = tf.records.get(name, {})
            indices, times = record.get("frame_indices"), record.get("frame_times")
            labels = [
                f"#{indices[j]}" + (f" {times[j]:.2f}s" if times else "") if indices else f"{j}" for j in pick
            ]
            label = int(tf.data["labels"][i])
            split = tf.path.parents[2].name
            shown = "(unlabeled)" if label == UNLABELED else f"{label} ({mapping.get(label, '?')})"
            title = f"{split}: {tf.rel}/{name}  label {shown}"
            rows.append((title, (pixels * 255).round().to(torch.uint8), labels))
        if len(rows) == videos:
            break
    return rows


def _draw_sheet(rows: list[tuple], out: Path, *, tile: int) -> None:
    from PIL import Image, ImageDraw
    from torchvision.utils import make_grid

    per_row = max(len(r[1]) for r in rows)
    header, pad = 18, 2
    sheets = []
    for title, tiles, labels in rows:
        grid = make_grid(tiles, nrow=per_row, padding=pad, pad_value=255)
        image = Image.new("RGB", (grid.shape[2], grid.shape[1] + header), "white")
        image.paste(Image.fromarray(grid.permute(1, 2, 0).numpy()), (0, header))
        draw = ImageDraw.Draw(image)
        draw.text((4, 3), title, fill="black")
        for k, text in enumerate(labels):
            x, y = pad + k * (tile + pad), header + pad + tile - 12
            draw.rectangle((x, y, x + min(tile, 6 * len(text) + 4), y + 11), fill="black")
            draw.text((x + 2, y), text, fill="white")
        sheets.append(image)
    width = max(s.width for s in sheets)
    sheet = Image.new("RGB", (width, sum(s.height for s in sheets)), "white")
    y = 0
    for s in sheets:
        sheet.paste(s, (0, y))
        y += s.height
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)


def made_how(path: Path) -> str | None:
    """"How these features were made": what someone else needs to make the same ones
    (the sampling is in each row's frame_indices/frame_times)."""
    import json

    from vcp.store.readers import InputFileError, open_features

    try:
        with open_features(path) as h5:
            a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items()}
    except InputFileError:
        return None
    if "recipe" not in a:
        return None
    lines = [f"how these features were made ({path.name}):",
             f"  backbone {a.get('backbone')}, weights {a.get('weights')}, precision {a.get('precision')}, "
             f"scales {a.get('scales')}"]
    mean, std = json.loads(a.get("mean", "null")), json.loads(a.get("std", "null"))
    if a["recipe"] == "model":
        (h, w), (rh, rw) = json.loads(a["input_size"]), json.loads(a["resize_size"])
        how = {"center": f"shorter edge to {rh}, centre crop {w}x{h}", "squash": f"resize to {rw}x{rh}, centre crop {w}x{h}",
               "border": f"longer edge to {max(rh, rw)}, centre crop (padded with the mean) {w}x{h}"}[a["resize_mode"]]
        smooth = "not antialiased (as the release's preset)" if a.get("antialias") is False or a.get("antialias") == 0 else "antialiased"
        lines.append(f"  input: the model's recipe: {how} (crop_pct {a['crop_pct']}), {a['interpolation']} {smooth},")
    else:
        lines.append("  input: the frames as stored (their size; no resize or crop),")
    lines.append(f"  then (x - mean) / std with mean {mean}, std {std} on 0..1 RGB")
    if a.get("kind") == "clip":
        rate = float(a["frame_rate"])
        lines.append(f"  windows of {a['window']} frames every {a['stride']}, the video resampled to "
                     f"{f'{rate:g} fps' if rate else 'its own rate'} (rows are windows: each row's window_frames / window_times)")
    if "manifest" in a or "raw_root" in a:
        which = "window_frames / window_times" if a.get("kind") == "clip" else "frame_indices / frame_times"
        lines.append(f"  videos: {a.get('manifest') or a.get('raw_root')} (each row's paths / {which})")
    return "\n".join(lines)


def inspect(path: Path, *, preview: Path | None = None, videos: int = 8, console: Console | None = None) -> list[tuple[Path, str]]:
    """Print the tables (and write the preview); returns ``(file, reason)`` for every file
    that could not be read (each also a row of its table). The only file given being
    unreadable is a :class:`LayoutError` (a usage error)."""
    from vcp.common.errors import LayoutError

    console = console or progress_console()
    if not path.exists() and not path.is_symlink():
        raise LayoutError(f"{path}: no such file or folder")
    pts, h5s = find_outputs(path)
    if not pts and not h5s:
        raise LayoutError(f"{path}: no {PT_NAME} (as <split>/<category>/<subcategory>/{PT_NAME}) or *.h5 here")
    problems: list[tuple[Path, str]] = []
    if pts:
        console.print(processed_table(pts, problems))
    if h5s:
        console.print(features_table(h5s, problems))
        for block in dict.fromkeys(made_how(p) for p in h5s if not any(p == q for q, _ in problems)):
            if block:
                console.print(plain(block), soft_wrap=True)
    if problems and not path.is_dir():
        raise LayoutError(f"{problems[0][0]}: {problems[0][1]}")
    if preview is not None:
        if not pts:
            raise LayoutError(f"--preview needs {PT_NAME} files (features have no pixels): point it at a processed tree")
        drawn = contact_sheet(pts, preview, videos=videos)
        console.print(plain(f"preview of {drawn} video(s): {preview}"), soft_wrap=True)
    return problems



