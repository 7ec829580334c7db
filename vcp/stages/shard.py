"""Sharding both stages across processes: ``--shard INDEX/COUNT``, torchrun or Slurm.

Each rank takes a deterministic, balanced slice of the videos and writes its own part
files next to where the single-process output would go; ``vcp merge`` (run by rank 0 at
the end of a torchrun job, or by hand) joins them into the contract's files.

Who writes what::

    rank r of n                       merge (rank 0 / `vcp merge DIR`)
    OUT/<s>/<c>/<sub>/.parts/         OUT/<s>/<c>/<sub>/processed_data.pt
        part-0000r-of-0000n.pt   -->                    /metadata.json
        part-0000r-of-0000n.json
    FEATURES/.parts/                  FEATURES/<s>_features_multiscale.h5
        <s>_features_multiscale.h5.part-0000r-of-0000n.h5  -->
"""

from __future__ import annotations

import heapq
import os
import re
from dataclasses import dataclass

from vcp.common.errors import UsageError
from vcp.store.contract import part_tag


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1
    local_rank: int = 0
    launcher: str = "single"  # single | manual | torchrun | slurm

    @property
    def active(self) -> bool:
        return self.count > 1

    @property
    def tag(self) -> str:
        return part_tag(self.index, self.count)


def parse_shard(text: str) -> Shard:
    """``"1/4"`` -> Shard(1, 4)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise UsageError(f"--shard expects INDEX/COUNT (e.g. 0/4), got {text!r}")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {text}: INDEX must be in [0, COUNT) and COUNT >= 1")
    return Shard(index, count, launcher="manual")


def shard_from_env(env=None) -> Shard | None:
    """torchrun (RANK/WORLD_SIZE/LOCAL_RANK) or srun (SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID)."""
    env = os.environ if env is None else env
    for launcher, (rank, world, local) in {
        "torchrun": ("RANK", "WORLD_SIZE", "LOCAL_RANK"),
        "slurm": ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
    }.items():
        if rank in env and world in env:
            count = int(env[world])
            if count > 1:
                return Shard(int(env[rank]), count, int(env.get(local, 0)), launcher)
    return None


def resolve_shard(option: str | None, env=None) -> Shard:
    """``--shard`` wins; else the launcher's environment; else a single process."""
    if option:
        shard = parse_shard(option)
        found = shard_from_env(env)
        return Shard(shard.index, shard.count, found.local_rank if found else 0, "manual")
    return shard_from_env(env) or Shard()


def assign_balanced(weights: list[int], count: int) -> list[int]:
    """Rank of each item: largest first to the least-loaded rank (ties: lowest rank).

    Deterministic for the same inputs. Worked example: weights [5, 1, 4, 2], 2 ranks ->
    5->r0, 4->r1, 2->r1, 1->r0: loads 6 / 6, result [0, 0, 1, 1].
    """
    order = sorted(range(len(weights)), key=lambda i: (-weights[i], i))
    heap = [(0, r) for r in range(count)]
    ranks = [0] * len(weights)
    for i in order:
        load, r = heapq.heappop(heap)
        ranks[i] = r
        heapq.heappush(heap, (load + weights[i], r))
    return ranks


def contiguous_ranges(weights: list[int], count: int) -> list[tuple[int, int]]:
    """Split items into ``count`` consecutive ranges of about equal total weight.

    Worked example: weights [1]*10, 3 ranks -> [(0, 3), (3, 7), (7, 10)].
    """
    total = sum(weights)
    bounds, acc, start = [], 0, 0
    for r in range(count - 1):
        target = total * (r + 1) / count
        end = start
        while end < len(weights) and acc + weights[end] / 2 <= target:
            acc += weights[end]
            end += 1
        bounds.append((start, end))
        start = end
    bounds.append((start, len(weights)))
    return bounds


def distributed_barrier() -> bool:
    """Wait for every rank of a torchrun job (gloo, CPU); False when not under torchrun."""
    if not all(k in os.environ for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")):
        return False
    import datetime

    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(hours=24))
    dist.barrier()
    return True
