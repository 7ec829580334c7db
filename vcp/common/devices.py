"""Choosing where work runs; one place for the "auto" rule of both stages."""

from __future__ import annotations

from vcp.common.errors import UsageError  # noqa: F401 - where callers have long found it


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
    if gpu_name == "cuda" and mode.startswith("cuda:"):
        return _cuda_index(mode)
    if mode == gpu_name and not cuda_available():
        raise UsageError(
            f"--mode/--device {gpu_name} requested but no CUDA device is visible "
            "(torch.cuda.is_available() is False); use 'cpu' or 'auto'"
        )
    if mode not in (gpu_name, "cpu"):
        extra = ", cuda:N" if gpu_name == "cuda" else ""
        raise UsageError(f"Invalid device ({mode!r}). Supported values are: auto, {gpu_name}{extra}, cpu.")
    return mode


def _cuda_index(mode: str) -> str:
    """``cuda:N``, checked against the devices this process sees."""
    index = mode.removeprefix("cuda:")
    if not index.isdigit():
        raise UsageError(f"Invalid device ({mode!r}). Supported values are: auto, cpu, cuda, cuda:N.")
    if not cuda_available():
        raise UsageError(f"--device {mode} requested but no CUDA device is visible (torch.cuda.is_available() is False)")
    import torch

    count = torch.cuda.device_count()
    if int(index) >= count:
        raise UsageError(f"--device {mode}: this process sees {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return f"cuda:{int(index)}"


# Instructions that make a reduced precision fast on the CPU (x86 /proc/cpuinfo flags);
# without them oneDNN emulates it and the pass runs slower than fp32.
NATIVE_CPU_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str] | None:
    """The CPU's feature flags, or None where they cannot be read (not Linux/x86)."""
    try:
        with open(cpuinfo) as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def slow_precision_warning(precision: str, device: str, flags: set[str] | None = None) -> str | None:
    """A one-line warning when ``precision`` has no native support on this CPU, else None."""
    if device != "cpu" or precision not in NATIVE_CPU_FLAGS:
        return None
    flags = cpu_flags() if flags is None else flags
    if flags is None or any(f in flags for f in NATIVE_CPU_FLAGS[precision]):
        return None
    needed = "/".join(NATIVE_CPU_FLAGS[precision])
    return (
        f"--precision {precision} on a CPU without {needed} instructions is emulated and usually "
        "slower than fp32; use fp32 here or run on a GPU"
    )
