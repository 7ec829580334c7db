"""The GPU bench's tools that run here too: the no-CUDA exit, the py-spy summary, the CUDA timeline summary."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tools.fold_pyspy import fold, report

RAW = """\
thread (4496): MainThread;run (bench/gpu.py:10);forward (vcp/encoder.py:120);conv (torch/nn/conv.py:548) 30
thread (4496): MainThread;run (bench/gpu.py:10);wait (threading.py:355) 10
thread (4520): vcp-decode;work (dali_pipes/_loader.py:150);run (nvidia/dali/pipeline.py:1634) 25
"""


def test_fold_groups_stacks_by_thread_innermost_frames_first():
    per_thread = fold(RAW.splitlines(), depth=2)
    assert set(per_thread) == {"t4496 MainThread", "t4520 vcp-decode"}
    main = per_thread["t4496 MainThread"]
    assert main == {"conv conv.py:548 < forward encoder.py:120": 30, "wait threading.py:355 < run gpu.py:10": 10}
    text = report(per_thread)
    assert text.index("MainThread  samples=40") < text.index("vcp-decode  samples=25")
    assert "    30  75.0%  conv conv.py:548 < forward encoder.py:120" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-CUDA path")
@pytest.mark.parametrize("module", ["bench.gpu", "bench.gpu_profile"])
def test_gpu_benches_say_so_and_exit_2_without_cuda(module, tmp_path):
    args = ["--out", str(tmp_path / "x")]
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "no CUDA device visible" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


# -- tools/cuda_timeline.py: a torch.profiler trace's GPU side, summarised ------------------------
def _ev(cat, name, ts, dur, **args):
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "pid": 0, "tid": args.pop("tid", 1), "args": args}


CONV = "void at::native::conv<float, cutlass::Shape<128, 64>>(int, float*)"
TRACE = [  # µs. Stream 7: kernels with a 50 ms gap, then a 10 µs one (below the gap threshold)
    _ev("kernel", CONV, 0, 100_000, stream=7, correlation=1),
    _ev("kernel", CONV, 100_000, 200_000, stream=7, correlation=2),
    _ev("kernel", "elementwise_kernel<128, 4>", 350_000, 50_000, stream=7, correlation=3),
    _ev("kernel", "elementwise_kernel<128, 4>", 400_010, 99_990, stream=7, correlation=4),
    _ev("gpu_memcpy", "Memcpy HtoD (Pinned -> Device)", 300_000, 40_000, stream=13, correlation=5, bytes=2_000_000_000),
    _ev("cuda_runtime", "cudaLaunchKernel", -10, 5, correlation=1),  # before the window
    _ev("cuda_runtime", "cudaLaunchKernel", 99_990, 5, correlation=2),
    _ev("cuda_runtime", "cudaLaunchKernel", 100_000, 5, correlation=3),
    _ev("cuda_runtime", "cudaLaunchKernel", 399_000, 5, correlation=4),
    _ev("cuda_sync", "Stream Sync", 200_000, 30_000, tid=2, stream=7, cuda_sync_kind="Stream Sync"),
    {"ph": "M", "name": "thread_name", "pid": 0, "tid": 1, "args": {"name": "x"}},
]


def test_timeline_summary_of_a_known_trace(tmp_path):
    import gzip
    import json

    from tools.cuda_timeline import load, summarize

    path = tmp_path / "t.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump({"traceEvents": TRACE}, fh)
    events = load(str(path))
    assert len(events) == len(TRACE) - 1  # the metadata event is not a complete one
    lines = summarize(events, trim=0, frames=1000).splitlines()
    assert lines[0] == "window 500.0 ms: the middle 100% of 500.0 ms of GPU activity"
    # union of everything 489.99 ms, of kernels 449.99 ms
    assert lines[1] == "card busy 98.0% of the window (kernels 90.0%, copies and memsets alone 8.0%)"
    assert lines[3] == "  stream 7: busy  90.0%, 4 kernels; gaps 1, 50.0 ms (largest 50.00 ms)"
    assert lines[4] == "  stream 13: busy   8.0%, 0 kernels, Memcpy HtoD 2.00 GB; gaps 0, 0.0 ms"
    conv, elementwise = lines[7], lines[8]
    assert conv.split()[:4] == ["300.0", "66.7%", "2", "150000.0"] and conv.endswith("  at::native::conv")
    assert elementwise.split()[:3] == ["150.0", "33.3%", "2"] and elementwise.endswith("  elementwise_kernel")
    host = lines[lines.index("host CUDA calls in the window:") + 2:][:2]
    assert host[0].split() == ["1", "30.0", "30.00", "1", "Stream", "Sync", "(cuda_sync)"]
    assert host[1].split() == ["3", "0.0", "0.01", "1", "cudaLaunchKernel", "(cuda_runtime)"]
    # launch -> start: 10, 10, 1010 and 250000 µs
    assert lines[-2].split() == ["7", "4", "1010", "1010", "250000"]
    assert lines[-1] == "kernel time over the whole trace: 450.0 ms for 1000 frames = 450.0 µs a frame"


def test_timeline_window_drops_start_up_and_drain():
    from tools.cuda_timeline import summarize

    lines = summarize([e for e in TRACE if e["ph"] == "X"], trim=0.25).splitlines()
    assert lines[0] == "window 250.0 ms: the middle 50% of 500.0 ms of GPU activity"
    # 125..340 ms and 350..375 ms busy: 240 of 250 ms
    assert lines[1].startswith("card busy 96.0% of the window")


def test_timeline_helpers_and_a_trace_without_gpu_work(tmp_path):
    from tools.cuda_timeline import gaps, load, merged, record, short_name, summarize

    assert merged([(5, 6), (0, 2), (2, 3), (1, 2.5)]) == [(0, 3), (5, 6)]
    assert gaps([(0, 10), (30, 40), (45, 50)], least=20) == [20]
    assert short_name("void cudnn::kern<float, 3, true>::run<int>(Params<float>)") == "cudnn::kern::run"
    assert short_name("x" * 100, width=10) == "x" * 9 + "…"
    record(lambda: torch.ones(8) * 2, str(tmp_path / "cpu.json"))  # no CUDA here: host ops only
    assert summarize(load(str(tmp_path / "cpu.json"))) == "no GPU activity in this trace (no kernels, copies or memsets)\n"


def test_a_failed_gpu_bench_section_becomes_one_row_and_the_bench_goes_on(capsys):
    from bench.gpu import failed

    rows, logged = [], []
    try:
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be ...")
    except RuntimeError as exc:
        failed(rows, logged.append, "tensorize --mode gpu", exc)
    want = ("tensorize --mode gpu", "-", "failed: RuntimeError: CUDA error: an illegal memory access was encountered", "-", "-")
    assert rows == [want] and logged == [want]
    assert "Traceback" in capsys.readouterr().err


def test_bench_results_are_records_and_the_doc_shows_the_latest_per_machine(tmp_path):
    from bench import results

    path, doc = tmp_path / "r.jsonl", tmp_path / "b.md"
    old = results.records([("extract fp32", "base: 10 s", "2 s", "5.00×", "≥ 4.5×", "same")], suite="cpu",
                          machine="CPU: box A", versions="torch 1", method="best of 2")
    new = results.records([("extract fp32", "base: 10 s", "1 s", "10.00×", "≥ 4.5×", "same")], suite="cpu",
                          machine="CPU: box A", versions="torch 1", method="best of 2")
    gpu = results.records([("extract fp32, throughput", "alone: 100", "98", "0.98", "≥ 0.90")], suite="gpu",
                          machine="GPU: card B", versions="driver 1", method="throughput")
    results.append(old + gpu, path)
    results.append(new, path)
    assert [r["ratio_value"] for r in results.load(path)] == [5.0, 0.98, 10.0]
    assert results.load(path)[0]["commit"] and results.load(path)[0]["date"].endswith("UTC")
    text = results.write_report(path, doc).read_text()
    assert text.index("## GPU: card B") < text.index("## CPU: box A")  # cards first
    assert "| extract fp32 | base: 10 s | 1 s | 10.00× |" in text and "5.00×" not in text  # the latest record only


def test_the_results_file_renders_the_committed_doc():
    from bench import results

    assert results.render(results.load()) == results.DOC.read_text()
