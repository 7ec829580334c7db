"""Summarise a CUDA timeline (a ``torch.profiler`` Chrome trace, CUPTI underneath): where
the card's time went, which py-spy (the host's side) cannot show.

    python tools/cuda_timeline.py TRACE.json[.gz] [--trim 0.1] [--frames N]

Over a steady window (the span of the card's activity less ``--trim`` of it at each end,
so start-up and drain do not count): how busy the card was; per stream, its kernels, its
copies and the gaps between them; the kernels that took the time; the host's CUDA calls
(launches, synchronizations; allocations, which also serialize streams); and how long
kernels waited between their launch and their start, i.e. queued behind other work.
``--frames``: the frames the whole trace ran, for kernel time per frame (trace-wide).

:func:`record` runs a function under the profiler (CUDA activity, synchronization events
where the profiler offers them) and writes such a trace.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import itertools
import json
import re
import statistics
import sys

GAP_US = 20.0  # a stream idle at least this long between two of its operations is a gap
GPU_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
HOST_CATS = ("cuda_runtime", "cuda_driver", "cuda_sync")


def load(path: str) -> list[dict]:
    """The complete ('X') events of a Chrome trace (``.gz`` or plain)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    events = data if isinstance(data, list) else data.get("traceEvents", [])
    return [e for e in events if isinstance(e, dict) and e.get("ph") == "X" and "dur" in e]


def record(fn, path: str) -> None:
    """Run ``fn()`` under torch.profiler (CUDA activity) and write its Chrome trace to ``path``."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    try:
        extra = {"experimental_config": torch._C._profiler._ExperimentalConfig(enable_cuda_sync_events=True)}
    except (AttributeError, TypeError):  # a torch without synchronization events
        extra = {}
    cuda = torch.cuda.is_available()  # without CUDA: the host's ops only, for a dry run
    with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU], **extra) as prof:
        fn()
        if cuda:
            torch.cuda.synchronize()
    prof.export_chrome_trace(str(path))


def merged(intervals) -> list[tuple[float, float]]:
    """Overlapping or touching ``(start, end)`` intervals joined, in order."""
    out: list[list[float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]


def covered(intervals) -> float:
    return sum(e - s for s, e in merged(intervals))


def gaps(intervals, least: float = GAP_US) -> list[float]:
    """Idle stretches of at least ``least`` between the merged intervals, in order."""
    joined = merged(intervals)
    return [b[0] - a[1] for a, b in itertools.pairwise(joined) if b[0] - a[1] >= least]


def _clip(event: dict, w0: float, w1: float) -> tuple[float, float] | None:
    start, end = float(event["ts"]), float(event["ts"]) + float(event["dur"])
    start, end = max(start, w0), min(end, w1)
    return (start, end) if end > start else None


def short_name(name: str, width: int = 70) -> str:
    """A kernel's name without its template arguments and parameter list."""
    name = re.sub(r"\(.*\)$", "", name)
    while True:
        inner = re.sub(r"<[^<>]*>", "", name)
        if inner == name:
            break
        name = inner
    name = re.sub(r"^(void|static) ", "", name).strip()
    return name if len(name) <= width else name[: width - 1] + "…"


def _ms(us: float) -> str:
    return f"{us / 1000:.1f}"


def summarize(events: list[dict], trim: float = 0.1, frames: int | None = None, top: int = 12) -> str:
    gpu = [e for e in events if e.get("cat") in GPU_CATS]
    if not gpu:
        return "no GPU activity in this trace (no kernels, copies or memsets)\n"
    first = min(float(e["ts"]) for e in gpu)
    last = max(float(e["ts"]) + float(e["dur"]) for e in gpu)
    w0, w1 = first + trim * (last - first), last - trim * (last - first)
    span = w1 - w0
    lines = [f"window {_ms(span)} ms: the middle {100 * (1 - 2 * trim):.0f}% of {_ms(last - first)} ms of GPU activity"]
    inside = [(e, iv) for e in gpu if (iv := _clip(e, w0, w1))]
    kernels = [iv for e, iv in inside if e["cat"] == "kernel"]
    busy = covered(iv for _e, iv in inside)
    lines.append(f"card busy {100 * busy / span:.1f}% of the window (kernels {100 * covered(kernels) / span:.1f}%, "
                 f"copies and memsets alone {100 * (busy - covered(kernels)) / span:.1f}%)")
    lines += _streams(inside, span)
    lines += _top_kernels([e for e, _iv in inside if e["cat"] == "kernel"], top)
    lines += _host_calls([e for e in events if e.get("cat") in HOST_CATS and _clip(e, w0, w1)], top)
    lines += _latency(events, w0, w1)
    if frames:
        total = sum(float(e["dur"]) for e in gpu if e["cat"] == "kernel")
        lines.append(f"kernel time over the whole trace: {_ms(total)} ms for {frames} frames = {total / frames:.1f} µs a frame")
    return "\n".join(lines) + "\n"


