"""``make bench``: side-by-side speed ratios against plain baselines, one process tree.

Generates its own data (real codecs, 720p and smaller), runs each baseline and the vcp
path on the same inputs in the same run, checks the outputs agree, and writes a table
to docs/benchmarks.md with the machine described. Weights are random init (the speed of
a network does not depend on its weight values; nothing is downloaded).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from backbones import IMAGENET, get_backbone
from bench import results
from bench.reference import original_multiscale_features
from vcp.inputs.synth import write_video
from vcp.stages.encoder import FrameEncoder, video_features
from vcp.stages.extract import extract
from vcp.stages.settings import ExtractConfig
from vcp.stages.stream import extract_from_videos
from vcp.stages.tensorize import TensorizeConfig, tensorize

QUIET = Console(quiet=True)
T, S = 64, 256


def machine() -> tuple[str, str]:
    """(the machine, the software) as the results name them."""
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    flags = open("/proc/cpuinfo").read()
    bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    box = (f"{cpu}, {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30} GiB"
           f"{'' if bf16 else ' (no bf16 instructions)'}{gpu}")
    import nvidia.dali

    software = (f"Python {platform.python_version()}, torch {torch.__version__}, nvidia-dali {nvidia.dali.__version__}, "
                f"{torch.get_num_threads()} torch threads")
    return box, software


def make_videos(root: Path, count: int) -> list[Path]:
    """720p and smaller, 4 codecs, 96 frames each (synthetic: cheap to decode, so resize,
    copies and I/O weigh more than with camera footage)."""
    shapes = [("h264", 1280, 720), ("vp9", 854, 480), ("hevc", 640, 360), ("mjpeg", 640, 360)]
    suffix = {"h264": ".mp4", "vp9": ".webm", "hevc": ".mkv", "mjpeg": ".avi"}
    out = []
    for i in range(count):
        codec, w, h = shapes[i % len(shapes)]
        path = root / "train" / "cat" / "sub" / f"v{i:02d}{suffix[codec]}"
        write_video(path, num_frames=96, codec=codec, width=w, height=h, fps=25)
        out.append(path)
    return out


def timed(fn):
    # Flush what earlier runs left dirty (the baseline's 400 MB torch.save is still being
    # written back when the next run starts), so no run pays for another's writeback.
    os.sync()
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def best_of_pair(baseline, candidate, runs: int = 2):
    """Fastest of ``runs`` for each, alternating baseline/candidate so drift on a shared
    machine hits both alike (the first run also pays one-off start-up)."""
    base, cand = [], []
    for _ in range(runs):
        base.append(timed(baseline)[0])
        cand.append(timed(candidate)[0])
    return min(base), min(cand)


# -- 1, 2: extract ------------------------------------------------------------------------
def bench_extract(videos: torch.Tensor, rows: list, runs: int = 2):
    """Seed loop vs vcp fp32 vs vcp bf16, each run ``runs`` times in turn; best time of each."""
    torch.manual_seed(0)
    model = get_backbone("efficientnet_v2_s", weights=None)
    frames = videos.shape[0] * videos.shape[1]
    encoders = {p: (FrameEncoder(model, ExtractConfig(precision=p)), ExtractConfig(precision=p)) for p in ("fp32", "bf16")}
    for enc, cfg in encoders.values():
        video_features(enc, videos[0][:4], cfg)  # warm-up
    times: dict[str, list[float]] = {"original": [], "fp32": [], "bf16": []}
    outputs = {}
    for _ in range(runs):
        t, outputs["original"] = timed(lambda: [original_multiscale_features(model, v, batch_size=24) for v in videos])
        times["original"].append(t)
        for p, (enc, cfg) in encoders.items():
            t, outputs[p] = timed(lambda enc=enc, cfg=cfg: [video_features(enc, v, cfg) for v in videos])
            times[p].append(t)
    original_time = min(times["original"])
    for p, goal in (("fp32", "≥ 4.5×"), ("bf16", "≥ 9×")):
        t = min(times[p])
        rel = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(outputs[p], outputs["original"], strict=True))
        rows.append((
            f"extract {p}, efficientnet_v2_s, {len(videos)} videos × T={T} @ {S}²",
            f"original loop fp32 NCHW batch 24: {original_time:.1f} s ({frames / original_time:.1f} video-frames/s)",
            f"{t:.1f} s ({frames / t:.1f} video-frames/s; batch {encoders[p][1].forward_batch}, channels_last, conv+BN folded)",
            f"{original_time / t:.2f}×", goal, f"max rel diff {rel:.1e}",
        ))


def bench_recipe(videos: torch.Tensor, rows: list, runs: int = 2):
    """The model's recipe on stored frames (256² -> resize to 224, re-normalize) against the
    same network given frames already stored at 224²: the cost of the step, same network."""
    torch.manual_seed(0)
    model = get_backbone("efficientnet_v2_s", weights=None, input_size=224)
    with_recipe = ExtractConfig(recipe="model", input_size=224)
    without = ExtractConfig(recipe="stored")
    enc_with, enc_without = FrameEncoder(model, with_recipe), FrameEncoder(model, without)
    small = [F.interpolate(v.float(), size=(224, 224), mode="bilinear", antialias=True, align_corners=False) for v in videos]
    video_features(enc_with, videos[0][:4], with_recipe)  # warm-up
    video_features(enc_without, small[0][:4], without)
    base, cand = best_of_pair(lambda: [video_features(enc_without, v, without) for v in small],
                              lambda: [video_features(enc_with, v, with_recipe) for v in videos], runs=runs)
    rows.append((
        f"the model's recipe on stored frames, efficientnet_v2_s, {len(videos)} video(s) × T={videos.shape[1]} @ {S}² -> 224²",
        f"frames stored at 224², no recipe: {base:.1f} s", f"resize + re-normalize on the way in: {cand:.1f} s",
        f"{cand / base:.3f}", "≤ 1.05", "same network, same input size",
    ))


# -- 3: tensorize -------------------------------------------------------------------------
def plain_tensorize(paths: list[Path], out: Path):
    """What a user would write: decode everything with PyAV, pick, resize, normalize, save."""
    import av

    mean = torch.tensor(IMAGENET.mean).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET.std).view(1, 3, 1, 1)
    clips = []
    for p in paths:
        with av.open(str(p)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        idx = np.linspace(0, len(frames) - 1, T).astype(int)
        x = torch.from_numpy(np.stack([frames[i] for i in idx])).permute(0, 3, 1, 2).float() / 255
        x = F.interpolate(x, size=(S, S), mode="bilinear", antialias=True, align_corners=False)
        clips.append((x - mean) / std)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"videos": torch.stack(clips), "labels": torch.zeros(len(clips), dtype=torch.int64),
                "filenames": [p.name for p in paths], "category_mapping": {"cat": 0}}, out / "processed_data.pt")


def bench_tensorize(raw: Path, work: Path, rows: list):
    paths = sorted((raw / "train/cat/sub").iterdir())
    cfg = TensorizeConfig.from_options(frames=T, size=S, mode="cpu", overwrite=True)
    base_t, vcp_t = best_of_pair(
        lambda: plain_tensorize(paths, work / "plain"),
        lambda: tensorize(raw, work / "vcp", cfg, console=QUIET),
        runs=4,  # ~3 s a run and noisy on a shared 2-core box: more samples for both sides
    )
    a = torch.load(work / "plain/processed_data.pt", weights_only=True)["videos"]
    b = torch.load(work / "vcp/train/cat/sub/processed_data.pt", weights_only=True)["videos"]
    diff = float((a - b).abs().mean())
    rows.append((
        f"tensorize CPU, {len(paths)} videos (720p/480p/360p; H.264, VP9, HEVC, MJPEG) → T={T} @ {S}²",
        f"PyAV decode all → pick → torch resize → normalize → torch.save: {base_t:.1f} s",
        f"{vcp_t:.1f} s (bounded memory, atomic write, fsync)", f"{base_t / vcp_t:.2f}×", "≥ 1.5×", f"mean abs diff {diff:.3f} (normalized units)",
    ))
    return work / "vcp"


# -- 4: streaming ---------------------------------------------------------------------------
def features_rel_diff(a: Path, b: Path) -> float:
    """Max |a - b| / max |a| over the train features of two feature folders."""
    import h5py

    name = "train_features_multiscale.h5"
    with h5py.File(a / name) as fa, h5py.File(b / name) as fb:
        x, y = fa["features"][:], fb["features"][:]
    return float(np.abs(x - y).max() / np.abs(x).max())


def bench_streaming(raw: Path, work: Path, rows: list):
    ecfg = ExtractConfig(weights=None, overwrite=True)
    tcfg = TensorizeConfig.from_options(frames=T, size=S, mode="cpu", overwrite=True)

    model = get_backbone("efficientnet_v2_s", None)  # the same weights for both paths

    def two_stage():
        tensorize(raw, work / "p2", tcfg, console=QUIET)
        extract(work / "p2", work / "f2", ecfg, console=QUIET, model=model)

    def streaming():
        extract_from_videos(raw, work / "f3", ecfg, tcfg.clip, tcfg.decode, console=QUIET, model=model)

    t2, t3 = best_of_pair(two_stage, streaming, runs=3)  # the gain is small on 2 cores: 3 runs
    rel = features_rel_diff(work / "f2", work / "f3")
    rows.append((
        "streaming `extract --from-videos` vs tensorize + extract (fp32), in one process",
        f"the two stages back to back: {t2:.1f} s", f"{t3:.1f} s", f"{t2 / t3:.2f}×", "faster, same features",
        f"max rel diff {rel:.1e}",
    ))

    # What a user types: two commands (two start-ups, two model builds) against one.
    vcp = [sys.executable, "-m", "vcp"]
    weights = work / "efficientnet_v2_s.pth"  # a state_dict file: both commands load the same weights
    torch.save(model.state_dict(), weights)
    common = ["--overwrite", "--device", "cpu", "--weights", weights]

    def run(*args):
        subprocess.run([*vcp, *map(str, args)], check=True, capture_output=True)

    t2, t3 = best_of_pair(
        lambda: (run("tensorize", raw, work / "p4", "--mode", "cpu", "--overwrite"),
                 run("extract", work / "p4", work / "f4", *common)),
        lambda: run("extract", raw, work / "f5", "--from-videos", *common),
    )
    rel = features_rel_diff(work / "f4", work / "f5")
    rows.append((
        "the same as commands: `vcp tensorize` then `vcp extract`, vs `vcp extract --from-videos` (CPU)",
        f"two commands: {t2:.1f} s", f"one command: {t3:.1f} s", f"{t2 / t3:.2f}×", "faster",
        f"max rel diff {rel:.1e}",
    ))


# -- 5: RSS ---------------------------------------------------------------------------------
RSS = textwrap.dedent("""
    import sys
    from rich.console import Console
    from vcp.stages.tensorize import TensorizeConfig, tensorize
    tensorize(sys.argv[1], sys.argv[2], TensorizeConfig.from_options(frames=64, size=256, mode="cpu"), console=Console(quiet=True))
    # VmHWM, not ru_maxrss: Linux carries the parent's peak into ru_maxrss across exec
    print(int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) * 1024)
