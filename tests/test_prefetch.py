import threading
import time

import pytest

from dali_pipes import prefetch


def test_order_and_bounded_lookahead():
    produced = []

    def gen():
        for i in range(10):
            produced.append(i)
            yield i

    seen = []
    for item in prefetch(gen(), depth=2):
        time.sleep(0.01)
        seen.append(item)
        assert len(produced) - len(seen) <= 3  # depth waiting + one being put
    assert seen == list(range(10))


def test_producer_errors_reach_the_consumer():
    def gen():
        yield 1
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(prefetch(gen()))


def test_early_exit_stops_the_producer():
    def gen():
        i = 0
        while True:
            yield i
            i += 1

    for item in prefetch(gen(), depth=1):
        if item == 3:
            break
    time.sleep(0.3)
    assert not [t for t in threading.enumerate() if t.name == "vcp-prefetch"]
