"""vcp: video preprocessing for video classification (tensorize -> extract).

The public Python surface, in one place (each name loads torch/DALI on first use only)::

    from vcp import EnhancedFeatureExtractor          # the original scripts' API (vcp.api)
    from vcp import FeatureDataset, ClipDataset       # the loaders (also vcp.data)
    from vcp import InputFileError                    # what they raise for a file that is not theirs
"""

__version__ = "0.1.0"

_PUBLIC = {
    "EnhancedFeatureExtractor": "vcp.api",
    "FeatureDataset": "vcp.data",
    "ClipDataset": "vcp.data",
    "InputFileError": "vcp.data",
}


def __getattr__(name):  # keep `import vcp` light: torch/DALI load on first use
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(name)


__all__ = [*_PUBLIC, "__version__"]
