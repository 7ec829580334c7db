"""Synthetic test videos whose frames encode their own index.

Used by ``make demo``, the test suite and ``make bench``: nothing is downloaded. It is part
of the installed package (unlike the original loop in ``bench/reference.py``) because
``make demo`` and users' own smoke tests build sample trees with it.

Each frame is a 4x4 grid of blocks. Blocks 0..11 are the bits of the frame index
(LSB first, white = 1, black = 0), block 12 is pure red, 13 pure green, 14 pure blue and
block 15 a horizontal gray ramp. Blocks are big enough to survive lossy codecs and
small resizes, so :func:`read_index` recovers the exact source frame of any output
frame, and the colour blocks catch RGB/BGR mix-ups.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

GRID = 4
INDEX_BITS = 12

# codec name -> (PyAV encoder, container suffix, pixel format)
CODECS: dict[str, tuple[str, str, str]] = {
    "h264": ("libx264", ".mp4", "yuv420p"),
    "hevc": ("libx265", ".mkv", "yuv420p"),
    "vp9": ("libvpx-vp9", ".webm", "yuv420p"),
    "mjpeg": ("mjpeg", ".avi", "yuvj420p"),
}


def make_frame(index: int, width: int, height: int) -> np.ndarray:
    """RGB uint8 ``[height, width, 3]`` frame that encodes ``index``."""
    img = np.zeros((height, width, 3), np.uint8)
    ys = np.linspace(0, height, GRID + 1).astype(int)
    xs = np.linspace(0, width, GRID + 1).astype(int)
    colours = {12: (255, 0, 0), 13: (0, 255, 0), 14: (0, 0, 255)}
    for block in range(GRID * GRID):
        r, c = divmod(block, GRID)
        y0, y1, x0, x1 = ys[r], ys[r + 1], xs[c], xs[c + 1]
        if block < INDEX_BITS:
            img[y0:y1, x0:x1] = 255 if (index >> block) & 1 else 0
        elif block in colours:
            img[y0:y1, x0:x1] = colours[block]
        else:
            ramp = np.linspace(0, 255, x1 - x0).astype(np.uint8)
            img[y0:y1, x0:x1] = ramp[None, :, None]
    return img


def read_index(frame_rgb01: np.ndarray) -> int:
    """Recover the frame index from an ``[H, W, 3]`` RGB image with values in 0..1.

    Reads the centre of each bit block, so it works after any resize to >= 16 px.
    """
    h, w = frame_rgb01.shape[:2]
    value = 0
    for bit in range(INDEX_BITS):
        r, c = divmod(bit, GRID)
        cy, cx = int((r + 0.5) * h / GRID), int((c + 0.5) * w / GRID)
        dy, dx = max(1, h // (4 * GRID)), max(1, w // (4 * GRID))
        patch = frame_rgb01[cy - dy : cy + dy + 1, cx - dx : cx + dx + 1]
        if patch.mean() > 0.5:
            value |= 1 << bit
    return value


def write_video(
    path: str | Path,
    *,
    num_frames: int,
    codec: str = "h264",
    width: int = 96,
    height: int = 64,
    fps: Fraction | int = 25,
    pix_fmt: str | None = None,
    options: dict[str, str] | None = None,
    rotation: int = 0,
) -> Path:
    """Encode ``num_frames`` index frames to ``path`` with PyAV; returns the path.

    ``pix_fmt`` overrides the codec's default (e.g. ``yuv420p10le``, ``yuv444p``);
    ``options`` are added to the encoder options (e.g. ``{"bf": "3"}`` for B-frames);
    ``rotation`` (degrees counter-clockwise) is written as the display matrix, as phones do.
    """
    import av

    encoder, _, default_pix_fmt = CODECS[codec]
    pix_fmt = pix_fmt or default_pix_fmt
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "h264":
            stream.options = {"crf": "18", "preset": "ultrafast"}
        elif codec == "hevc":
            stream.options = {"crf": "18", "preset": "ultrafast", "x265-params": "log-level=error"}
        elif codec == "vp9":
            stream.options = {"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        elif codec == "mjpeg":
            stream.options = {"q:v": "3"}
        stream.options = {**stream.options, **(options or {})}
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(make_frame(i, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_sample_tree(root: str | Path, *, frames_scale: float = 1.0) -> Path:
    """A small RAW tree: 3 splits, 2 categories, mixed codecs, nested and flat layouts.

    ``RAW/<split>/<category>/<subcategory>/<video>``; ``walking`` holds its videos
    directly (a category that is its own single subcategory).
    """
    root = Path(root)
    n = lambda k: max(2, int(k * frames_scale))  # noqa: E731
    plan = {
        "train": [
            ("running/sprint", "a.mp4", "h264", n(80), 25, (96, 64)),
            ("running/sprint", "b.webm", "vp9", n(40), 25, (80, 48)),
            ("running/jog", "c.mkv", "hevc", n(50), Fraction(30000, 1001), (96, 64)),
            ("walking", "d.avi", "mjpeg", n(30), 25, (64, 48)),
            ("walking", "e.mp4", "h264", n(300), 30, (96, 64)),
        ],
        "val": [
            ("running/sprint", "f.webm", "vp9", n(70), 25, (96, 64)),
            ("walking", "g.mp4", "h264", n(20), 25, (64, 48)),
        ],
        "test": [
            ("running/jog", "h.avi", "mjpeg", n(64), 25, (64, 48)),
            ("walking", "i.mkv", "hevc", n(90), 25, (96, 64)),
        ],
    }
    for split, videos in plan.items():
        for sub, name, codec, frames, fps, (w, h) in videos:
            target = root / split / sub / name
            if not target.exists():
                write_video(target, num_frames=frames, codec=codec, width=w, height=h, fps=fps)
    return root