def _streams(inside, span: float) -> list[str]:
    per = collections.defaultdict(list)
    for e, iv in inside:
        per[e.get("args", {}).get("stream", "?")].append((e, iv))
    lines = ["streams (busy share of the window; gaps: idle stretches ≥ 20 µs between its operations):"]
    busy = {stream: covered(iv for _e, iv in items) for stream, items in per.items()}
    for stream, items in sorted(per.items(), key=lambda kv: -busy[kv[0]]):
        ivs = [iv for _e, iv in items]
        n_k = sum(e["cat"] == "kernel" for e, _iv in items)
        copies = collections.Counter()
        for e, _iv in items:
            if e["cat"] == "gpu_memcpy":
                copies[re.sub(r" \(.*", "", e["name"])] += int(e.get("args", {}).get("bytes", 0))
        held = gaps(ivs)
        big = ", ".join(f"{g / 1000:.2f}" for g in sorted(held, reverse=True)[:3])
        text = ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in sorted(copies.items()))
        lines.append(f"  stream {stream}: busy {100 * busy[stream] / span:5.1f}%, {n_k} kernels"
                     f"{', ' + text if text else ''}; gaps {len(held)}, {_ms(sum(held))} ms"
                     f"{' (largest ' + big + ' ms)' if held else ''}")
    return lines


def _top_kernels(kernels: list[dict], top: int) -> list[str]:
    by = collections.defaultdict(list)
    for e in kernels:
        by[short_name(e["name"])].append(float(e["dur"]))
    total = sum(sum(v) for v in by.values()) or 1.0
    lines = ["kernels by time in the window:", f"  {'ms':>9} {'share':>6} {'count':>7} {'mean µs':>9}  name"]
    for name, durs in sorted(by.items(), key=lambda kv: -sum(kv[1]))[:top]:
        lines.append(f"  {_ms(sum(durs)):>9} {100 * sum(durs) / total:5.1f}% {len(durs):7d} {statistics.fmean(durs):9.1f}  {name}")
    return lines


def _host_calls(calls: list[dict], top: int) -> list[str]:
    by = collections.defaultdict(list)
    for e in calls:
        name = e.get("args", {}).get("cuda_sync_kind") or e["name"]
        by[(e["cat"], name)].append(e)
    lines = ["host CUDA calls in the window:", f"  {'calls':>9} {'total ms':>9} {'max ms':>8} {'threads':>7}  name"]
    for (cat, name), es in sorted(by.items(), key=lambda kv: -sum(float(e["dur"]) for e in kv[1]))[:top]:
        durs = [float(e["dur"]) for e in es]
        threads = len({e.get("tid") for e in es})
        lines.append(f"  {len(es):>9} {_ms(sum(durs)):>9} {max(durs) / 1000:8.2f} {threads:7d}  {name} ({cat})")
    return lines


def _latency(events: list[dict], w0: float, w1: float) -> list[str]:
    """Launch -> start of each kernel matched to its launch call by correlation id, per stream."""
    launch = {}
    for e in events:
        corr = e.get("args", {}).get("correlation")
        if e.get("cat") in ("cuda_runtime", "cuda_driver") and corr is not None:
            launch[corr] = float(e["ts"])
    waits = collections.defaultdict(list)
    for e in events:
        corr = e.get("args", {}).get("correlation")
        if e.get("cat") == "kernel" and corr in launch and w0 <= float(e["ts"]) <= w1:
            waits[e.get("args", {}).get("stream", "?")].append(float(e["ts"]) - launch[corr])
    if not waits:
        return ["launch -> start: no kernels matched to their launch calls"]
    lines = ["launch -> start of kernels, µs (the host's lead where the stream is busy; queueing behind other streams):",
             f"  {'stream':>9} {'kernels':>9} {'median':>8} {'p90':>8} {'max':>8}"]
    for stream, ws in sorted(waits.items(), key=lambda kv: -len(kv[1])):
        ws.sort()
        lines.append(f"  {stream!s:>9} {len(ws):>9} {ws[len(ws) // 2]:8.0f} {ws[int(0.9 * (len(ws) - 1))]:8.0f} {ws[-1]:8.0f}")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("--trim", type=float, default=0.1, help="share of the span dropped at each end")
    ap.add_argument("--frames", type=int, help="frames the whole trace ran (kernel time per frame)")
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args(argv)
    sys.stdout.write(summarize(load(args.trace), args.trim, args.frames, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
