"""What a source hands the sink for each input, in input order: a :class:`Clip` (frames on
their way to a row of the features file) or a :class:`Failed` input (no row)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backbones.spec import InputSpec


@dataclass
class Clip:
    """One video on its way into the HDF5: ``group`` names what is rejected with it."""

    order: int  # row position in a single-process run
    frames: torch.Tensor  # [T, 3, H, W]
    stored: InputSpec
    label: int
    filename: str  # <category>/<subcategory>/<file>
    group: str
    fps: float | None = None  # the source video's, and the frames it was sampled at (when known)
    frame_indices: list[int] | None = None
    frame_times: list[float] | None = None
    path: str | None = None  # the manifest's path (or relative to RAW) of the source video
    segment: tuple | None = None  # [start, end) seconds it was sampled in, if given


@dataclass
class Failed:
    """An input that gives no row (a video that did not decode), in its place in the order."""

    order: int
    where: str
    reason: str
