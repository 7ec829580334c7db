"""A model's input geometry: resize (shorter edge, both edges, or longer edge) then the centre
crop, with the exact integer arithmetic of torchvision's ``Resize``/``CenterCrop`` and timm's
``ResizeKeepRatio``/``CenterCropOrPad`` (their eval transforms), so that the crop box is the
same pixel for pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Geometry:
    """``size`` (height, width) out; ``mode`` ``center`` (the shorter edge to ``scale``),
    ``squash`` (both edges to ``scale``) or ``border`` (the longer edge to ``scale``, padded);
    ``interpolation`` ``bilinear`` or ``bicubic``."""

    size: tuple[int, int]
    scale: tuple[int, int]
    mode: str = "center"
    interpolation: str = "bilinear"
    antialias: bool = True  # False: as torchvision's video presets resize
    views: int = 1  # 1: the centre crop; 3: three along the longer side; 10: TenCrop's ten

    def boxes(self, height: int, width: int) -> list[tuple[int, int]]:
        """(top, left) of each view's crop in a resized ``height`` x ``width`` frame, in view
        order (:data:`VIEW_NAMES`); the views in :meth:`flipped` are then mirrored.

        3 (mmaction2's ``ThreeCrop``): along the longer side at 0, ``2 * step`` and ``step``
        (``step = (long - crop) // 2``: start, end, centre), centred across the shorter side.
        10 (torchvision's ``TenCrop``): ``five_crop`` (top-left, top-right, bottom-left,
        bottom-right, centre) of the frame, then of the mirrored frame (its top-left is the
        frame's top-right, mirrored)."""
        (ch, cw), centre = self.size, self.window(height, width)
        if self.views == 1:
            return [centre]
        if self.views == 3:
            if width >= height:
                step = (width - cw) // 2
                return [(centre[0], 0), (centre[0], 2 * step), (centre[0], step)]
            step = (height - ch) // 2
            return [(0, centre[1]), (2 * step, centre[1]), (step, centre[1])]
        bottom, right = height - ch, width - cw
        five = [(0, 0), (0, right), (bottom, 0), (bottom, right), centre]
        return five + [(top, right - left) for top, left in five]  # the mirrored frame's five, in the frame's coordinates

    def crop_inside(self) -> bool:
        """The one crop box lies inside every resized frame: the shorter edge (or both, or each
        edge's own target) is resized to at least the crop, and nothing is padded."""
        return self.views == 1 and self.mode != "border" and self.scale[0] >= self.size[0] and self.scale[1] >= self.size[1]

    def roi(self, resize_to, crop_at) -> tuple[np.ndarray, np.ndarray]:
        """The crop box of a frame resized to ``resize_to`` (height, width) at ``crop_at`` (top,
        left), relative to the frame: (start, end) as (y, x). Resizing only this region to
        :attr:`size` samples the frame where resizing it whole and then cropping does (the
        same scale, the same sample positions, the same filter)."""
        (rh, rw), (top, left), (ch, cw) = resize_to, crop_at, self.size
        if not (0 <= top <= rh - ch and 0 <= left <= rw - cw):
            raise ValueError(f"crop {ch}x{cw} at ({top}, {left}) is not inside the resized {rh}x{rw} frame")
        return (np.array([top / rh, left / rw], np.float32),
                np.array([(top + ch) / rh, (left + cw) / rw], np.float32))

    def flipped(self) -> range:
        """The views that are mirrored after their crop (TenCrop's last five)."""
        return range(5, 10) if self.views == 10 else range(0)


    def resized(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) a ``height`` x ``width`` frame is resized to."""
        th, tw = self.scale
        if self.mode == "squash":
            return th, tw
        if self.mode == "center" and th == tw:
            # torchvision Resize(int): the shorter edge to th, the longer int(th * long / short)
            if height <= width:
                return th, int(th * width / height)
            return int(th * height / width), th
        # timm ResizeKeepRatio: one ratio for both edges, the larger (border) or the smaller (center)
        ratio = max(height / th, width / tw) if self.mode == "border" else min(height / th, width / tw)
        return round(height / ratio), round(width / ratio)

    def window(self, height: int, width: int) -> tuple[int, int]:
        """(top, left) of the centre crop in a ``height`` x ``width`` frame; negative where the
        frame is smaller than the crop (that many pixels of padding), as torchvision's
        ``center_crop`` and timm's ``center_crop_or_pad`` place it."""
        return _offset(height, self.size[0]), _offset(width, self.size[1])


def _offset(image: int, crop: int) -> int:
    if crop > image:
        return -((crop - image) // 2)
    return int(round((image - crop) / 2.0))


def stored_window(top: int, left: int, crop: tuple[int, int], shown: tuple[int, int], rotation: int) -> tuple[int, int]:
    """The crop's (top, left) in the stored frame, for a crop placed at (top, left) of the
    frame as shown (``shown`` = its height, width) after a ``rotation`` (degrees counter-
    clockwise, ``torch.rot90`` with k = rotation // 90)."""
    ch, cw = crop
    hd, wd = shown
    k = (rotation // 90) % 4
    if k == 0:
        return top, left
    if k == 1:  # shown[i, j] = stored[j, W - 1 - i], stored W = shown height
        return left, hd - top - ch
    if k == 2:
        return hd - top - ch, wd - left - cw
    return wd - left - cw, top  # k == 3: shown[i, j] = stored[H - 1 - j, i], stored H = shown width


VIEWS = (1, 3, 10)
VIEW_NAMES = {
    1: ["centre"],
    3: ["start", "end", "centre"],
    10: ["top_left", "top_right", "bottom_left", "bottom_right", "centre", "flipped_top_left", "flipped_top_right",
         "flipped_bottom_left", "flipped_bottom_right", "flipped_centre"],
}
