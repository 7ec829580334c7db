"""Checking a tensorize checkpoint before it is trusted: its record adds up (counts, names,
labels, the caller's progress state) and its bytes are the ones it recorded (CRC-32)."""

from __future__ import annotations

import os
import zlib

import torch


def record_problem(meta: dict, shape: tuple, dtype: torch.dtype, expected, state_problem) -> str | None:
    """Why a checkpoint's record does not add up, or None: a whole number of ``shape`` clips,
    one name and label each, in the order of ``expected`` (name, label) pairs, and a state
    ``state_problem(state, clips)`` accepts."""
    clip_bytes = int(torch.Size(shape).numel()) * torch.empty((), dtype=dtype).element_size()
    written, names, labels = meta.get("written"), meta.get("filenames"), meta.get("labels")
    if type(written) is not int or written < 0 or written % clip_bytes or type(meta.get("crc")) is not int:
        return "its byte count is not a whole number of clips"
    n = written // clip_bytes
    if not (isinstance(names, list) and isinstance(labels, list) and len(names) == len(labels) == n):
        return f"it records {len(names) if isinstance(names, list) else '?'} names for {n} clips"
    remaining = iter(tuple(e) for e in expected or [])
    if expected and not all(pair in remaining for pair in zip(names, labels, strict=True)):
        return "its clips are not this group's videos in order"
    return state_problem(meta.get("state"), n) if state_problem is not None else None


def bytes_problem(buffer, offset: int, written: int, crc: int) -> str | None:
    """Why the ``written`` bytes at ``offset`` of the open ``buffer`` are not the ones
    checkpointed (their CRC-32), or None."""
    buffer.seek(0, os.SEEK_END)
    if buffer.tell() < offset + written:
        return f"the buffer holds {max(0, buffer.tell() - offset)} of its {written} bytes"
    buffer.seek(offset)
    got, left = 0, written
    while left:
        chunk = buffer.read(min(left, 16 << 20))
        if not chunk:
            return "the buffer ends early"
        got, left = zlib.crc32(chunk, got), left - len(chunk)
    return None if got == crc else "its bytes do not match their checksum"
