"""What COOKIE's two unimodal knowledge-sharing objectives have in common.

[paper] COOKIE shares knowledge between models through contrastive learning; cross-modal sharing
improves the unimodal representations. [choice] the student's (normalised) embedding, through a
trainable linear map into the teacher's space, must pick out the frozen teacher's embedding of the
*same* item among the teacher's embeddings of the global batch (InfoNCE, fixed temperature
``temperature``, default 0.07). Only the student side has gradient; the teacher is frozen.
Subclasses say which modality they read (``modality``) and how the teacher sees the batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from twostream.distributed import gather_no_grad, world
from twostream.heads import LossHead
from twostream.prerequisites import Artifact
from twostream.methods.cookie.teacher import FrozenTeacher


class KnowledgeSharing(LossHead):
    modality = ""  # "image" | "text", set by subclasses
    artifacts = {"teacher_checkpoint": Artifact("make teacher", "the frozen teachers (a default-config run)")}

    def __init__(self, teacher: nn.Module, teacher_checkpoint: str | None = None, temperature: float = 0.07,
                 weight: float = 1.0, name: str | None = None):
        super().__init__(weight=weight, name=name)
        prefix = "vision." if self.modality == "image" else "text."
        self.teacher = FrozenTeacher(teacher, teacher_checkpoint, prefix=prefix)
        self.temperature = float(temperature)
        self.to_teacher: nn.Module = nn.Identity()

    def attach(self, encoder: nn.Module) -> None:
        super().attach(encoder)
        self.to_teacher = nn.Linear(encoder.embed_dim, self.teacher.output_dim, bias=False)

    def teacher_embedding(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, outputs, batch: dict) -> dict[str, torch.Tensor]:
        student = outputs.image_emb if self.modality == "image" else outputs.text_emb
        query = F.normalize(self.to_teacher(student), dim=-1)
        keys = gather_no_grad(F.normalize(self.teacher_embedding(batch).float(), dim=-1).to(query.dtype))
        rank, _ = world()
        labels = torch.arange(query.shape[0], device=query.device) + rank * query.shape[0]
        logits = query @ keys.T / self.temperature
        loss = self.weighted_mean(F.cross_entropy(logits, labels, reduction="none"), outputs.pair_weight)
        with torch.no_grad():
            acc = (logits.argmax(1) == labels).float().mean()
        return {f"{self.name}_loss": loss, f"{self.name}_acc": acc}
