"""What a tensorize or ``--from-videos`` run is asked to do: :class:`TensorizeConfig` and its checks.

Shared by ``vcp tensorize`` and ``vcp extract --from-videos`` (the same sampling and
decode settings), so neither stage imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from backbones.spec import IMAGENET, InputSpec
from dali_pipes import STRATEGIES, SamplingSpec

from .devices import UsageError
from .layout import Group, RawTree
from .shard import Shard


@dataclass(frozen=True)
class TensorizeConfig:
    frames: int = 64
    size: int = 256
    clip_duration: float = 10.0
    strategy: str = "uniform"
    strategy_for: dict[str, str] = field(default_factory=dict)  # "sub" or "category/sub"
    augment: bool = False
    seed: int = 0
    max_batch: int = 4
    mode: str = "cpu"  # resolved: "gpu" or "cpu"
    device_id: int = 0
    overwrite: bool = False
    normalization: InputSpec = IMAGENET
    cpu_decoder: str = "auto"
    storage: str = "float32"  # the contract; float16 / uint8 are opt-in
    shard: Shard = Shard()
    pipelines: int | None = None  # None: one per NVDEC engine on a GPU, 1 on the CPU
    prefetch: int | None = None  # batches decoded ahead; None: see prefetch_depth()

    def prefetch_depth(self, default: int) -> int:
        """Decoded batches kept ahead of the consumer: ``--prefetch``, else ``default``.

        The defaults: 1 in tensorize (the consumer is the writer, mostly I/O); in the
        streaming path 2 when the backbone runs on CUDA and 0 (in line) when it runs on
        the CPU, where a decode thread and the backbone's OpenMP threads would fight for
        the same cores (measured slower there: docs/benchmarks.md).
        """
        return default if self.prefetch is None else self.prefetch

    @property
    def stored_normalization(self) -> InputSpec:
        """What the stored values mean: uint8 keeps raw 0..255 pixels (mean 0, std 1/255)."""
        if self.storage == "uint8":
            return InputSpec(mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))
        return self.normalization

    def strategy_of(self, group: Group) -> str:
        key = f"{group.category}/{group.subcategory}"
        return self.strategy_for.get(key, self.strategy_for.get(group.subcategory, self.strategy))

    def sampling(self, group: Group) -> SamplingSpec:
        return SamplingSpec(
            strategy=self.strategy_of(group),
            frames=self.frames,
            clip_duration=self.clip_duration,
            seed=self.seed,
            augment=self.augment,
        )


STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "uint8": torch.uint8}


def validate_strategy_rules(config: TensorizeConfig, tree: RawTree) -> None:
    """Every ``--strategy-for`` rule must name a subcategory of the tree (a typo would
    silently change the sampling)."""
    keys = {g.subcategory for g in tree.groups} | {f"{g.category}/{g.subcategory}" for g in tree.groups}
    unknown = [k for k in config.strategy_for if k not in keys]
    if unknown:
        existing = sorted({f"{g.category}/{g.subcategory}" for g in tree.groups})
        raise UsageError(
            f"--strategy-for {', '.join(unknown)}: no such subcategory in {tree.root}; "
            f"the subcategories are: {', '.join(existing)}"
        )


def validate_strategies(config: TensorizeConfig) -> None:
    if config.storage not in STORAGE_DTYPES:
        raise UsageError(f"Invalid storage ({config.storage!r}). Supported values are: float32, float16, uint8.")
    for name in [config.strategy, *config.strategy_for.values()]:
        if name not in STRATEGIES:
            raise UsageError(
                f"Invalid sampling strategy ({name!r}). Supported values are: {', '.join(STRATEGIES)}."
            )
