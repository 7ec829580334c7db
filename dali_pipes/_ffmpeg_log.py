"""FFmpeg's own log lines (``[mjpeg @ 0x...] overread 8``) are vcp's to show or hide.

Two FFmpeg copies run in the process: DALI's (bundled under ``nvidia/dali/.libs``) and
PyAV's. By default both are silent: vcp reports every problem it acts on in its own
words. With ``debug=True`` FFmpeg's lines go to stderr, prefixed ``ffmpeg:``. DALI sets
its FFmpeg's log *level* again for every file it opens, so DALI's copy is silenced with
a log *callback* instead, which it leaves alone.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys

_state: dict = {}  # "debug": the mode set; "callback": the ctypes callback kept alive
_LINE = 1024


def _dali_libavutil():
    try:
        import nvidia.dali as dali
    except ImportError:
        return None
    found = sorted(glob.glob(os.path.join(os.path.dirname(dali.__file__), ".libs", "libavutil*.so*")))
    return ctypes.CDLL(found[0]) if found else None


def set_ffmpeg_logging(debug: bool = False) -> None:
    """Silence (default) or show FFmpeg's log lines from DALI's and PyAV's FFmpeg."""
    if _state.get("debug") is debug:
        return
    _state["debug"] = debug
    import av.logging

    av.logging.set_level(av.logging.VERBOSE if debug else None)
    lib = _dali_libavutil()
    if lib is None:
        return
    proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    if debug:
        fmt_line = lib.av_log_format_line2
        fmt_line.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p,
                             ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]

        def show(avcl, level, fmt, vl):
            if level > 32:  # AV_LOG_INFO and quieter
                return
            buf, prefix = ctypes.create_string_buffer(_LINE), ctypes.c_int(1)
            fmt_line(avcl, level, fmt, vl, buf, _LINE, ctypes.byref(prefix))
            sys.stderr.write("ffmpeg: " + buf.value.decode(errors="replace"))

        callback = proto(show)
    else:
        callback = proto(lambda avcl, level, fmt, vl: None)
    _state["callback"] = callback  # the C side holds a raw pointer: keep the object alive
    lib.av_log_set_callback(callback)


def ensure_ffmpeg_logging() -> None:
    """The default (silent) unless :func:`set_ffmpeg_logging` chose already."""
    if "debug" not in _state:
        set_ffmpeg_logging(False)
