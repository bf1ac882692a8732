"""COOKIE's visual knowledge sharing: the student's image embedding against a frozen visual teacher."""
from __future__ import annotations

import torch

from twostream.methods.cookie.knowledge_sharing import KnowledgeSharing


class VisualKnowledgeSharing(KnowledgeSharing):
    """``teacher``: a vision tower config; ``teacher_checkpoint``: a twostream checkpoint whose
    ``vision.*`` weights it takes (omit when the tower loads its own weights). See
    :class:`KnowledgeSharing` for the loss."""

    modality = "image"

    def teacher_embedding(self, batch: dict) -> torch.Tensor:
        return self.teacher(batch["image"]).pooled
