"""``python -m bench.gpu_profile --out DIR``: where the time goes in the GPU paths short of
their goals, for the next run on a lent card (docs/gpu.md).

Each case runs in a process of its own, under py-spy when it is there (``$PY_SPY``, else
on ``PATH``; sampling all threads, idle ones included), and prints its rate; the profile
is summarised per thread into ``DIR/<case>.txt`` (``tools/fold_pyspy.py``) beside the raw
samples (``DIR/<case>.raw``), and ``nvidia-smi dmon`` logs the card's power, SM / NVDEC
load and clocks for the whole run (``DIR/dmon.txt``). Data as ``make bench-gpu``: 32
synthetic 720p H.264 videos, T=64, 256², random-init efficientnet_v2_s.

Cases (the gaps left in the H100 run of 2026-11-26, docs/benchmarks.md):
``extract-bf16`` (0.87 of the backbone alone), ``stream-1`` (``--from-videos`` with one
pipeline, 0.71 of DALI alone), ``tensorize`` (0.77 of min(DALI alone, disk write)).
``stream-1-b64`` is ``stream-1`` with 64 frames per forward instead of 256: DALI's GPU
decoder waits for its stream after every frame's colour conversion
(``FramesDecoderGpu::HandlePictureDisplay``), and that small kernel queues for SMs behind
the network's; shorter forwards should shorten each wait (docs/gpu.md).

The ``timeline-*`` cases record the card's side instead (``torch.profiler``'s CUDA
activity: kernels, copies, synchronizations, launch-to-start waits;
``tools/cuda_timeline.py``), each vcp run beside its own ceiling in the same process:
``timeline-extract`` the backbone alone and ``vcp extract`` in bf16 and fp32 (fp32 met its
goal: the control), ``timeline-stream-1`` DALI alone and ``--from-videos`` with one
pipeline. Summaries go to ``DIR/<case>.txt``, the raw traces to ``DIR/traces/``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = ("timeline-extract", "timeline-stream-1", "extract-bf16", "stream-1", "stream-1-b64", "tensorize")


def _prepare(work: Path) -> None:
    import torch

    from backbones import get_backbone
    from bench.gpu import QUIET, S, T, link_copies, make_videos, repeat_split
    from vcp.stages.tensorize import TensorizeConfig, tensorize

    make_videos(work / "raw", 32)
    link_copies(work / "raw", work / "raw3", 3)
    tensorize(work / "raw", work / "processed", TensorizeConfig.from_options(frames=T, size=S, mode="gpu"), console=QUIET)
    repeat_split(work / "processed", work / "processed_x", 6)
    torch.manual_seed(0)
    torch.save(get_backbone("efficientnet_v2_s", weights=None).state_dict(), work / "effnet.pth")


def _timeline(name: str, work: Path, out: Path) -> str:
    """Record the card's timeline of vcp and of its ceiling; their summaries to ``out``."""
    import torch

    from backbones import get_backbone
    from bench.gpu import BATCH, QUIET, S, T, backbone_alone, dali_alone
    from tools.cuda_timeline import load, record, summarize
    from vcp.stages.extract import extract
    from vcp.stages.settings import ExtractConfig
    from vcp.stages.stream import extract_from_videos
    from vcp.stages.tensorize import TensorizeConfig

    torch.backends.cudnn.benchmark = True
    (out / "traces").mkdir(parents=True, exist_ok=True)
    weights = str(work / "effnet.pth")
    runs = []  # (title, trace, frames)
    if name == "timeline-extract":
        frames = 6 * 32 * T
        for precision in ("bf16", "fp32"):
            alone = get_backbone("efficientnet_v2_s", weights=None).cuda().eval()
            iters = frames // (3 * BATCH)  # backbone_alone runs 3 times: warm-up and best of 2
            backbone_alone(alone, precision, BATCH, iters=1)  # cuDNN's algorithm search, not recorded
            trace = out / "traces" / f"alone-{precision}.json.gz"
            record(lambda a=alone, p=precision, i=iters: backbone_alone(a, p, BATCH, iters=i), trace)
            runs.append((f"backbone alone, {precision}, {BATCH} frames a forward", trace, 3 * iters * BATCH))
            cfg = ExtractConfig(device="cuda", weights=weights, precision=precision, batch_size=BATCH, overwrite=True)
            model = get_backbone("efficientnet_v2_s", weights)
            extract(work / "processed_x", work / "f", cfg, console=QUIET, model=model)  # warm-up
            trace = out / "traces" / f"extract-{precision}.json.gz"
            record(lambda c=cfg, m=model: extract(work / "processed_x", work / "f", c, console=QUIET, model=m), trace)
            runs.append((f"vcp extract, {precision}, {BATCH} frames a forward", trace, frames))
    elif name == "timeline-stream-1":
        paths = sorted((work / "raw").rglob("*.mp4"))
        trace = out / "traces" / "dali-alone-1.json.gz"
        record(lambda: dali_alone(paths, 1), trace)
        runs.append(("DALI alone, 1 pipeline (warm-up and 2 runs)", trace, None))
        ecfg = ExtractConfig(device="cuda", weights=weights, batch_size=BATCH, overwrite=True)
        scfg = TensorizeConfig.from_options(frames=T, size=S, mode="gpu", pipelines=1)
        model = get_backbone("efficientnet_v2_s", weights)

        def go():
            extract_from_videos(work / "raw", work / "s", ecfg, scfg.clip, scfg.decode, console=QUIET, model=model)

        go()  # warm-up
        trace = out / "traces" / "stream-1.json.gz"
        record(go, trace)
        runs.append(("vcp extract --from-videos, 1 pipeline", trace, 32 * T))
    else:
        raise SystemExit(f"unknown case {name!r}; cases: {', '.join(CASES)}")
    text = "".join(f"== {title}\n{summarize(load(str(trace)), frames=frames)}\n" for title, trace, frames in runs)
    (out / f"{name}.txt").write_text(text)
    busy = [line.split(" of the window")[0].replace("card busy ", "") for line in text.splitlines() if line.startswith("card busy")]
    return f"card busy {' / '.join(busy)} ({' / '.join(title for title, _t, _f in runs)})"


