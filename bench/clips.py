"""``make bench`` rows for clip backbones and views (run by ``bench.run``; ``--only clips``).

* r2plus1d_18 ``extract --from-videos`` against the network alone on the very windows it
  was given (decoded beforehand, outside the clock): what decoding, resampling, the preset
  and the file cost on top of the network (goal ≥ 0.8);
* ``--views 10`` against ``--views 1``, same videos (goal ≤ 10.5× the time);
* peak RSS of a 10-minute video against a 10-second one through r2plus1d_18, each in its
  own process (goal ≤ 1.2×: memory follows the chunk of windows, not the video's length).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from rich.console import Console

from vcp.inputs.synth import write_video

QUIET = Console(quiet=True)


def _windows(raw: Path, config) -> tuple[torch.Tensor, object]:
    """Every window of RAW's videos as vcp gives them to the network, and the network."""
    from dali_pipes import WindowReader, plan_video, probe
    from vcp.stages.encoder import load_backbone
    from vcp.stages.recipe import geometry_of

    model = load_backbone(config)
    geometry, t = geometry_of(model.input_spec), config.temporal
    reader = WindowReader(geometry=geometry, mean=model.input_spec.mean, std=model.input_spec.std)
    chunks = [c for p in sorted(raw.rglob("*.mp4"))
              for c in reader.windows(plan_video(probe(p), geometry, window=t.window, stride=t.stride,
                                                 frame_rate=t.frame_rate), per_chunk=8)]
    return torch.cat(chunks), model


def bench_clip_backbone(work: Path, rows: list, timed, best_of_pair) -> None:
    from vcp.stages.encoder import FrameEncoder
    from vcp.stages.settings import ClipSettings, DecodeSettings, ExtractConfig
    from vcp.stages.stream import extract_from_videos

    raw = work / "clips"
    for i in range(4):  # 96 frames at 30 fps: 48 at 15 fps, 3 windows of 16 each
        write_video(raw / f"train/cat/v{i}.mp4", num_frames=96, codec="h264", width=640, height=360, fps=30)
    config = ExtractConfig(backbone="r2plus1d_18", weights=None, multi_scale=False, overwrite=True)
    windows, model = _windows(raw, config)
    batch = config.forward_batch
    encoder = FrameEncoder(model, config)  # the network as vcp runs it: conv+BN folded, channels-last

    def alone():
        for i in range(0, len(windows), batch):
            encoder.forward(encoder.prepare(windows[i:i + batch], model.input_spec)[0])

    def vcp():
        extract_from_videos(raw, work / "clip_f", config, ClipSettings(), DecodeSettings(), console=QUIET, model=model)

    vcp()  # warm-up (the first forward's one-off costs)
    base, cand = best_of_pair(alone, vcp)
    rows.append((
        f"r2plus1d_18 `extract --from-videos`, {len(windows)} windows of 16 frames (4 H.264 640x360 videos), CPU fp32",
        f"the network alone (as vcp runs it) on the same windows, batch {batch}: {base:.1f} s", f"{cand:.1f} s (decode, resample, "
        "preset, write)", f"{base / cand:.2f}", "≥ 0.8", "same network, same windows",
    ))
    one = ExtractConfig(backbone="r2plus1d_18", weights=None, multi_scale=False, overwrite=True)
    ten = ExtractConfig(backbone="r2plus1d_18", weights=None, multi_scale=False, overwrite=True, views=10)
    first = raw.parent / "clips1"
    (first / "train/cat").mkdir(parents=True, exist_ok=True)
    (first / "train/cat/v0.mp4").write_bytes((raw / "train/cat/v0.mp4").read_bytes())
    t1 = min(timed(lambda: extract_from_videos(first, work / "v1", one, ClipSettings(), DecodeSettings(), console=QUIET,
                                               model=model))[0] for _ in range(2))
    t10 = timed(lambda: extract_from_videos(first, work / "v10", ten, ClipSettings(), DecodeSettings(), console=QUIET,
                                            model=model))[0]
    rows.append((
        "r2plus1d_18 `--views 10` (TenCrop) vs `--views 1`, one video (3 windows), CPU fp32",
        f"--views 1: {t1:.1f} s", f"--views 10: {t10:.1f} s", f"{t10 / t1:.2f}×", "≤ 10.5×", "ten crops, ten forwards",
    ))


