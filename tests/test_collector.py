"""The ``vcp`` process collects no cyclic garbage while it starts up, and as usual once the work
begins; the Python API never touches the collector."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap

from rich.console import Console

from vcp.common import collector
from vcp.common.progress import make_progress
from vcp.inputs.synth import write_video

PROBE = textwrap.dedent("""
    import gc, json, os, sys
    seen = {"before": [0, 0, 0], "startup": [0, 0, 0], "work": [0, 0, 0]}
    phase = ["before"]
    gc.callbacks.append(lambda p, info: p == "stop" and seen[phase[0]].__setitem__(info["generation"], seen[phase[0]][info["generation"]] + 1))
    from vcp.common import collector
    off = []  # the collector turned off at start-up
    def entering(name, real):
        def enter():
            phase[0] = name
            real()
            off.append(name == "startup" and not gc.isenabled())
        return enter
    collector.pause, collector.resume = entering("startup", collector.pause), entering("work", collector.resume)
    sys.argv = ["vcp", *sys.argv[1:]]
    real_exit = os._exit
    def report(code):
        print(json.dumps({"code": code, "enabled": gc.isenabled(), "frozen": gc.get_freeze_count(), "phase": phase[0], "off": off,
                          **seen}), file=sys.stderr, flush=True)
        real_exit(0)
    os._exit = report
    import vcp.cli
    vcp.cli.main()
""")


def _run(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300)
    return json.loads(out.stderr.strip().splitlines()[-1])


def test_the_vcp_process_starts_up_without_collecting_then_collects(tmp_path):
    write_video(tmp_path / "raw/train/a/b/v.mp4", num_frames=8, codec="h264", width=64, height=48)
    run = _run("tensorize", str(tmp_path / "raw"), str(tmp_path / "out"), "--frames", "4", "--size", "32", "--mode", "cpu")
    assert run["code"] == 0 and (tmp_path / "out/train/a/b/processed_data.pt").is_file()
    assert run["off"][0] is True and run["startup"] == [0, 0, 0]  # torch, DALI and the rest imported: not one collection
    assert run["phase"] == "work" and run["enabled"] and run["frozen"] > 100_000  # torch's objects, never scanned again


def test_every_other_command_collects_from_the_start(tmp_path):
    run = _run("backbones")
    assert run["code"] == 0 and run["phase"] == "work" and run["enabled"] and run["off"][0] is True


def test_the_python_api_keeps_its_collector_as_it_set_it():
    frozen = gc.get_freeze_count()
    make_progress(Console(quiet=True), "videos")  # where the vcp command resumes: nothing paused here
    collector.resume()
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    gc.disable()
    try:
        collector.resume()
        assert not gc.isenabled()  # a program's own choice is left alone
    finally:
        gc.enable()