def _case(name: str, work: Path, out: Path) -> str:
    """Run one case (warm-up, then timed) in this process; its rate as a line."""
    import torch

    if name.startswith("timeline-"):
        return _timeline(name, work, out)

    from backbones import get_backbone
    from bench.gpu import BATCH, QUIET, S, T, backbone_ceiling, best, marginal
    from vcp.stages.extract import extract
    from vcp.stages.settings import ExtractConfig
    from vcp.stages.stream import extract_from_videos
    from vcp.stages.tensorize import TensorizeConfig, tensorize

    torch.backends.cudnn.benchmark = True
    weights = str(work / "effnet.pth")
    if name == "extract-bf16":
        alone, burst = backbone_ceiling(get_backbone("efficientnet_v2_s", weights=None).cuda().eval(), "bf16", BATCH,
                                        frames=6 * 32 * T)
        cfg = ExtractConfig(device="cuda", weights=weights, precision="bf16", batch_size=BATCH, overwrite=True)
        model = get_backbone("efficientnet_v2_s", weights)
        extract(work / "processed_x", work / "f", cfg, console=QUIET, model=model)
        seconds = best(lambda: extract(work / "processed_x", work / "f", cfg, console=QUIET, model=model), runs=2)
        return (f"extract bf16, whole command: {6 * 32 * T / seconds:.0f} frames/s; backbone alone {alone:.0f} "
                f"(burst of 12 forwards: {burst:.0f})")
    if name in ("stream-1", "stream-1-b64"):
        frames_per_forward = 64 if name.endswith("b64") else BATCH
        ecfg = ExtractConfig(device="cuda", weights=weights, batch_size=frames_per_forward, overwrite=True)
        scfg = TensorizeConfig.from_options(frames=T, size=S, mode="gpu", pipelines=1)
        model = get_backbone("efficientnet_v2_s", weights)
        rate, whole, start = marginal(
            lambda: extract_from_videos(work / "raw", work / "s", ecfg, scfg.clip, scfg.decode, console=QUIET, model=model),
            lambda: extract_from_videos(work / "raw3", work / "s3", ecfg, scfg.clip, scfg.decode, console=QUIET, model=model),
            32, 96)
        return (f"--from-videos, 1 pipeline, {frames_per_forward} frames per forward: throughput {rate:.1f} videos/s, "
                f"whole command {whole:.1f}, start-up {start:.2f} s")
    if name == "tensorize":
        cfg = TensorizeConfig.from_options(frames=T, size=S, mode="gpu", overwrite=True)
        rate, whole, start = marginal(lambda: tensorize(work / "raw", work / "t", cfg, console=QUIET),
                                      lambda: tensorize(work / "raw3", work / "t3", cfg, console=QUIET), 32, 96)
        return f"tensorize: throughput {rate:.1f} videos/s, whole command {whole:.1f}, start-up {start:.2f} s"
    raise SystemExit(f"unknown case {name!r}; cases: {', '.join(CASES)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for the profiles and rates")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case here
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        print(_case(args.case, Path(args.work), Path(args.out)), flush=True)
        return 0
    import torch

    if not torch.cuda.is_available():
        print("bench-gpu-profile: no CUDA device visible; nothing measured", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    dmon = None
    if shutil.which("nvidia-smi"):
        dmon = subprocess.Popen(["nvidia-smi", "dmon", "-s", "puc", "-o", "T", "-d", "1"],
                                stdout=open(out / "dmon.txt", "w"), stderr=subprocess.STDOUT)
    try:
        with tempfile.TemporaryDirectory(prefix="vcp-gpu-profile-") as tmp:
            _prepare(Path(tmp))
            for name in args.cases.split(","):
                child = [sys.executable, "-m", "bench.gpu_profile", "--case", name, "--work", tmp, "--out", str(out)]
                if spy and not name.startswith("timeline-"):  # those record the card, not the host
                    child = [spy, "record", "-r", "67", "--threads", "--idle", "-f", "raw", "-o", str(out / f"{name}.raw"), "--", *child]
                started = time.strftime("%H:%M:%S")
                done = subprocess.run(child, capture_output=True, text=True)
                lines = [line for line in done.stdout.splitlines() if not line.startswith("py-spy>")]
                print(f"[{started}] {name}: {lines[-1] if lines else done.stderr.strip()[-300:]}", flush=True)
                if spy and (out / f"{name}.raw").exists():
                    from tools.fold_pyspy import fold, report

                    with open(out / f"{name}.raw") as fh:
                        (out / f"{name}.txt").write_text(report(fold(fh)))
    finally:
        if dmon is not None:
            dmon.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
