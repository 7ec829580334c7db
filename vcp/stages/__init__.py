"""The work: tensorize, extract (from .pt or from videos), merge, and the features sink they share."""
