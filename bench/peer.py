"""``make bench`` rows against the script a user writes instead of vcp (``--only peer``).

The script (:data:`PLAIN`) is what an ML engineer writes for per-frame features: PyAV
decodes each video, ``np.linspace`` picks T frames, timm's own eval transform
(``create_transform(**resolve_model_data_config(model))``) prepares them, one forward per
video, the rows saved. ``vcp extract --from-videos`` does the same work on the same clips
with the same weights (a state_dict file both load) and T. Both run as whole processes,
alternating, best of 3; peak RSS is each process's own. The features are compared on the
same frames.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

PLAIN = textwrap.dedent("""
    import sys

    import av
    import numpy as np
    import timm
    import torch
    from timm.data import create_transform, resolve_model_data_config

    name, weights, out, frames, *videos = sys.argv[1:]
    model = timm.create_model(name, pretrained=False, num_classes=0)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    transform = create_transform(**resolve_model_data_config(model), is_training=False)
    rows = []
    for path in videos:
        with av.open(path) as container:
            images = [frame.to_image() for frame in container.decode(video=0)]
        picked = np.linspace(0, len(images) - 1, int(frames)).astype(int)
        batch = torch.stack([transform(images[i]) for i in picked])
        with torch.inference_mode():
            rows.append(model(batch).numpy())
    np.save(out, np.stack(rows))
""")

T = 16
CLIPS = 12


def _peak_and_time(cmd: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of ``cmd`` as a whole process (GNU time's %M)."""
    start = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed: {out.stderr[-400:]}")
    return seconds, int(out.stderr.strip().splitlines()[-1]) * 1024


def make_clips(root: Path) -> list[Path]:
    """12 H.264 clips, 640x360 (not square: the recipe's resize and crop matter), 48 frames at 25 fps."""
    from vcp.inputs.synth import write_video

    paths = [root / "train/cat" / f"c{i:02d}.mp4" for i in range(CLIPS)]
    for p in paths:
        write_video(p, num_frames=48, codec="h264", width=640, height=360, fps=25)
    return paths


def peer_rows(work: Path, rows: list, models=("vit_small_patch16_224", "resnet50"), runs: int = 3) -> None:
    import h5py
    import timm
    import torch

    paths = make_clips(work / "peer_raw")
    script = work / "plain.py"
    script.write_text(PLAIN)
    goals = {"vit_small_patch16_224": "≥ 1.05×", "resnet50": "≥ 1.3×"}
    for name in models:
        weights = work / f"{name}.pth"
        torch.manual_seed(0)
        torch.save(timm.create_model(name, pretrained=False, num_classes=0).state_dict(), weights)
        plain = [sys.executable, str(script), name, str(weights), str(work / f"{name}.npy"), str(T), *map(str, paths)]
        vcp = [sys.executable, "-m", "vcp", "extract", "--from-videos", str(work / "peer_raw"), str(work / f"{name}_f"),
               "--backbone", f"timm/{name}", "--weights", str(weights), "--device", "cpu", "-T", str(T),
               "--no-multi-scale", "--overwrite"]
        times: dict[str, list] = {"plain": [], "vcp": []}
        for _ in range(runs):  # alternating: drift on a shared machine hits both alike
            times["plain"].append(_peak_and_time(plain))
            times["vcp"].append(_peak_and_time(vcp))
        tp, tv = (min(t for t, _ in times[k]) for k in ("plain", "vcp"))
        rp, rv = (min(r for _, r in times[k]) for k in ("plain", "vcp"))
        theirs = np.load(work / f"{name}.npy")
        with h5py.File(work / f"{name}_f/train_features.h5") as h5:
            ours = h5["features"][:]
        rel = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
        rows.append((
            f"`vcp extract --from-videos` vs a plain PyAV + timm script, timm/{name}, {CLIPS} H.264 clips 640x360, T={T}, "
            "CPU fp32, whole processes",
            f"the script: {tp:.1f} s, peak RSS {rp >> 20} MiB", f"{tv:.1f} s, peak RSS {rv >> 20} MiB",
            f"{tp / tv:.2f}×", goals.get(name, "-"), f"max rel diff {rel:.1e}; RSS {rv / rp:.2f}× (goal ≤ 1.25×)",
        ))
        print(rows[-1], flush=True)


def startup_rows(work: Path, rows: list, runs: int = 3) -> None:
    """Start-up: the script and ``vcp extract --from-videos`` on one clip, one frame (the whole
    process is its start-up and exit); and how long ``vcp extract --help`` and ``vcp backbones`` take."""
    import timm
    import torch

    clip = make_clips(work / "startup_raw")[0]
    one = work / "startup_one" / "train/cat" / clip.name
    one.parent.mkdir(parents=True, exist_ok=True)
    one.write_bytes(clip.read_bytes())
    script = work / "plain.py"
    script.write_text(PLAIN)
    name = "vit_small_patch16_224"
    weights = work / f"{name}.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model(name, pretrained=False, num_classes=0).state_dict(), weights)
    plain = [sys.executable, str(script), name, str(weights), str(work / "one.npy"), "1", str(one)]
    vcp = [sys.executable, "-m", "vcp", "extract", "--from-videos", str(work / "startup_one"), str(work / "one_f"),
           "--backbone", f"timm/{name}", "--weights", str(weights), "--device", "cpu", "-T", "1", "--no-multi-scale",
           "--overwrite"]
    times: dict[str, list[float]] = {"plain": [], "vcp": [], "help": [], "backbones": []}
    for _ in range(runs):
        times["plain"].append(_peak_and_time(plain)[0])
        times["vcp"].append(_peak_and_time(vcp)[0])
        times["help"].append(_peak_and_time([sys.executable, "-m", "vcp", "extract", "--help"])[0])
        times["backbones"].append(_peak_and_time([sys.executable, "-m", "vcp", "backbones"])[0])
    tp, tv = min(times["plain"]), min(times["vcp"])
    rows.append((
        f"start-up: one clip, one frame, timm/{name}, whole processes (the script vs `vcp extract --from-videos`)",
        f"the script: {tp:.2f} s", f"{tv:.2f} s", f"{tv - tp:+.2f} s", "≤ +0.5 s",
        f"`vcp extract --help` {min(times['help']):.2f} s, `vcp backbones` {min(times['backbones']):.2f} s",
    ))
    print(rows[-1], flush=True)
