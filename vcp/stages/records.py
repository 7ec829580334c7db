"""What a source hands the sink for each input, in input order: a :class:`Clip` (frames on
their way to a row of the features file) or a :class:`Failed` input (no row)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from backbones.spec import InputSpec


@dataclass
class Clip:
    """One video on its way into the HDF5: ``group`` names what is rejected with it."""

    order: int  # row position in a single-process run
    frames: torch.Tensor | None  # [T, 3, H, W]; None when they come in ``chunks``
    stored: InputSpec
    label: int
    filename: str  # <category>/<subcategory>/<file>
    group: str
    fps: float | None = None  # the source video's, and the frames it was sampled at (when known)
    frame_indices: list[int] | None = None
    frame_times: list[float] | None = None
    path: str | None = None  # the manifest's path (or relative to RAW) of the source video
    segment: tuple | None = None  # [start, end) seconds it was sampled in, if given
    chunks: Iterator | None = None  # a clip backbone's windows [b, 3, window, H, W], a few at a time
    windows: np.ndarray | None = None  # [W, window] each window's source frame indices
    window_times: np.ndarray | None = None  # [W, 2] each window's [start, end) seconds
    short: bool = False  # shorter than one window: its one window repeats the last frame

    @property
    def count(self) -> int:
        """What the network runs over: frames, or windows."""
        return self.frames.shape[0] if self.frames is not None else len(self.windows)


@dataclass
class Failed:
    """An input that gives no row (a video that did not decode), in its place in the order."""

    order: int
    where: str
    reason: str
