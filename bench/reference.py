"""A plain, literal implementation of the original script's three-scale loop.

It resamples the clip per scale and runs the backbone on every resampled frame (64 + 54 +
73 frames for T=64), NCHW, fp32, ``torch.no_grad``, then zero-pads and averages. Do not
optimize: it is the reference the fast path is tested against (tests/test_extract.py) and
benchmarked with (``make bench``, ``make bench-gpu``). It lives beside those users, outside
the installed packages, because no vcp command runs it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def original_multiscale_features(model, video: torch.Tensor, *, scales=(1.0, 0.85, 1.15), batch_size=24, device="cpu"):
    """``video`` ``[T, 3, H, W]`` -> ``[max_L, D]`` exactly as the original script computed it."""
    T = video.shape[0]
    per_scale = []
    for scale in scales:
        if scale != 1.0:
            L = max(int(T * scale), 5)
            idx = np.linspace(0, T - 1, L).astype(int)
            clip = video[idx]
        else:
            clip = video
        feats = []
        for i in range(0, len(clip), batch_size):
            with torch.no_grad():
                feats.append(model(clip[i : i + batch_size].to(device)).cpu())
        per_scale.append(torch.cat(feats))
    longest = max(f.shape[0] for f in per_scale)
    padded = [F.pad(f, (0, 0, 0, longest - f.shape[0])) for f in per_scale]
    return torch.stack(padded).mean(dim=0)
