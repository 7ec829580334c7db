import pytest

from vcp.common.devices import UsageError
from vcp.stages.shard import (
    Shard,
    assign_balanced,
    contiguous_ranges,
    parse_shard,
    resolve_shard,
    shard_from_env,
)


def test_parse_and_env():
    assert parse_shard("1/4") == Shard(1, 4, launcher="manual")
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(UsageError, match="--shard"):
            parse_shard(bad)
    assert shard_from_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == Shard(3, 8, 1, "torchrun")
    assert shard_from_env({"SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_LOCALID": "2"}) == Shard(5, 16, 2, "slurm")
    assert shard_from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert resolve_shard(None, {}) == Shard()
    assert resolve_shard("0/2", {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == Shard(0, 2, 1, "manual")


def test_assign_balanced_worked_example_and_balance():
    assert assign_balanced([5, 1, 4, 2], 2) == [0, 0, 1, 1]
    weights = [(i * 7919) % 1000 + 1 for i in range(200)]
    ranks = assign_balanced(weights, 4)
    loads = [sum(w for w, r in zip(weights, ranks, strict=True) if r == k) for k in range(4)]
    assert max(loads) - min(loads) <= max(weights)
    assert assign_balanced(weights, 4) == ranks  # deterministic


def test_contiguous_ranges():
    assert contiguous_ranges([1] * 10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert contiguous_ranges([1, 1], 4) == [(0, 1), (1, 1), (1, 2), (2, 2)]  # more ranks than items
    assert contiguous_ranges([64] * 7 + [16] * 4, 2) == [(0, 4), (4, 11)]  # 256 frames each
