"""vcp: video preprocessing for video classification (tensorize -> extract)."""

__version__ = "0.1.0"


def __getattr__(name):  # keep `import vcp` light: torch/DALI load on first use
    if name == "EnhancedFeatureExtractor":
        from .api import EnhancedFeatureExtractor

        return EnhancedFeatureExtractor
    raise AttributeError(name)


__all__ = ["EnhancedFeatureExtractor", "__version__"]
