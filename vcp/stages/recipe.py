"""A model's input recipe applied to stored frames on the device (``vcp extract`` from ``.pt``):
resize and centre-crop (or pad) to the model's size, in one batched resample per clip.

Frames stay in their stored normalization here: resampling is linear with weights summing to
one, so it commutes with the affine change to the model's mean/std that follows
(:meth:`FrameEncoder._renormalize`); padding is filled with what the model's transform pads
with (black; its mean for ``border``), expressed in the stored values.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from backbones.spec import InputSpec
from dali_pipes import Geometry, views_frame_major


def geometry_of(spec: InputSpec, views: int = 1) -> Geometry:
    return Geometry(size=tuple(spec.size), scale=tuple(spec.scale_size), mode=spec.resize_mode, interpolation=spec.interpolation,
                    antialias=spec.antialias, views=views)


class StoredRecipe:
    """Stored ``[T, 3, H, W]`` clips -> the model's ``[T, 3, h, w]`` (still in the stored
    normalization). Says once when it has to upsample (the frames were stored smaller than
    the model resizes to)."""

    def __init__(self, target: InputSpec, name: str, views: int = 1):
        self.target, self.name = target, name
        self.geometry = geometry_of(target, views)
        self._warned = False

    def __call__(self, frames: torch.Tensor, stored: InputSpec) -> torch.Tensor:
        h, w = frames.shape[-2:]
        rh, rw = self.geometry.resized(h, w)
        if (rh, rw) != (h, w):
            if (rh > h or rw > w) and not self._warned:
                self._warned = True
                print(f"vcp: warning: frames stored at {w}x{h} are upsampled to {rw}x{rh} for {self.name}'s "
                      f"{self.target.size[1]}x{self.target.size[0]} input: tensorize with --size {max(self.geometry.scale)} "
                      "(or extract --from-videos) to keep the detail", file=sys.stderr, flush=True)
            frames = F.interpolate(frames, size=(rh, rw), mode=self.geometry.interpolation, antialias=True,
                                   align_corners=False)
        views = [self._crop(frames, stored, rh, rw, top, left) for top, left in self.geometry.boxes(rh, rw)]
        if len(views) == 1:
            return views[0]
        return views_frame_major(torch.cat(views), len(views), self.geometry.flipped())  # [T * V, 3, h, w]

    def _crop(self, frames: torch.Tensor, stored: InputSpec, rh: int, rw: int, top: int, left: int) -> torch.Tensor:
        ch, cw = self.geometry.size
        if top >= 0 and left >= 0:
            return frames[..., top:top + ch, left:left + cw]
        pixel = self.target.mean if self.geometry.mode == "border" else (0.0, 0.0, 0.0)  # what the model's transform pads with
        fill = torch.tensor([(p - m) / s for p, m, s in zip(pixel, stored.mean, stored.std, strict=True)],
                            dtype=frames.dtype, device=frames.device)
        out = fill.view(1, 3, 1, 1).expand(frames.shape[0], 3, ch, cw).clone()
        y0, x0 = max(top, 0), max(left, 0)  # source rows/columns taken
        dy, dx = max(-top, 0), max(-left, 0)  # where they go
        hh, ww = min(rh - y0, ch - dy), min(rw - x0, cw - dx)
        out[..., dy:dy + hh, dx:dx + ww] = frames[..., y0:y0 + hh, x0:x0 + ww]
        return out
