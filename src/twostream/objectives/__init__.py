"""Objectives: one file and one class each, named after the objective."""
from twostream.objectives.base import LossHead
from twostream.objectives.in_batch_contrastive import InBatchContrastive

__all__ = ["LossHead", "InBatchContrastive"]