PEAK = textwrap.dedent("""
    import sys
    from rich.console import Console
    from vcp.stages.settings import ClipSettings, DecodeSettings, ExtractConfig
    from vcp.stages.stream import extract_from_videos
    config = ExtractConfig(backbone="r2plus1d_18", weights=None, multi_scale=False, fps=float(sys.argv[3]))
    extract_from_videos(sys.argv[1], sys.argv[2], config, ClipSettings(), DecodeSettings(), console=Console(quiet=True))
    print(int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) * 1024)
""")


def bench_clip_memory(work: Path, rows: list) -> None:
    """A 10-second and a 10-minute video (320x240, 25 fps) through r2plus1d_18, each in its own
    process, both filling whole batches of 8 windows: the 10-second one at the release's 15 fps
    (9 windows), the 10-minute one resampled to 2 fps (75 windows in 10 chunks: every one of its
    15,000 frames decoded, the network's time kept to a minute)."""
    peaks = {}
    for name, seconds, fps in (("short", 10, 15), ("long", 600, 2)):
        raw = work / f"mem_{name}"
        write_video(raw / "train/cat/v.mp4", num_frames=25 * seconds, codec="h264", width=320, height=240, fps=25)
        out = subprocess.run([sys.executable, "-c", PEAK, str(raw), str(work / f"mem_{name}_f"), str(fps)],
                             capture_output=True, text=True, check=True)
        peaks[name] = int(out.stdout.split()[-1])
    rows.append((
        "peak RSS, r2plus1d_18 over one video, batches of 8 windows, its own process",
        f"10 seconds: {peaks['short'] >> 20} MiB", f"10 minutes: {peaks['long'] >> 20} MiB",
        f"{peaks['long'] / peaks['short']:.2f}", "≤ 1.2", "",
    ))


def gpu_clip_rows(raw: Path, work: Path, rows: list, log, failed) -> None:
    """``make bench-gpu``: r2plus1d_18 and swin3d_t ``extract --from-videos`` on the card against
    the network alone (as vcp runs it) on the same windows, windows per second."""
    import time

    from vcp.stages.encoder import FrameEncoder
    from vcp.stages.settings import DecodeSettings, ExtractConfig
    from vcp.stages.stream import extract_from_videos

    for name in ("r2plus1d_18", "swin3d_t"):
        try:
            config = ExtractConfig(backbone=name, weights=None, device="cuda", multi_scale=False, overwrite=True, batch_size=32)
            windows, model = _windows(raw, ExtractConfig(backbone=name, weights=None, multi_scale=False))
            encoder = FrameEncoder(model, config)
            batches = [windows[i:i + 32] for i in range(0, len(windows), 32)]

            def alone(encoder=encoder, batches=batches, spec=model.input_spec):
                for b in batches:
                    encoder.forward(encoder.prepare(b, spec)[0])
                torch.cuda.synchronize()

            alone()  # warm-up (cuDNN's algorithm search)
            start = time.perf_counter()
            alone()
            base = len(windows) / (time.perf_counter() - start)
            decode = DecodeSettings(mode="gpu")
            extract_from_videos(raw, work / f"{name}_f", config, None, decode, console=QUIET, model=model)  # warm-up
            start = time.perf_counter()
            extract_from_videos(raw, work / f"{name}_f", config, None, decode, console=QUIET, model=model)
            ours = len(windows) / (time.perf_counter() - start)
            rows.append((f"{name} extract --from-videos fp32, {len(windows)} windows, 32 per forward",
                         f"the network alone (as vcp runs it): {base:.1f} windows/s", f"{ours:.1f} windows/s",
                         f"{ours / base:.2f}", "(first measure)"))
            log(rows[-1])
        except Exception as exc:  # noqa: BLE001 - one failed section is a row, not the end of the bench
            failed(rows, log, f"{name} extract --from-videos", exc)
