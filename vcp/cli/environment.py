"""``vcp --version``: the packages, and the CUDA devices and NVDEC engines this process sees."""

from __future__ import annotations

import platform

from vcp.common.versions import versions


def environment_report() -> str:
    """``vcp --version``: what a bug report needs, one ``name version`` line each."""
    found = versions()
    lines = [f"vcp {found.pop('vcp')}"] + [f"{name} {version}" for name, version in found.items()]
    lines.append(f"python {platform.python_version()} ({platform.machine()})")
    try:
        import torch

        if torch.cuda.is_available():
            names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
            lines.append(f"cuda: {torch.cuda.device_count()} device(s) visible ({names}), torch built for CUDA {torch.version.cuda}")
            lines.append(f"nvdec: {_nvdec_engines()}")
        else:
            lines.append("cuda: no device visible (tensorize and extract run on the CPU)")
    except Exception as exc:  # noqa: BLE001 - a broken CUDA install is worth reporting, not crashing on
        lines.append(f"cuda: unusable ({type(exc).__name__}: {exc})")
    return "\n".join(lines)


def _nvdec_engines() -> str:
    try:
        from dali_pipes import CapsTable

        engines = CapsTable(0).engines()
        return f"{engines} engine(s) on device 0" if engines else "none reported on device 0 (decoding on the CPU)"
    except Exception as exc:  # noqa: BLE001
        return f"not queried ({type(exc).__name__})"
