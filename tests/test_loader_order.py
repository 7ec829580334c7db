"""Several pipelines, one order: the hand-out of chunks to decode threads (``_InOrder``)."""

from __future__ import annotations

import random
import threading
import time

import pytest

from dali_pipes._loader import _InOrder


def _run(count: int, window: int, threads: int, delay, consume=None):
    """Decode threads that take chunks and 'decode' them in ``delay(c)`` seconds; returns
    what the consumer got, in its order, and the largest lead of a taken chunk."""
    order = _InOrder(count, window)
    lead = [0]
    wanted = [0]

    def work():
        while (c := order.take()) is not None:
            lead[0] = max(lead[0], c - wanted[0])
            time.sleep(delay(c))
            order.put(c, c * 10)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    got = []
    try:
        for c in range(count):
            got.append(order.get(c))
            wanted[0] = c + 1
            if consume:
                consume(c)
    finally:
        order.stop()
        for t in pool:
            t.join(timeout=10)
    assert not any(t.is_alive() for t in pool)
    return got, lead[0]


def test_results_come_in_order_whatever_order_they_finish_in():
    rng = random.Random(0)
    delays = [rng.choice([0.0, 0.001, 0.02]) for _ in range(40)]
    got, _ = _run(40, window=6, threads=4, delay=lambda c: delays[c])
    assert got == [c * 10 for c in range(40)]


def test_no_chunk_is_taken_a_window_or_more_past_the_one_awaited():
    got, lead = _run(30, window=5, threads=4, delay=lambda c: 0.03 if c == 0 else 0.0)
    assert got == [c * 10 for c in range(30)]
    assert lead < 5


def test_a_slow_chunk_does_not_stop_the_other_threads():
    """Chunk 0 takes long; the other threads go on with chunks 1.. meanwhile (up to the
    window), so the consumer finds them ready when chunk 0 arrives."""
    taken_while_slow = []
    order = _InOrder(12, window=8)
    first = order.take()
    assert first == 0
    while (c := order.take()) is not None:
        taken_while_slow.append(c)
        order.put(c, c)
        if len(taken_while_slow) == 7:
            break
    assert taken_while_slow == list(range(1, 8))
    blocked = threading.Thread(target=lambda: taken_while_slow.append(order.take()))
    blocked.start()
    blocked.join(timeout=0.2)
    assert blocked.is_alive()  # chunk 8 waits: it is a whole window past chunk 0
    order.put(0, 0)
    assert order.get(0) == 0
    blocked.join(timeout=5)
    assert taken_while_slow[-1] == 8
    order.stop()


def test_stop_releases_waiting_threads_and_drops_results():
    order = _InOrder(10, window=1)
    assert order.take() == 0
    waiter = threading.Thread(target=order.take)
    waiter.start()
    order.stop()
    waiter.join(timeout=5)
    assert not waiter.is_alive()
    assert order.take() is None


def test_the_parallel_loader_raises_a_decode_threads_error_in_order(monkeypatch):
    from dali_pipes import ClipLoader

    ld = ClipLoader(size=32, mean=(0.5,) * 3, std=(0.5,) * 3, pipelines=2, max_batch=1, probe_workers=0)

    def fake_load(self, items, spec, *, ahead=0):
        path = items[0][0]
        if path == "bad":
            raise RuntimeError("decoder broke")
        yield [path]

    monkeypatch.setattr(ClipLoader, "load", fake_load)
    items = [("a", "a"), ("b", "b"), ("bad", "bad"), ("c", "c")]
    out = []
    with pytest.raises(RuntimeError, match="decoder broke"):
        for batch in ClipLoader._parallel(ld, items, spec=None):
            out.append(batch)
    assert out == [["a"], ["b"]]