""")


def bench_rss(work: Path, rows: list):
    src = work / "rss_src.webm"
    write_video(src, num_frames=64, codec="vp9", width=320, height=240)
    peaks = {}
    for n in (10, 100):
        root = work / f"rss{n}"
        for i in range(n):
            target = root / "train/cat/sub" / f"v{i:03d}.webm"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, target)
        out = subprocess.run([sys.executable, "-c", RSS, str(root), str(work / f"rss_out{n}")],
                             capture_output=True, text=True, check=True)
        peaks[n] = int(out.stdout.split()[-1])
        shutil.rmtree(work / f"rss_out{n}")
    clip_mb = T * 3 * S * S * 4 / 2**20
    rows.append((
        f"peak RSS, tensorize one subcategory ({clip_mb:.0f} MiB per clip)",
        f"10 videos: {peaks[10] >> 20} MiB", f"100 videos: {peaks[100] >> 20} MiB",
        f"{peaks[100] / peaks[10]:.2f}", "≤ 1.2", "",
    ))


# -- 6: the archive writer at a decoder's pace -----------------------------------------------
def bench_writer(work: Path, rows: list, clips: int = 24, pace: float = 0.15, runs: int = 2):
    """tensorize's ``.pt`` writer fed one 50 MB clip every ``pace`` s (a decoder at
    1/pace videos/s), commit (fsync) included, with and without starting the disk's
    write-back as clips are written. Same bytes both ways."""
    from vcp.store.pt_writer import PtWriter

    clip = torch.randn(T, 3, S, S)
    expected = [(f"v{i}.mp4", 0) for i in range(clips)]

    def write(writeback: bool) -> tuple[float, float]:
        out = work / f"writer-{writeback}"
        shutil.rmtree(out, ignore_errors=True)
        os.sync()
        start = time.perf_counter()
        with PtWriter(out, frames=T, size=S, category_mapping={"cat": 0}, expected=expected, writeback=writeback) as w:
            for name, label in expected:
                t = time.perf_counter()
                w.add(clip, name, label)
                time.sleep(max(0.0, pace - (time.perf_counter() - t)))
            fed = time.perf_counter()
            w.commit({})
        end = time.perf_counter()
        return end - start, end - fed

    results = {True: [], False: []}
    for _ in range(runs):
        for writeback in (False, True):
            results[writeback].append(write(writeback))
    same = filecmp.cmp(work / "writer-True/processed_data.pt", work / "writer-False/processed_data.pt", shallow=False)
    for writeback in results:
        shutil.rmtree(work / f"writer-{writeback}")
    (off, off_commit), (on, on_commit) = min(results[False]), min(results[True])
    mb = T * 3 * S * S * 4 / 1e6
    rows.append((
        f"tensorize's .pt writer fed {clips} clips of {mb:.0f} MB at {1 / pace:.1f} clips/s, commit (fsync) included",
        f"write-back left to the kernel: {off:.1f} s (commit {off_commit:.2f} s)",
        f"write-back started per clip: {on:.1f} s (commit {on_commit:.2f} s)", f"{off / on:.2f}×", "(diagnostic)",
        "same bytes" if same else "ARCHIVES DIFFER",
    ))


# -- 7: a 100,000-row manifest ------------------------------------------------------------------
def bench_manifest(work: Path, rows: list, n: int = 100_000, runs: int = 3):
    """Parsing a manifest (``read_rows``: every value checked; goal under a second), and
    reading it whole (``read_manifest``: + duplicates, classes, groups, paths confined to
    --root), each against ``csv.reader`` alone over the same file."""
    import csv

    from vcp.inputs.manifest import read_manifest, read_rows

    root = work / "manifest-videos"
    (root / "v").mkdir(parents=True)
    (root / "v/000000_x.mp4").write_bytes(b"")  # one file exists: the rest would fail when probed
    path = work / "big.csv"
    path.write_text("split,path,label,start,end\n" + "".join(
        f"{'train' if i % 10 else 'val'},v/{i:06d}_x.mp4,class {i % 400} [a],{i % 7},{i % 7 + 10}\n" for i in range(n)))
    plain, parse, whole, groups = [], [], [], 0
    for _ in range(runs):
        start = time.perf_counter()
        with open(path, newline="") as fh:
            parsed = list(csv.reader(fh))
        plain.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert len(read_rows(path)) == len(parsed) - 1 == n
        parse.append(time.perf_counter() - start)
        start = time.perf_counter()
        groups = len(read_manifest(path, root=root).groups)
        whole.append(time.perf_counter() - start)
    what = f"a {n:,}-row manifest (400 classes with spaces and brackets, segments)"
    rows.append((f"parse {what}: every value checked", f"csv.reader alone: {min(plain):.2f} s",
                 f"read_rows: {min(parse):.2f} s", f"{min(parse):.2f} s", "< 1 s", f"{n:,} rows"))
    rows.append((f"read {what} whole: + duplicates, classes, groups, --root confinement",
                 f"csv.reader alone: {min(plain):.2f} s", f"read_manifest: {min(whole):.2f} s", f"{min(whole):.2f} s",
                 "(diagnostic)", f"{groups} groups"))


# -- 8: a dry run over 12,000 classes, one video each -----------------------------------------
def bench_plan(work: Path, rows: list, classes: int = 12_000, runs: int = 2):
    """``vcp tensorize --dry-run`` (a new process, imports included) over a tree of
    ``classes`` class folders with one video each: planning was quadratic in classes
    (248 s at 12,000); goal under 5 s. Against ``ls -R`` of the same tree."""
    import subprocess
    import sys

    raw = work / "plan-raw"
    for i in range(classes):
        folder = raw / "train" / f"class {i:05d} [x]"
        folder.mkdir(parents=True)
        (folder / "v.mp4").write_bytes(b"x" * 100)
    vcp = [sys.executable, "-m", "vcp.cli", "tensorize", str(raw), str(work / "plan-out"), "--dry-run"]
    listing, plan = [], []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(["ls", "-R", str(raw)], check=True, capture_output=True)
        listing.append(time.perf_counter() - start)
        start = time.perf_counter()
        done = subprocess.run(vcp, capture_output=True, text=True)
        plan.append(time.perf_counter() - start)
        assert done.returncode == 0 and done.stdout.count("\n") > classes, done.stderr[-500:]
    rows.append((f"tensorize --dry-run over {classes:,} classes x 1 video (a new process, imports included)",
                 f"ls -R: {min(listing):.2f} s", f"vcp: {min(plan):.2f} s", f"{min(plan):.2f} s", "< 5 s",
                 f"{classes:,} groups planned"))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/benchmarks.md")
    ap.add_argument("--only", choices=["extract", "recipe", "tensorize", "streaming", "rss", "writer", "manifest", "plan",
                                       "clips", "precision", "peer", "startup"], default=None)
    ap.add_argument("--videos", type=int, default=8, help="videos for tensorize/streaming (4 codecs round-robin)")
    args = ap.parse_args(argv)
    rows: list = []
    with tempfile.TemporaryDirectory(prefix="vcp-bench-") as tmp:
        work = Path(tmp)
        raw = work / "raw"
        make_videos(raw, args.videos)
        todo = [args.only] if args.only else ["extract", "tensorize", "streaming", "rss", "writer", "manifest", "plan", "clips",
                                              "precision", "peer", "startup"]
        processed = None
        if "extract" in todo or "tensorize" in todo:
            processed = bench_tensorize(raw, work, rows) if "tensorize" in todo else None
        if "extract" in todo or "recipe" in todo:
            if processed is None:
                tensorize(raw, work / "vcp", TensorizeConfig.from_options(frames=T, size=S, mode="cpu"), console=QUIET)
                processed = work / "vcp"
            vids = torch.load(processed / "train/cat/sub/processed_data.pt", weights_only=True)["videos"][:2]
            if "extract" in todo:
                bench_extract(vids, rows)
            bench_recipe(vids[:1], rows)
        if "streaming" in todo:
            bench_streaming(raw, work, rows)
        if "rss" in todo:
            bench_rss(work, rows)
        if "writer" in todo:
            bench_writer(work, rows)
        if "manifest" in todo:
            bench_manifest(work, rows)
        if "plan" in todo:
            bench_plan(work, rows)
        if "clips" in todo:
            from bench.clips import bench_clip_backbone, bench_clip_memory

            bench_clip_backbone(work, rows, timed, best_of_pair)
            bench_clip_memory(work, rows)
        if "precision" in todo:
            from bench.precision import precision_rows

            precision_rows(rows)
        if "peer" in todo:
            from bench.peer import peer_rows

            peer_rows(work, rows)
        if "startup" in todo:
            from bench.peer import startup_rows

            startup_rows(work, rows)
    header = "| measure | baseline | vcp | ratio | goal | agreement |\n|---|---|---|---|---|---|\n"
    print(header + "".join("| " + " | ".join(r) + " |\n" for r in rows))
    method = ("Tensorize best of 4, streaming best of 3, extract best of 2 after a warm-up; baseline and vcp "
              "alternating.")
    cpu, versions = machine()
    results.append(results.records(rows, suite="cpu", machine=f"CPU: {cpu}", versions=versions, method=method))
    print(f"appended {len(rows)} record(s) to {results.RESULTS}; wrote {results.write_report(out=Path(args.out))}")


if __name__ == "__main__":
    main()
