"""Which decoder takes a stream: NVDEC's limits, read from the card, and the routing rule.

DALI 2.4's GPU decoder (``fn.decoders.video(device="mixed")``) takes H.264, HEVC, VP8,
VP9, AV1 and MPEG-4 part 2 in 4:2:0 — not MJPEG, not 4:2:2/4:4:4 — and NVDEC itself has
per-codec limits (minimum and maximum coded size, macroblock count, bit depth). Those are
asked of the card (``cuvidGetDecoderCaps`` in the driver's ``libnvcuvid``, through ctypes)
and otherwise taken from NVIDIA's published table (:data:`DOCUMENTED`). Every stream is
routed before it is decoded (:func:`route`): a stream NVDEC cannot take goes to the CPU
front first time, with a one-line reason, instead of costing a failed GPU run.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

# Codecs DALI's mixed (NVDEC) decoder is built for (its frames_decoder_gpu.cc).
NVDEC_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4"})
# pix_fmt -> (chroma, bit depth). Only 4:2:0 reaches NVDEC through DALI.
PIX_FMTS: dict[str, tuple[str, int]] = {
    "yuv420p": ("420", 8), "yuvj420p": ("420", 8), "nv12": ("420", 8),
    "yuv420p10le": ("420", 10), "p010le": ("420", 10), "yuv420p12le": ("420", 12),
    "yuv422p": ("422", 8), "yuvj422p": ("422", 8), "yuv422p10le": ("422", 10),
    "yuv444p": ("444", 8), "yuvj444p": ("444", 8), "yuv444p10le": ("444", 10), "gray": ("400", 8),
}
# cuviddec.h enums
_CODEC_IDS = {"mpeg4": 2, "h264": 4, "hevc": 8, "vp8": 9, "vp9": 10, "av1": 11}
_CHROMA_IDS = {"400": 0, "420": 1, "422": 2, "444": 3}


@dataclass(frozen=True)
class Caps:
    """NVDEC's limits for one (codec, chroma, bit depth)."""

    supported: bool
    min_width: int = 0
    min_height: int = 0
    max_width: int = 0
    max_height: int = 0
    max_macroblocks: int = 0  # width*height/256 must not exceed it (0: no limit known)
    engines: int = 0  # NVDECs that take it (0: unknown)
    source: str = "table"  # "card" (asked of the GPU) or "table" (NVIDIA's documentation)


# NVIDIA's NVDEC support matrix (Video Codec SDK documentation, Ampere/Ada/Hopper NVDEC):
# (codec, bit depth) -> (min w, min h, max w, max h, max macroblocks), 4:2:0.
DOCUMENTED: dict[tuple[str, int], tuple[int, int, int, int, int]] = {
    ("h264", 8): (48, 16, 4096, 4096, 65536),
    ("hevc", 8): (144, 144, 8192, 8192, 262144),
    ("hevc", 10): (144, 144, 8192, 8192, 262144),
    ("hevc", 12): (144, 144, 8192, 8192, 262144),
    ("vp8", 8): (48, 16, 4096, 4096, 65536),
    ("vp9", 8): (128, 128, 8192, 8192, 262144),
    ("vp9", 10): (128, 128, 8192, 8192, 262144),
    ("vp9", 12): (128, 128, 8192, 8192, 262144),
    ("av1", 8): (128, 128, 8192, 8192, 262144),
    ("av1", 10): (128, 128, 8192, 8192, 262144),
    ("mpeg4", 8): (48, 16, 2032, 2032, 8192),
}


def documented_caps(codec: str, chroma: str, depth: int) -> Caps:
    """The published limits (only 4:2:0 is listed: DALI decodes nothing else on NVDEC)."""
    row = DOCUMENTED.get((codec, depth)) if chroma == "420" else None
    if row is None:
        return Caps(False)
    return Caps(True, *row)


