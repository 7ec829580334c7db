"""Colour: the YCbCr -> RGB conversion a stream's tags ask for, and the correction for
DALI's decoders, which convert every stream with BT.601.

Players (and PyAV) convert with the matrix the stream is tagged with (BT.709 for nearly
all HD video: phones, cameras, YouTube) and its range (limited 16-235 or full 0-255).
DALI 2.4's decoders take the range but not the matrix: NVDEC's output goes through DALI's
own kernel with BT.601 (limited, or JPEG's full-range BT.601 when the bitstream says full
range), the CPU decoder through swscale with BT.601. Both conversions are affine in
(Y, Cb, Cr), so the RGB the tags ask for is an affine function of the RGB DALI gave,
``M @ rgb + T`` (:func:`correction`), exact wherever DALI's output did not clip at 0 or
255 (only the most saturated colours do). It is applied to the finished clip
(:func:`correct_normalized`: resize is linear, so after it equals before, on fewer
pixels), only to clips that need it: a stream DALI already converts as tagged is untouched.
"""

from __future__ import annotations

import numpy as np

# (Kr, Kb) per FFmpeg colorspace name; untagged streams are BT.601, as FFmpeg converts them.
MATRICES: dict[str, tuple[float, float]] = {
    "bt709": (0.2126, 0.0722),
    "bt470bg": (0.299, 0.114),
    "smpte170m": (0.299, 0.114),
    "fcc": (0.30, 0.11),
    "smpte240m": (0.212, 0.087),
    "bt2020nc": (0.2627, 0.0593),
    "bt2020c": (0.2627, 0.0593),
}
BT601 = MATRICES["bt470bg"]
# AVColorSpace and AVColorRange values (libavutil/pixfmt.h) -> names
COLORSPACE_NAMES = {1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020nc", 10: "bt2020c"}
RANGE_NAMES = {1: "tv", 2: "pc"}

# What DALI's NVDEC kernel computes (dali/kernels/imgproc/color_manipulation/
# color_space_conversion_impl.h: itu_r_bt_601 and jpeg ycbcr_to_rgb), on 8-bit values.
_DALI_LIMITED = np.array([[1.164, 0.0, 1.596], [1.164, -0.392, -0.813], [1.164, 2.017, 0.0]])
_DALI_FULL = np.array([[1.0, 0.0, 1.402], [1.0, -0.34413629, -0.71413629], [1.0, 1.772, 0.0]])


def ycbcr_to_rgb(kr: float, kb: float, full: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(P, q)`` with ``rgb = P @ ycbcr + q`` on 8-bit values (rgb 0..255 before clipping)."""
    kg = 1.0 - kr - kb
    to_rgb = np.array([  # from Y, Cb, Cr (Y in 0..1, Cb/Cr in -0.5..0.5)
        [1.0, 0.0, 2 * (1 - kr)],
        [1.0, -2 * kb * (1 - kb) / kg, -2 * kr * (1 - kr) / kg],
        [1.0, 2 * (1 - kb), 0.0],
    ])
    scale = np.array([1 / 255, 1 / 255, 1 / 255]) if full else np.array([1 / 219, 1 / 224, 1 / 224])
    offset = np.array([0.0, 128.0, 128.0]) if full else np.array([16.0, 128.0, 128.0])
    p = 255.0 * to_rgb * scale[None, :]
    return p, -p @ offset


def _dali_nvdec(full: bool) -> tuple[np.ndarray, np.ndarray]:
    p = _DALI_FULL if full else _DALI_LIMITED
    offset = np.array([0.0, 128.0, 128.0]) if full else np.array([16.0, 128.0, 128.0])
    return p, -p @ offset


def is_full_range(color_range: str, pix_fmt: str) -> bool:
    return color_range == "pc" or pix_fmt.startswith("yuvj")


def correction(decoder: str, colorspace: str, color_range: str, pix_fmt: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(M, T)`` (float32) turning the RGB that ``decoder`` (``"nvdec"`` or ``"dali-cpu"``)
    gives for this stream into what its tags ask for; None when they agree. Both decoders
    take the stream's range and BT.601's matrix (measured for the CPU decoder on tagged
    VP9: full range right, BT.709 off by up to 22/255)."""
    matrix = MATRICES.get(colorspace, BT601)
    if matrix == BT601:
        return None
    full = is_full_range(color_range, pix_fmt)
    if decoder == "nvdec":
        applied = _dali_nvdec(full)
    elif decoder == "dali-cpu":
        applied = ycbcr_to_rgb(*BT601, full)
    else:
        raise ValueError(f"unknown decoder {decoder!r}")
    p_true, q_true = ycbcr_to_rgb(*matrix, full)
    p_dec, q_dec = applied
    m = p_true @ np.linalg.inv(p_dec)
    return m.astype(np.float32), (q_true - m @ q_dec).astype(np.float32)


def correct_normalized(clip, m: np.ndarray, t: np.ndarray, mean, std) -> None:
    """Apply ``rgb -> m @ rgb + t`` (0..255 RGB) in place to ``clip``, a ``[T, 3, H, W]``
    torch tensor already normalized with ``mean``/``std`` (0..1 RGB): with D = 255 std,
    the normalized clip maps by D^-1 m D and an offset, one 3x3 mix over the channels."""
    import torch

    scale = 255.0 * np.asarray(std, np.float64)
    shift = 255.0 * np.asarray(mean, np.float64)
    mix = (m.astype(np.float64) * scale[None, :]) / scale[:, None]
    offset = (m.astype(np.float64) @ shift + t - shift) / scale
    frames = clip.view(clip.shape[0], 3, -1)
    mix_t = torch.as_tensor(mix, dtype=clip.dtype, device=clip.device).expand(frames.shape[0], 3, 3)
    offset_t = torch.as_tensor(offset, dtype=clip.dtype, device=clip.device).view(1, 3, 1).expand(frames.shape[0], 3, 1)
    frames.copy_(torch.baddbmm(offset_t, mix_t, frames))  # a third of einsum's time on the CPU
