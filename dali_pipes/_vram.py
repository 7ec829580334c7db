"""Batch sizing from free GPU memory.

Per video the GPU holds the decoded RGB frames, the float32 resized frames and the
float32 normalized clip, and DALI double-buffers its outputs; the estimate uses the
largest probed resolution of the batch. The batch is what fits in ``fraction`` of free
VRAM, clamped to ``[1, cap]``.
"""

from __future__ import annotations

BYTES_FLOAT32 = 4


def bytes_per_video(*, frames: int, width: int, height: int, size: int) -> int:
    """Estimated device bytes one clip needs while it moves through the graph.

    Worked example: T=64, 1920x1080, S=256 -> decoded 64*1080*1920*3 = 398 MB,
    resized + normalized 2 * 64*3*256*256*4 = 101 MB; x2 buffering ~ 1.0 GB.
    """
    decoded = frames * width * height * 3
    resized = frames * 3 * size * size * BYTES_FLOAT32
    return 2 * (decoded + 2 * resized)


def batch_size_for(
    free_bytes: int,
    *,
    frames: int,
    width: int,
    height: int,
    size: int,
    cap: int = 4,
    fraction: float = 0.4,
) -> int:
    """Videos per batch that fit in ``fraction`` of ``free_bytes``, in ``[1, cap]``."""
    per_video = bytes_per_video(frames=frames, width=width, height=height, size=size)
    return max(1, min(cap, int(free_bytes * fraction) // per_video))


def free_vram_bytes(device_id: int = 0) -> int:
    """Free memory on CUDA device ``device_id`` (via torch)."""
    import torch

    free, _total = torch.cuda.mem_get_info(device_id)
    return int(free)
