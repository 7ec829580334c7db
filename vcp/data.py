"""``from vcp.data import FeatureDataset, ClipDataset``: the loaders (``vcp.outputs.loaders``),
and the one exception they raise for a file that is not what it must be."""

from vcp.outputs.loaders import ClipDataset, FeatureDataset
from vcp.store.readers import InputFileError

__all__ = ["ClipDataset", "FeatureDataset", "InputFileError"]