class _CUVIDDECODECAPS(ctypes.Structure):
    _fields_ = [
        ("eCodecType", ctypes.c_int), ("eChromaFormat", ctypes.c_int), ("nBitDepthMinus8", ctypes.c_uint),
        ("reserved1", ctypes.c_uint * 3), ("bIsSupported", ctypes.c_ubyte), ("nNumNVDECs", ctypes.c_ubyte),
        ("nOutputFormatMask", ctypes.c_ushort), ("nMaxWidth", ctypes.c_uint), ("nMaxHeight", ctypes.c_uint),
        ("nMaxMBCount", ctypes.c_uint), ("nMinWidth", ctypes.c_ushort), ("nMinHeight", ctypes.c_ushort),
        ("bIsHistogramSupported", ctypes.c_ubyte), ("nCounterBitDepth", ctypes.c_ubyte),
        ("nMaxHistogramBins", ctypes.c_ushort), ("reserved3", ctypes.c_uint * 16),  # header: 10; room to spare
    ]


# device -> (its query, the caps asked at the first table): every loader of a run made a new
# table, and 18 driver queries (each after a device sync) cost ~0.2 s a loader (H100, py-spy)
_ASKED: dict[int, tuple] = {}


class CapsTable:
    """Caps per (codec, chroma, depth): asked of the card once per process, else the
    documented table."""

    def __init__(self, device_id: int | None = None):
        self.device_id = device_id
        self._cache: dict[tuple[str, str, int], Caps] = {}
        self._lock = threading.Lock()
        asked = _ASKED.get(device_id) if device_id is not None else None
        if asked is not None:  # the card was asked once in this process: its answers hold
            self._query, self._cache = asked[0], dict(asked[1])
            return
        self._query = _card_query(device_id) if device_id is not None else None
        if self._query is not None:  # all at once, here: loader threads may have no CUDA context
            for codec in _CODEC_IDS:
                for depth in (8, 10, 12):
                    self.get(codec, "420", depth)
            _ASKED[device_id] = (self._query, dict(self._cache))

    @property
    def from_card(self) -> bool:
        return self._query is not None

    def get(self, codec: str, chroma: str, depth: int) -> Caps:
        key = (codec, chroma, depth)
        with self._lock:
            if key not in self._cache:
                caps = self._query(codec, chroma, depth) if self._query else None
                self._cache[key] = caps if caps is not None else documented_caps(codec, chroma, depth)
            return self._cache[key]

    def engines(self) -> int:
        """NVDEC engines on the card (0: unknown, or none)."""
        caps = self.get("h264", "420", 8)
        return caps.engines if caps.source == "card" else 0


def _card_query(device_id: int):
    """A function (codec, chroma, depth) -> Caps | None asking the driver, or None when the
    driver's libnvcuvid or a CUDA context cannot be had."""
    try:
        lib = ctypes.CDLL("libnvcuvid.so.1")
        import torch

        torch.cuda.init()
        with torch.cuda.device(device_id):
            torch.empty(1, device=f"cuda:{device_id}")  # makes the primary context current here
    except Exception:  # noqa: BLE001 - no driver library, no GPU: the documented table serves
        return None
    get_caps = lib.cuvidGetDecoderCaps
    get_caps.argtypes = [ctypes.POINTER(_CUVIDDECODECAPS)]
    get_caps.restype = ctypes.c_int

    def query(codec: str, chroma: str, depth: int) -> Caps | None:
        if codec not in _CODEC_IDS or chroma not in _CHROMA_IDS:
            return Caps(False, source="card")
        import torch

        caps = _CUVIDDECODECAPS(eCodecType=_CODEC_IDS[codec], eChromaFormat=_CHROMA_IDS[chroma], nBitDepthMinus8=depth - 8)
        with torch.cuda.device(device_id):
            torch.cuda.synchronize(device_id)  # binds the device's primary context to this thread
            if get_caps(ctypes.byref(caps)) != 0:
                return None
        return Caps(
            bool(caps.bIsSupported), caps.nMinWidth, caps.nMinHeight, caps.nMaxWidth, caps.nMaxHeight,
            caps.nMaxMBCount, caps.nNumNVDECs, "card",
        )

    return query


