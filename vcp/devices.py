"""Choosing where work runs; one place for the "auto" rule of both stages."""

from __future__ import annotations


class UsageError(Exception):
    """A user error that should end the CLI with exit code 2 and a one-line message."""


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken CUDA install means "no GPU" here
        return False


def resolve_mode(mode: str, *, gpu_name: str = "gpu") -> str:
    """``auto`` -> ``gpu_name`` when a CUDA device is visible, else ``cpu``.

    Asking for the GPU explicitly without one is a usage error, not a crash.
    """
    if mode == "auto":
        return gpu_name if cuda_available() else "cpu"
    if mode == gpu_name and not cuda_available():
        raise UsageError(
            f"--mode/--device {gpu_name} requested but no CUDA device is visible "
            "(torch.cuda.is_available() is False); use 'cpu' or 'auto'"
        )
    if mode not in (gpu_name, "cpu"):
        raise UsageError(f"Invalid device ({mode!r}). Supported values are: auto, {gpu_name}, cpu.")
    return mode
