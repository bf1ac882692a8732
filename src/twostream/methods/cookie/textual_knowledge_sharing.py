"""COOKIE's textual knowledge sharing: the student's caption embedding against a frozen text teacher."""
from __future__ import annotations

import torch

from twostream.methods.cookie.knowledge_sharing import KnowledgeSharing


class TextualKnowledgeSharing(KnowledgeSharing):
    """``teacher``: a text tower config, e.g. ``HFTextTower`` on a local HF model directory, or an
    open_clip text tower with ``teacher_checkpoint`` (a twostream checkpoint's ``text.*`` weights).
    The teacher tokenizes the captions itself (its vocabulary need not be the student's): done in
    :meth:`prepare_batch`, on the CPU before the batch moves to the device."""

    modality = "text"

    def prepare_batch(self, batch: dict) -> None:
        if "caption" in batch:
            tokens = self.teacher.tower.tokenize(list(batch["caption"]))
            batch[f"{self.name}_input_ids"] = tokens["input_ids"]
            batch[f"{self.name}_attention_mask"] = tokens["attention_mask"]

    def teacher_embedding(self, batch: dict) -> torch.Tensor:
        key = f"{self.name}_input_ids"
        if key not in batch:
            raise KeyError(f"{type(self).__name__}: batch has no {key!r}; captions must reach the encoder "
                           f"as text (`caption`) so the teacher can tokenize them")
        return self.teacher(batch[key], batch[f"{self.name}_attention_mask"]).pooled
