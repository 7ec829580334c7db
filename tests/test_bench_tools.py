"""The GPU bench's tools that run here too: the no-CUDA exit, and the py-spy summary."""

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
