"""Stopping a long run without losing it: SIGTERM (a Slurm job at its time limit, before
its SIGKILL) or SIGINT (Ctrl-C) asks the running stage to commit what is done and stop.

Inside :func:`graceful_stop`, the first signal only sets a flag; the stage's work loop
calls :func:`check_stop` between inputs, commits its progress (a checkpoint the next run
resumes from) and raises :class:`Stopped`; the CLI exits 128 + the signal number (143
for SIGTERM, 130 for SIGINT). A second signal acts at once, as if no handler were there.
Progress is also committed every :func:`checkpoint_seconds` (30 s; ``VCP_CHECKPOINT_SECONDS``
sets it), so a ``kill -9`` loses at most that much work.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

_state = {"signum": None}


class Stopped(Exception):
    """The run stopped on a signal after committing its progress."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def checkpoint_seconds() -> float:
    """How often a long run commits its progress (seconds)."""
    try:
        return max(0.0, float(os.environ.get("VCP_CHECKPOINT_SECONDS", "30")))
    except ValueError:
        return 30.0


def stop_requested() -> int | None:
    """The signal that asked the run to stop, or None."""
    return _state["signum"]


def check_stop() -> None:
    """Raise :class:`Stopped` when a stop was asked (call it after committing progress)."""
    if _state["signum"] is not None:
        raise Stopped(_state["signum"])


def request_stop(signum: int = signal.SIGTERM) -> None:
    """What the handler does (also for tests): ask the run to stop."""
    _state["signum"] = signum


@contextlib.contextmanager
def graceful_stop():
    """Catch SIGTERM and SIGINT for the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum, frame):
        request_stop(signum)
        for sig, old in previous.items():  # a second signal acts at once
            signal.signal(sig, old)

    _state["signum"] = None
    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        _state["signum"] = None
