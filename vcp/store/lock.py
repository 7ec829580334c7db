"""One writer per output folder: an OS-level lock the kernel releases when its process dies.

``with output_lock(OUT, shard):`` takes ``OUT/.vcp.lock`` — exclusively for a single
process, shared for the ranks of a sharded run (which write different part files in the
same folders), plus an exclusive ``OUT/.vcp.lock.<part tag>`` per rank so two processes
can never run the same rank. A second run on the same folder exits at once (exit 2)
with ``OUT is in use by pid N``; it does not wait. ``flock`` locks belong to the open
file, so ``kill -9`` never leaves a folder locked (a killed run leaves the lock file
behind; it means nothing until a process holds it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from vcp.common.errors import UsageError

LOCK_NAME = ".vcp.lock"


def pid_alive(pid: int) -> bool:
    """True unless no process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(path.read_text().strip() or 0)
        if pid and pid_alive(pid):
            return f"pid {pid}"
    return "the ranks of a sharded vcp run"


def _acquire(path: Path, exclusive: bool, folder: Path, what: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(
                f"{folder} is in use by {_holder(path)} ({what}); wait for it to finish, "
                "or write to another folder"
            ) from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed the file as we opened it: take the new one
    if exclusive:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, shard=None):
    """Hold the folder's lock for the block (see the module docstring)."""
    folder = Path(folder)
    sharded = shard is not None and shard.active
    held = []  # (path, fd, remove on release: exclusive locks only)
    try:
        main = folder / LOCK_NAME
        held.append((main, _acquire(main, not sharded, folder, "another vcp run"), not sharded))
        if sharded:
            mine = folder / f"{LOCK_NAME}.{shard.tag}"
            held.append((mine, _acquire(mine, True, folder, f"shard {shard.index}/{shard.count}"), True))
        yield
    finally:
        for path, fd, exclusive in reversed(held):
            if not exclusive:  # the last rank out (no other shared holder) removes it
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    exclusive = True
                except BlockingIOError:
                    pass
            if exclusive:  # while still held; a process that opened it meanwhile retries
                path.unlink(missing_ok=True)
            os.close(fd)
