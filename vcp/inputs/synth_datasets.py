"""Small copies of real datasets' shapes, made of :mod:`vcp.inputs.synth` index videos.

Each writes the dataset's own files as it is downloaded (folder names, split files,
annotation CSV/JSON) with a few short videos, and returns the paths an importer takes.
Used by the tests and ``make demo``: the manifest importers are exercised on the formats
they will meet, and every frame still says which source frame it is.
"""

from __future__ import annotations

import json
from pathlib import Path

from vcp.inputs.synth import write_video

UCF_CLASSES = ("ApplyEyeMakeup", "Basketball", "YoYo")  # classInd.txt order: 1-based, as UCF101's


def make_ucf101(root: str | Path, *, frames: int = 12) -> tuple[Path, Path]:
    """``root/UCF-101/<Class>/v_<Class>_gNN_c01.avi`` and ``root/ucfTrainTestlist`` (fold 1):
    groups 08-09 train, group 01 test, as UCF101 splits by group. Returns (videos, splits)."""
    root = Path(root)
    videos, splits = root / "UCF-101", root / "ucfTrainTestlist"
    splits.mkdir(parents=True, exist_ok=True)
    (splits / "classInd.txt").write_text("".join(f"{i} {c}\r\n" for i, c in enumerate(UCF_CLASSES, start=1)))
    train, test = [], []
    for i, name in enumerate(UCF_CLASSES, start=1):
        for group in ("08", "09", "01"):
            rel = f"{name}/v_{name}_g{group}_c01.avi"
            write_video(videos / rel, num_frames=frames + i, codec="mjpeg", width=64, height=48)
            (train.append(f"{rel} {i}") if group != "01" else test.append(rel))
    (splits / "trainlist01.txt").write_text("\r\n".join(train) + "\r\n")
    (splits / "testlist01.txt").write_text("\r\n".join(test) + "\r\n")
    return videos, splits


KINETICS_ROWS = (  # label, youtube_id, time_start, time_end, split, how it is stored
    ("passing American football (in game)", "_abc123XYZ0", 1, 3, "train", "whole"),
    ("passing American football (in game)", "-dash_id_01", 2, 4, "train", "trimmed"),
    ("yoga", "Zz9_yy8-xx7", 0, 2, "train", "whole"),
    ("yoga", "deadlink000", 0, 10, "train", "missing"),
    ("yoga", "val_clip_01", 3, 5, "val", "whole"),
)


def make_kinetics(root: str | Path, *, fps: int = 10, seconds: int = 6) -> tuple[Path, Path]:
    """``root/kinetics.csv`` (label,youtube_id,time_start,time_end,split) and ``root/videos``:
    whole YouTube videos ``<id>.mp4`` (``seconds`` long: the importer gives them the CSV's
    segment), one clip already trimmed as ``<split>/<label>/<id>_<start>_<end>.mp4``, one row
    whose video is missing (a dead link). Returns (csv, videos)."""
    root = Path(root)
    videos = root / "videos"
    lines = ["label,youtube_id,time_start,time_end,split"]
    for label, vid, start, end, split, stored in KINETICS_ROWS:
        lines.append(f'"{label}",{vid},{start},{end},{split}')
        if stored == "whole":
            write_video(videos / f"{vid}.mp4", num_frames=fps * seconds, fps=fps, width=64, height=48)
        elif stored == "trimmed":
            write_video(videos / split / label / f"{vid}_{start:06d}_{end:06d}.mp4", num_frames=fps * (end - start),
                        fps=fps, width=64, height=48)
    csv_path = root / "kinetics.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    return csv_path, videos


SSV2_LABELS = {  # labels.json: its own order, not sorted
    "Putting something on a surface": "0",
    "Holding something next to something": "1",
    "Pretending to pick something up": "2",
}


def make_ssv2(root: str | Path, *, frames: int = 12, prefix: str = "something-something-v2-") -> tuple[Path, Path]:
    """``root/labels/something-something-v2-{labels,train,validation,test}.json`` (the names
    the release ships; ``prefix=""`` for the short ones) and ``root/videos/<id>.webm``; the
    test split lists ids only (unlabeled). Returns (labels folder, videos folder)."""
    root = Path(root)
    labels, videos = root / "labels", root / "videos"
    labels.mkdir(parents=True, exist_ok=True)
    (labels / f"{prefix}labels.json").write_text(json.dumps(SSV2_LABELS, indent=1))
    templates = {
        "Putting something on a surface": "Putting [something] on a surface",
        "Holding something next to something": "Holding [something] next to [something]",
        "Pretending to pick something up": "Pretending to pick [something] up",
    }
    plan = {"train": [("101", 0), ("102", 1), ("103", 2), ("104", 1)], "validation": [("201", 2), ("202", 0)]}
    for split, items in plan.items():
        entries = []
        for vid, k in items:
            name = list(SSV2_LABELS)[k]
            entries.append({"id": vid, "label": name.lower(), "template": templates[name], "placeholders": ["a pen"]})
            write_video(videos / f"{vid}.webm", num_frames=frames + k, codec="vp9", width=64, height=48)
        (labels / f"{prefix}{split}.json").write_text(json.dumps(entries))
    write_video(videos / "301.webm", num_frames=frames, codec="vp9", width=64, height=48)
    (labels / f"{prefix}test.json").write_text(json.dumps([{"id": "301"}]))
    return labels, videos
