"""DALI graphs for vcp: probe, sample, decode (NVDEC / DALI CPU / PyAV), resize, normalize."""

from .ffmpeg_log import set_ffmpeg_logging
from .pipeline import ClipLoader, ClipResult, build_pipeline
from .probe import VideoError, VideoInfo, probe
from .samplers import STRATEGIES, SamplingSpec
from .vram import batch_size_for

__all__ = [
    "STRATEGIES",
    "ClipLoader",
    "ClipResult",
    "SamplingSpec",
    "VideoError",
    "VideoInfo",
    "batch_size_for",
    "build_pipeline",
    "probe",
    "set_ffmpeg_logging",
]
