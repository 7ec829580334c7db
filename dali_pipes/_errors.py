"""What a video that cannot be used raises: its file and the reason, in one line."""

from __future__ import annotations

import os


class VideoError(Exception):
    """A video that cannot be used; ``str()`` is the one-line ``"<file>: <reason>"``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def ffmpeg_reason(exc: Exception) -> str:
    msg = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(msg).split())
