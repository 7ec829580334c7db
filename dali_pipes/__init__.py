"""DALI graphs for vcp: probe, sample, decode (NVDEC / DALI CPU / PyAV), resize, normalize.

The public names are these; the modules behind them are private (``_loader`` wires the
decode path: ``_plan`` -> ``_runner`` -> ``_buffers``; ``_samplers`` holds the sampling
rule, ``_nvdec`` the routing rule, ``_probe`` what a file is).
"""

from ._buffers import Batch
from ._ffmpeg_log import set_ffmpeg_logging
from ._geometry import VIEW_NAMES, VIEWS, Geometry
from ._graph import build_pipeline, views_frame_major
from ._loader import ClipLoader, default_pipelines
from ._nvdec import CapsTable, route
from ._plan import MAX_PIXELS, ClipResult
from ._prefetch import prefetch
from ._probe import VideoError, VideoInfo, probe
from ._samplers import STRATEGIES, SamplingSpec
from ._vram import batch_size_for
from ._windows import WindowPlan, WindowReader, plan_video, plan_windows, resample, window_times

# What "the frames players show" decodes to. Raised when some inputs decode differently, so
# outputs made under the old rules are redone (it is part of vcp's fingerprints). 2: the
# stream players show, edit lists, a lead-in before the first keyframe, the colour tags.
# 3: on the CPU, clips whose full-size frames need more than 1 GiB are scaled as they decode,
# and streams tagged with another matrix than BT.601 decode on PyAV (exact colours).
DECODE_RULES = 3

__all__ = [
    "DECODE_RULES",
    "MAX_PIXELS",
    "STRATEGIES",
    "VIEWS",
    "VIEW_NAMES",
    "Batch",
    "CapsTable",
    "ClipLoader",
    "ClipResult",
    "Geometry",
    "SamplingSpec",
    "VideoError",
    "VideoInfo",
    "WindowPlan",
    "WindowReader",
    "batch_size_for",
    "build_pipeline",
    "default_pipelines",
    "plan_video",
    "plan_windows",
    "prefetch",
    "probe",
    "resample",
    "route",
    "set_ffmpeg_logging",
    "views_frame_major",
    "window_times",
]
