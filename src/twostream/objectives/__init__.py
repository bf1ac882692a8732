"""Objectives: one file and one class each, named after the objective."""
from twostream.objectives.base import LossHead
from twostream.objectives.bimodal_hard_negatives import BimodalHardNegatives
from twostream.objectives.in_batch_contrastive import InBatchContrastive
from twostream.objectives.kl_alignment import KLAlignment
from twostream.objectives.masked_language_modeling import MaskedLanguageModeling
from twostream.objectives.masked_vision_modeling import MaskedVisionModeling
from twostream.objectives.momentum_contrastive import MomentumContrastive
from twostream.objectives.textual_knowledge_sharing import TextualKnowledgeSharing
from twostream.objectives.visual_knowledge_sharing import VisualKnowledgeSharing

__all__ = ["BimodalHardNegatives", "InBatchContrastive", "KLAlignment", "LossHead", "MaskedLanguageModeling", "MaskedVisionModeling",
           "MomentumContrastive", "TextualKnowledgeSharing", "VisualKnowledgeSharing"]
