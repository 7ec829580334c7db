"""No cyclic garbage collection while ``vcp tensorize`` or ``vcp extract`` starts up.

Their start-up imports torch, timm, torchvision and DALI: ~430,000 objects that live as long
as the process, and next to no garbage. CPython's collector meanwhile ran 7 full collections
over them: 0.6-0.8 s of a ViT-S/16 run's start-up, about 1 s with the young collections, on a
2-core Intel Xeon (timed with ``gc.callbacks``). The ``vcp`` command pauses the collector
as it starts (:func:`pause`); once the work begins (:func:`resume`: the first progress line,
or any other command once it is chosen) what start-up made is frozen (never scanned again,
never garbage) and collection goes on as usual. A program that uses vcp's Python API keeps
its collector as it set it: only the ``vcp`` process pauses it.
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    """Collect no cyclic garbage until :func:`resume` (the ``vcp`` command, as it starts)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """The work begins: what start-up made is frozen and the collector runs again. Nothing
    where :func:`pause` did not pause it (the Python API, a second call)."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