@dataclass(frozen=True)
class Route:
    front: str  # "dali" (DALI's decoder: NVDEC on the GPU, libavcodec on the CPU) or "pyav" (PyAV)
    reason: str = ""  # why a stream that could have gone to NVDEC did not (one line)


def stream_key(codec: str, pix_fmt: str, width: int, height: int) -> tuple:
    """What an NVDEC rejection is remembered by: codec, chroma and depth, and a size class."""
    chroma, depth = PIX_FMTS.get(pix_fmt, (pix_fmt, 0))
    side = max(width, height)
    size_class = next((c for c in (256, 512, 1024, 2048, 4096, 8192) if side <= c), 16384)
    return (codec, chroma, depth, size_class)


def route(
    codec: str, pix_fmt: str, width: int, height: int, *, device: str, cpu_decoder: str = "auto",
    caps: CapsTable | None = None, nvdec_usable: bool = True, blocked: frozenset = frozenset(),
    dali_cpu_codecs: frozenset = frozenset({"vp8", "vp9", "mjpeg"}), needs_pyav: str = "",
) -> Route:
    """The decode front for one stream (pure: everything it depends on is an argument).

    CPU: DALI's CPU decoder for VP8/VP9/MJPEG (``cpu_decoder="auto"``), PyAV otherwise.
    GPU: NVDEC when DALI's mixed decoder takes the codec and chroma, the card's limits take
    the size and depth, NVDEC is usable at all, and streams of this kind were not rejected
    again and again (``blocked``); else PyAV on the CPU (resize/normalize stay on the GPU).
    A file whose frames DALI would not number as players show them (``needs_pyav``: several
    video streams, a cover picture first, frames an edit list hides, packets before the
    first keyframe) goes to PyAV, on both.
    """
    where = f"{codec} {width}x{height} {pix_fmt}"
    if needs_pyav:
        return Route("pyav", f"{where}: {needs_pyav}")
    if device != "gpu":
        return Route("dali" if cpu_decoder == "auto" and codec in dali_cpu_codecs else "pyav")
    if not nvdec_usable:
        return Route("pyav", f"{where}: no usable NVDEC on this GPU")
    if codec not in NVDEC_CODECS:
        return Route("pyav", f"{where}: DALI's NVDEC decoder does not take {codec}")
    chroma, depth = PIX_FMTS.get(pix_fmt, (None, 0))
    if chroma != "420":
        return Route("pyav", f"{where}: NVDEC through DALI takes 4:2:0 only")
    limits = (caps or CapsTable()).get(codec, chroma, depth)
    if not limits.supported:
        return Route("pyav", f"{where}: this NVDEC does not decode {codec} {depth}-bit ({limits.source})")
    if width < limits.min_width or height < limits.min_height:
        return Route("pyav", f"{where}: below NVDEC's minimum {limits.min_width}x{limits.min_height} for {codec} ({limits.source})")
    if width > limits.max_width or height > limits.max_height:
        return Route("pyav", f"{where}: above NVDEC's maximum {limits.max_width}x{limits.max_height} for {codec} ({limits.source})")
    macroblocks = ((width + 15) // 16) * ((height + 15) // 16)
    if limits.max_macroblocks and macroblocks > limits.max_macroblocks:
        return Route("pyav", f"{where}: {macroblocks} macroblocks, above NVDEC's {limits.max_macroblocks} ({limits.source})")
    if stream_key(codec, pix_fmt, width, height) in blocked:
        return Route("pyav", f"{where}: NVDEC rejected every stream of this kind so far")
    return Route("dali")


def dali_error_line(exc: BaseException, limit: int = 160) -> str:
    """The one line that says why DALI failed, without its pipeline traceback."""
    text = str(exc)
    if "encountered:" in text:
        text = text.split("encountered:", 1)[1]
    text = text.split("C++ context:", 1)[0].split("Current pipeline object", 1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("File ")]
    line = lines[0] if lines else type(exc).__name__
    return line[:limit]
