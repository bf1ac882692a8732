"""twostream: two-stream vision-language pre-training and cross-modal retrieval.

Importing the package is cheap; the public classes load on first attribute access.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "TwoStreamEncoder": "twostream.encoder",
    "EncoderOutput": "twostream.heads",
    "TrainingState": "twostream.heads",
    "RetrievalRecall": "twostream.metrics",
    "LossHead": "twostream.heads",
    "InBatchContrastive": "twostream.contrastive",
    "OpenCLIPVisionTower": "twostream.towers",
    "OpenCLIPTextTower": "twostream.towers",
    "HFTextTower": "twostream.towers",
    "SyntheticShapesDataModule": "twostream.data",
    "RunSummary": "twostream.callbacks",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'twostream' has no attribute {name!r}")


__all__ = list(_EXPORTS)
