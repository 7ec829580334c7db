"""Frame-index samplers: pure functions ``(num_frames, fps, ...) -> np.ndarray``.

``num_frames`` (n) is the number of frames that actually decode, never the count a
container header claims. Every sampler returns ``frames`` (T) int64 indices in
``[0, n)``; videos shorter than T repeat frames by the same formulas.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

STRATEGIES = ("uniform", "center", "random", "segment")


def uniform(num_frames: int, frames: int) -> np.ndarray:
    """``np.linspace(0, n-1, T).astype(int)``.

    Worked example: n=10, T=4 -> linspace(0, 9, 4) = [0, 3, 6, 9].
    n=3, T=5 -> [0, 0, 1, 1, 2] (short videos repeat frames).
    """
    _check(num_frames, frames)
    return np.linspace(0, num_frames - 1, frames).astype(np.int64)


def window_length(num_frames: int, fps: float, clip_duration: float) -> int:
    """``w = min(n, round(clip_duration * fps))``, at least 1."""
    return max(1, min(num_frames, int(round(clip_duration * fps))))


def center(num_frames: int, fps: float, frames: int, clip_duration: float) -> np.ndarray:
    """The middle ``clip_duration`` seconds, sampled uniformly.

    ``w = min(n, round(d*fps))``, ``start = (n-w)//2``,
    ``start + linspace(0, w-1, T).astype(int)``.
    Worked example: n=300, fps=25, d=4 -> w=100, start=100, T=3 -> [100, 149, 199].
    """
    _check(num_frames, frames)
    w = window_length(num_frames, fps, clip_duration)
    start = (num_frames - w) // 2
    return start + np.linspace(0, w - 1, frames).astype(np.int64)


def random_window(
    num_frames: int, fps: float, frames: int, clip_duration: float, rng: np.random.Generator
) -> np.ndarray:
    """As :func:`center` with ``start`` drawn uniformly in ``[0, n-w]`` from ``rng``."""
    _check(num_frames, frames)
    w = window_length(num_frames, fps, clip_duration)
    start = int(rng.integers(0, num_frames - w + 1))
    return start + np.linspace(0, w - 1, frames).astype(np.int64)


def segment(num_frames: int, frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """TSN sampling: T equal segments of ``[0, n)``; the middle frame of each.

    Segment k covers ``[k*n/T, (k+1)*n/T)``; its middle is ``floor((2k+1)*n / (2T))``.
    With ``rng`` (``--augment``) a uniformly random frame of each segment instead:
    ``rng.integers(floor(k*n/T), max(floor((k+1)*n/T), floor(k*n/T)+1))``.
    Worked example: n=10, T=4 -> middles [1, 3, 6, 8].
    """
    _check(num_frames, frames)
    k = np.arange(frames, dtype=np.int64)
    if rng is None:
        return ((2 * k + 1) * num_frames) // (2 * frames)
    lo = (k * num_frames) // frames
    hi = np.maximum(((k + 1) * num_frames) // frames, lo + 1)
    return rng.integers(lo, hi).astype(np.int64)


def rng_for(seed: int, relpath: str) -> np.random.Generator:
    """A generator seeded by ``seed`` and the file's relative path (stable across runs)."""
    digest = hashlib.sha256(relpath.encode("utf-8")).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


@dataclass(frozen=True)
class SamplingSpec:
    """How one subcategory's videos are sampled."""

    strategy: str = "uniform"
    frames: int = 64
    clip_duration: float = 10.0
    seed: int = 0
    augment: bool = False

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"Invalid sampling strategy ({self.strategy!r}). "
                f"Supported values are: {', '.join(STRATEGIES)}."
            )
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.clip_duration <= 0:
            raise ValueError(f"clip_duration must be > 0 seconds, got {self.clip_duration}")

    def plan(self, num_frames: int, fps: float, relpath: str) -> tuple[np.ndarray, bool]:
        """``(indices, flip)`` for one video.

        Draw order from the per-file generator (part of the reproducibility contract):
        the strategy's draws first (``random`` start or ``segment`` jitter), then the flip.
        """
        rng = rng_for(self.seed, relpath)
        if self.strategy == "uniform":
            idx = uniform(num_frames, self.frames)
        elif self.strategy == "center":
            idx = center(num_frames, fps, self.frames, self.clip_duration)
        elif self.strategy == "random":
            idx = random_window(num_frames, fps, self.frames, self.clip_duration, rng)
        else:
            idx = segment(num_frames, self.frames, rng if self.augment else None)
        flip = bool(self.augment and rng.random() < 0.5)
        return idx, flip


def _check(num_frames: int, frames: int) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
