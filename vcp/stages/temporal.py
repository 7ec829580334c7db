"""How a clip backbone's windows are cut (``ExtractConfig.temporal``: its release's recipe
with ``--window``, ``--stride`` and ``--fps`` applied)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Temporal:
    """``window`` frames every ``stride`` frames of the video resampled to ``frame_rate``
    (None: the video's own rate)."""

    window: int
    stride: int
    frame_rate: float | None

    def attrs(self) -> dict:
        """The features file's attrs (``frame_rate`` 0: the video's own rate)."""
        return {"kind": "clip", "window": self.window, "stride": self.stride,
                "frame_rate": 0.0 if self.frame_rate is None else self.frame_rate}
