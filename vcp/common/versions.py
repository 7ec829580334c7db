"""Package versions recorded in every output, for reproducibility."""

from __future__ import annotations

from importlib import metadata

_PACKAGES = {
    "vcp": "vcp-toolkit",
    "torch": "torch",
    "torchvision": "torchvision",
    "timm": "timm",
    "nvidia-dali": "nvidia-dali-cuda120",
    "av": "av",
    "h5py": "h5py",
    "numpy": "numpy",
}


def versions() -> dict[str, str]:
    out = {}
    for key, dist in _PACKAGES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = "not installed"
    return out
