"""A bounded background prefetcher: the next batch decodes while this one is consumed.

``for batch in prefetch(batches, depth=2)`` runs the producer in one thread with at most
``depth`` batches waiting, so memory stays bounded (``ClipLoader.load(..., ahead=N)`` uses it). DALI, PyAV and
torch release the GIL in their heavy parts, so decode overlaps the consumer's compute.
Exceptions in the producer re-raise in the consumer; leaving the loop early stops it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch(iterable: Iterable[T], depth: int = 2, waiting: Callable[[bool], None] | None = None) -> Iterator[T]:
    """``waiting(True)`` is called while the consumer waits for the producer (nothing queued)
    and for good once the loop ends (finished or left early, before the producer is joined);
    ``waiting(False)`` when it has an item again. A producer that may wait on the consumer
    for anything but the queue (a capped buffer pool) must not wait while that is True."""
    waiting = waiting or (lambda _: None)
    if depth <= 0:
        yield from iterable
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in iterable:
                if not put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - forwarded to the consumer
            put(_Raised(exc))
            return
        put(_DONE)

    worker = threading.Thread(target=produce, name="vcp-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            if q.empty():
                waiting(True)
            item = q.get()
            waiting(False)
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        waiting(True)
        worker.join()
