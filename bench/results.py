"""Benchmark results: raw records in ``bench/results.jsonl``, the doc made from them.

``make bench`` and ``make bench-gpu`` append one JSON line per measured row (the machine,
package versions, the commit measured, the date, every figure as printed) and regenerate
``docs/benchmarks.md``; ``make bench-report`` (``python -m bench.results``) only
regenerates it. The doc shows, per machine, the latest record of each measure.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.jsonl"
DOC = HERE.parent / "docs" / "benchmarks.md"
COLUMNS = ("measure", "baseline", "vcp", "ratio", "goal", "agreement")


def commit() -> str:
    """The commit measured (``-dirty`` when the working tree differs from it)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def ratio_of(text: str) -> float | None:
    """``"**0.98**"`` / ``"5.06×"`` / ``"1.07"`` -> the number, else None."""
    m = re.search(r"-?\d+(\.\d+)?", str(text).replace("*", ""))
    return float(m.group(0)) if m else None


def records(rows, *, suite: str, machine: str, versions: str, method: str) -> list[dict]:
    """One record per printed row (``rows``: tuples in :data:`COLUMNS` order, shorter ones padded)."""
    stamp, measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), commit()
    out = []
    for row in rows:
        fields = dict(zip(COLUMNS, [str(x) for x in row], strict=False))
        out.append({**{c: "" for c in COLUMNS}, **fields, "ratio_value": ratio_of(fields.get("ratio", "")), "suite": suite,
                    "machine": machine, "versions": versions, "method": method, "date": stamp, "commit": measured})
    return out


def append(new: list[dict], path: Path = RESULTS) -> None:
    with open(path, "a") as fh:
        for record in new:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def load(path: Path = RESULTS) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


INTRO = """# Benchmarks

Every number here was measured by `make bench` (CPU) or `make bench-gpu` (a CUDA card),
each baseline run side by side with vcp in the same process tree, on the same data, on the
machine named above its table. The raw records, one per row and run, are in
`bench/results.jsonl` (machine, versions, date, commit, every figure); this page shows the
latest record of each measure per machine and is regenerated from them (`make
bench-report`). Weights are random (speed does not depend on their values).

How the rows are measured:

- **tensorize (CPU)**: 8 synthetic videos (720p/480p/360p; H.264, VP9, HEVC, MJPEG) to T=64
  at 256². Baseline: PyAV decodes every frame, the uniform indices are picked, torch
  resizes (antialiased bilinear) and normalizes, one `torch.save`. Best of 4, alternating.
- **extract (CPU)**: 2 videos × 64 frames at 256², efficientnet_v2_s. Baseline: the original
  three-scale loop (`bench/reference.py`: 64 + 54 + 73 frames per video, fp32, NCHW, batch
  24). Best of 2 after a warm-up.
- **streaming**: `vcp extract --from-videos` against `vcp tensorize` then `vcp extract` on the
  same videos, in one process and as commands; features compared.
- **peak RSS**: tensorize of one subcategory of 10 and of 100 videos; the ratio is the
  growth (flat memory: about 1).
- **writer**: tensorize's `.pt` writer fed 50 MB clips at a decoder's pace, commit included,
  with and without the disk's write-back started per clip.
- **GPU rows**: 32 synthetic 720p H.264 videos of 300 frames, T=64 at 256². Throughput is
  the marginal rate between the data and the same data three times over (start-up apart).
  Baselines on the same card in the same run: the backbone alone on the same frames
  (extract), DALI alone (decode, `--from-videos`), min(DALI alone, the disk's write rate)
  (GPU tensorize), the original loop (fp32, batch 24).
"""

DEFAULTS = """## Numbers behind the defaults in the code

| default (where) | measured |
|---|---|
| `--batch-size` 8 frames on the CPU (`vcp/stages/settings.py` `AUTO_BATCH`) | efficientnet_v2_s at 256², 2-core AMD EPYC (2026-11-25): 47 / 44 / 40 / 30 / 25 frames/s at batch 4 / 8 / 16 / 32 / 64 (fp32) |
| `--batch-size` 256 frames on CUDA | H200, the network alone: 6,471 (fp32) / 9,575 (bf16) frames/s at 256 against 5,340 / 4,630 at 64 |
| `--prefetch` 0 for `--from-videos` on the CPU | 2 cores: a decode thread beside the backbone was slower (depth 2: 19.6 / 19.7 s, depth 0: 18.1 / 15.3 s) |
| reused PyAV decode buffers (`dali_pipes/_buffers.py` `FramePool`) | a 720p clip: 0.085 s into fresh arrays, 0.043 s into a reused one (2-core box) |
| `--pipelines` capped at 4 (`MAX_AUTO_PIPELINES`) | H200, 7 NVDECs: DALI alone 23.6–25.2 videos/s with 4 pipelines, 21.0–22.2 with 7; H100: 28.1 with 4, 26.4 with 7 |
| all cores as DALI threads per pipeline | H100, DALI alone with 4 pipelines: 29.4 / 28.1 / 24.1 videos/s with 16 / 4 / 2 threads each |
| 3 chunks a pipeline ahead, the next chunk to the free pipeline (`WINDOW_PER_PIPELINE`) | H100, loader alone with 4 pipelines: 16.1–16.4 videos/s round-robin with one batch of slack, 24.9 with the free pipeline taking the next chunk |
| `.pt` read with `pread` into pinned memory on CUDA (`ClipReader`) | H200: the memory map capped extract near 3,200 frames/s; 4,966 fp32 with `pread` |
| memory follows the output (`dali_pipes/_plan.py` `CLIP_BYTES`, `MAX_PIXELS`) | one 8K H.264 clip, T=64, 2-core box (2026-12-03): peak RSS 7.0 GiB before, 1.17 GiB with frames scaled as they decode |
"""


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(all_records: list[dict]) -> str:
    """The doc: per machine (GPUs first), the latest record of each measure."""
    latest: dict[str, dict[str, dict]] = {}
    for record in all_records:  # later lines win
        latest.setdefault(record["machine"], {})[record["measure"]] = record
    order = sorted(latest, key=lambda m: (not any(r["suite"] == "gpu" for r in latest[m].values()), m))
    parts = [INTRO]
    for machine in order:
        rows = latest[machine]
        first = next(iter(rows.values()))
        parts.append(f"\n## {machine}\n\n{first['versions']}. {first['method']}\n\n"
                     "| measure | baseline | vcp | vcp / baseline | goal | date | commit |\n|---|---|---|---|---|---|---|\n")
        for record in rows.values():
            parts.append("| " + " | ".join(_cell(record[c]) for c in ("measure", "baseline", "vcp", "ratio", "goal", "date", "commit"))
                         + " |\n")
    parts.append("\n" + DEFAULTS)
    return "".join(parts)


def write_report(path: Path = RESULTS, out: Path = DOC) -> Path:
    out.write_text(render(load(path)))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Regenerate docs/benchmarks.md from bench/results.jsonl.")
    ap.add_argument("--out", default=str(DOC))
    args = ap.parse_args(argv)
    print(f"wrote {write_report(out=Path(args.out))}")


if __name__ == "__main__":
    main()
