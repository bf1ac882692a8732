"""Deprecation alias: objectives moved to the core (``twostream.heads``, ``twostream.contrastive``)
and to their paper's folder (``twostream.methods.*``)."""
from twostream._alias import lazy_aliases

_COTS, _COOKIE, _VLD = "twostream.methods.cots", "twostream.methods.cookie", "twostream.methods.vldeformer"
__getattr__ = lazy_aliases(__name__, {
    "LossHead": "twostream.heads", "InBatchContrastive": "twostream.contrastive",
    "MomentumContrastive": _COTS, "KLAlignment": _COTS, "MaskedLanguageModeling": _COTS, "MaskedVisionModeling": _COTS,
    "VisualKnowledgeSharing": _COOKIE, "TextualKnowledgeSharing": _COOKIE, "BimodalHardNegatives": _VLD})
