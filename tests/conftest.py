"""Shared fixtures: tiny generated videos (PyAV) whose frames encode their own index."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from backbones.spec import IMAGENET
from vcp.inputs.synth import CODECS, read_index, write_video

MEAN = torch.tensor(IMAGENET.mean).view(3, 1, 1)
STD = torch.tensor(IMAGENET.std).view(3, 1, 1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "needs_cuda" in item.keywords:
            item.add_marker(skip)


def denormalize(clip: torch.Tensor) -> torch.Tensor:
    """``[T, 3, H, W]`` normalized -> 0..1 RGB."""
    return clip.float().cpu() * STD + MEAN


def read_indices(clip: torch.Tensor) -> list[int]:
    rgb = denormalize(clip).permute(0, 2, 3, 1).numpy()
    return [read_index(frame) for frame in rgb]


# Four moderately saturated colours, one per quadrant: a BT.601 reading of BT.709 data moves
# them by up to ~20/255, and none clips at 0 or 255 under either matrix.
QUADRANT_COLOURS = [(200, 60, 50), (60, 180, 70), (50, 70, 190), (170, 160, 60)]
_COLORSPACES = {"bt709": 1, "bt2020nc": 9}
_RANGES = {"tv": 1, "pc": 2}


def write_colour_quadrants(path: Path, codec: str, colorspace: str = "", color_range: str = "",
                           width: int = 160, height: int = 128, frames: int = 6, colours=QUADRANT_COLOURS) -> Path:
    """A short video of :data:`QUADRANT_COLOURS`, converted to YCbCr with ``colorspace``'s
    matrix and ``color_range`` and tagged with them ("": untagged, BT.601 limited)."""
    import av

    img = np.zeros((height, width, 3), np.uint8)
    for k, colour in enumerate(colours):
        r, c = divmod(k, 2)
        img[r * height // 2:(r + 1) * height // 2, c * width // 2:(c + 1) * width // 2] = colour
    space, rng = _COLORSPACES.get(colorspace), _RANGES.get(color_range)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(CODECS[codec][0], rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = ({"crf": "4", "b": "0", "deadline": "realtime", "cpu-used": "8"} if codec == "vp9"
                          else {"crf": "4", "preset": "ultrafast"})
        if space:
            ctx = stream.codec_context
            ctx.colorspace = ctx.color_primaries = ctx.color_trc = space
        if rng:
            stream.codec_context.color_range = rng
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(
                format="yuv420p", dst_colorspace=space, dst_color_range=rng)
            if space:
                frame.colorspace = space
            if rng:
                frame.color_range = rng
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_size_change(path: Path, codec: str, first=(96, 64), then=(128, 96), frames=(30, 30)) -> Path:
    """A stream whose frame size changes at a keyframe: ``frames[0]`` index frames at
    ``first``, then ``frames[1]`` more (their indices going on) at ``then``. H.264 in MPEG-TS
    (two captures back to back), VP9 in WebM (what WebRTC recordings do)."""
    import av

    suffix = ".ts" if codec == "h264" else ".webm"
    parts = []
    for k, (size, n) in enumerate(zip((first, then), frames, strict=True)):
        part = path.parent / f".{path.stem}.part{k}{suffix}"
        write_video(part, num_frames=n, codec=codec, width=size[0], height=size[1])
        parts.append(part)
    if codec == "h264":  # MPEG-TS: concatenated streams are one stream
        path.write_bytes(b"".join(p.read_bytes() for p in parts))
    else:
        with av.open(str(parts[0])) as a, av.open(str(parts[1])) as b, av.open(str(path), "w") as out:
            target = out.add_stream_from_template(a.streams.video[0])
            shift = 0
            for source in (a, b):
                stream, end = source.streams.video[0], 0
                for packet in source.demux(stream):
                    if packet.dts is not None:
                        pts = int(packet.pts * stream.time_base / target.time_base) + shift
                        packet.pts = packet.dts = pts
                        packet.stream, end = target, max(end, pts)
                        out.mux(packet)
                shift = end + int(1 / (25 * target.time_base))
    for part in parts:
        part.unlink()
    return path


def quadrant_colours(clip: torch.Tensor) -> torch.Tensor:
    """``[4, 3]`` mean RGB (0..255) of the middle of each quadrant of a normalized clip's first frame."""
    rgb = denormalize(clip[0]) * 255
    s = rgb.shape[-1]
    return torch.stack([
        rgb[:, r * s // 2 + s // 8:(r + 1) * s // 2 - s // 8, c * s // 2 + s // 8:(c + 1) * s // 2 - s // 8].mean(dim=(1, 2))
        for r, c in (divmod(k, 2) for k in range(4))
    ])


class VideoFactory:
    """Generates (and caches for the session) videos by parameters."""

    def __init__(self, root: Path):
        self.root = root

    def __call__(self, codec="h264", num_frames=40, width=96, height=64, fps=25, pix_fmt=None, options=None) -> Path:
        fps = Fraction(fps).limit_denominator(1001)
        name = f"{codec}_{num_frames}f_{width}x{height}_{fps.numerator}-{fps.denominator}"
        if pix_fmt:
            name += f"_{pix_fmt}"
        if options:
            name += "_" + "_".join(f"{k}{v}" for k, v in sorted(options.items()))
        path = self.root / (name + CODECS[codec][1])
        if not path.exists():
            write_video(path, num_frames=num_frames, codec=codec, width=width, height=height, fps=fps,
                        pix_fmt=pix_fmt, options=options)
        return path

    def copy_to(self, dest: Path, **kwargs) -> Path:
        src = self(**kwargs)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        return dest


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> VideoFactory:
    return VideoFactory(tmp_path_factory.mktemp("videos"))


@pytest.fixture
def bad_files(tmp_path, videos):
    """Bad inputs of every kind; returns {name: path}."""
    d = tmp_path / "bad"
    d.mkdir()
    files = {}
    files["empty.mp4"] = d / "empty.mp4"
    files["empty.mp4"].write_bytes(b"")
    files["notes"] = d / "notes"  # no extension: probed (and refused), never ignored
    files["notes"].write_text("not a video\n" * 50)
    good = videos("h264", 60).read_bytes()
    files["truncated.mp4"] = d / "truncated.mp4"
    files["truncated.mp4"].write_bytes(good[: len(good) // 2])
    webm = videos("vp9", 60).read_bytes()
    files["truncated.webm"] = d / "truncated.webm"
    files["truncated.webm"].write_bytes(webm[: len(webm) * 4 // 10])
    rng = np.random.default_rng(0)
    corrupt = bytearray(good)
    corrupt[: 2048] = rng.integers(0, 256, 2048, dtype=np.uint8).tobytes()
    files["corrupt.mp4"] = d / "corrupt.mp4"
    files["corrupt.mp4"].write_bytes(bytes(corrupt))
    files["audio_only.mka"] = d / "audio_only.mka"
    _write_audio_only(files["audio_only.mka"])
    files["image.mp4"] = d / "image.mp4"  # a PNG picture named like a video
    _write_png(files["image.mp4"])
    return files


def _write_audio_only(path: Path) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_png(path: Path) -> None:
    import av

    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "rgb24"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
