"""The three-scale temporal pass (docs/design.md, "Three-scale pass" - contract).

Per video of T frames, for each scale s: ``idx = arange(T)`` when s == 1, else
``L = max(int(T*s), 5)`` and ``idx = np.linspace(0, T-1, L).astype(int)``; the backbone
runs per frame; every scale's ``[L, D]`` is zero-padded to the longest and the scales are
averaged. T=64 with scales (1.0, 0.85, 1.15) gives 64, 54 and 73 rows -> 73.

The backbone is per-frame, so every index of every scale is one of the T frames: the
frames are run once and the scales are built by indexing the features (64 instead of
64+54+73 = 191 backbone calls), with the same numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

DEFAULT_SCALES = (1.0, 0.85, 1.15)


def scale_indices(num_frames: int, scale: float) -> np.ndarray:
    """Frame indices of one scale. Worked example: T=64, s=0.85 -> L=54 indices in [0, 63]."""
    if scale == 1.0:
        return np.arange(num_frames)
    length = max(int(num_frames * scale), 5)
    return np.linspace(0, num_frames - 1, length).astype(int)


def output_rows(num_frames: int, scales: Sequence[float]) -> int:
    """Rows of the combined result: the longest scale (T=64 -> 73)."""
    return max(len(scale_indices(num_frames, s)) for s in scales)


def video_rows(frame_features: torch.Tensor, *, scales: Sequence[float], multi_scale: bool, views: int = 1,
               reduce: str | None = None) -> torch.Tensor:
    """One video's rows from its per-frame (or per-window) features ``[T, D]``: the
    three-scale rule (:func:`combine_scales`) or, without it, the frames' own rows. With
    several views the features are ``[T * V, D]`` frame after frame, the rule applies to
    each view, and the rows are ``[rows, V, D]`` (``reduce="mean"``: their mean ``[rows, D]``)."""
    if views == 1:
        return combine_scales(frame_features, scales) if multi_scale else frame_features
    d = frame_features.shape[-1]
    flat = frame_features.reshape(-1, views * d)  # each view's columns side by side: one rule for all
    rows = (combine_scales(flat, scales) if multi_scale else flat).reshape(-1, views, d)
    return rows.mean(dim=1) if reduce == "mean" else rows


def combine_scales(frame_features: torch.Tensor, scales: Sequence[float]) -> torch.Tensor:
    """``[T, D]`` per-frame features -> ``[rows, D]``: index, zero-pad, average."""
    t, d = frame_features.shape
    rows = output_rows(t, scales)
    out = torch.zeros(rows, d, dtype=torch.float32, device=frame_features.device)
    for idx in _device_indices(t, tuple(scales), frame_features.device):
        out[: len(idx)] += frame_features[idx].float()
    return out / len(scales)


@functools.lru_cache(maxsize=64)
def _device_indices(num_frames: int, scales: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Each scale's indices, made once per (T, scales, device). On CUDA, building them for
    every video was a copy from pageable host memory: it waited for every forward already
    queued, so the host could never run ahead of the card (measured on an H100)."""
    with torch.inference_mode(False):  # plain tensors: callers may track gradients
        return tuple(torch.as_tensor(scale_indices(num_frames, s), device=device) for s in scales)
