"""``EnhancedFeatureExtractor``: the original scripts' Python API, on top of vcp extract.

    from vcp import EnhancedFeatureExtractor
    fx = EnhancedFeatureExtractor("processed", "features", backbone="efficientnet_v2_s",
                                  device="cuda", multi_scale=True, weights="DEFAULT")
    fx.extract_all_splits(batch_size=24)   # train, val, test in turn
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

from vcp.common.devices import cuda_available, slow_precision_warning
from vcp.common.progress import console
from vcp.stages.encoder import FrameEncoder, load_backbone
from vcp.stages.extract import PtSource
from vcp.stages.multiscale import DEFAULT_SCALES
from vcp.stages.settings import ExtractConfig
from vcp.stages.sources import extract_split_of
from vcp.store.pt_reader import discover_processed


class EnhancedFeatureExtractor:
    SPLITS = ("train", "val", "test")

    def __init__(
        self,
        data_dir,
        output_dir,
        backbone: str = "efficientnet_v2_s",
        device: str = "cuda",
        multi_scale: bool = True,
        weights: str | None = "DEFAULT",
        *,
        scales=DEFAULT_SCALES,
        precision: str = "fp32",
        overwrite: bool = False,
        quiet: bool = False,
    ):
        if device.startswith("cuda") and not cuda_available():
            warnings.warn("CUDA is not available: EnhancedFeatureExtractor falls back to the CPU", stacklevel=2)
            device = "cpu"
        slow = slow_precision_warning(precision, device)
        if slow:
            warnings.warn(slow, stacklevel=2)
        self.data_dir, self.output_dir = Path(data_dir), Path(output_dir)
        self.config = ExtractConfig(
            backbone=backbone, weights=weights, device=device, multi_scale=multi_scale,
            scales=tuple(scales), precision=precision, overwrite=overwrite,
        )
        self.model = load_backbone(self.config)
        self.feature_dim = self.model.feature_dim
        self.console = console(stderr=True, quiet=quiet)
        self._encoders: dict[int | None, FrameEncoder] = {}  # one per batch size asked for, each built with its config

    def extract_features_from_split(self, split: str, batch_size: int | None = None) -> Path:
        """Write ``<output_dir>/<split>_features[_multiscale].h5``; returns its path."""
        config = replace(self.config, batch_size=batch_size)
        if batch_size not in self._encoders:
            self._encoders[batch_size] = FrameEncoder(self.model, config)
        result = extract_split_of(PtSource(self.data_dir, config, [split]), split, self.output_dir, config,
                                  self._encoders[batch_size], console=self.console)
        return result.output

    def extract_all_splits(self, batch_size: int | None = None) -> dict[str, Path]:
        """train, val and test in turn (those that exist)."""
        found = discover_processed(self.data_dir)
        outputs = {}
        for split in self.SPLITS:
            if split not in found:
                warnings.warn(f"no processed data for split {split!r} under {self.data_dir}", stacklevel=2)
                continue
            outputs[split] = self.extract_features_from_split(split, batch_size=batch_size)
        return outputs
