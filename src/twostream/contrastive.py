"""CLIP-style symmetric InfoNCE over the (global) batch: the baseline every system builds on."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from twostream.distributed import gather_with_grad, world
from twostream.heads import LossHead


class InBatchContrastive(LossHead):
    """Image→text and text→image cross-entropy with the other rows of the global batch as negatives.

    Exact under DDP: keys are gathered *with* gradient and each rank computes the loss of its own
    queries only, with labels offset by ``rank * local_batch`` (see ``gather_with_grad``). The mean
    of the per-rank losses equals the single-process loss on the concatenated batch, and so do the
    DDP-averaged gradients (tested to 1e-5). ``label_smoothing`` is ours (default 0, as in CLIP).
    Pairs dropped by an adaptive filter (``outputs.pair_weight`` = 0) do not count as queries.
    """

    def __init__(self, weight: float = 1.0, label_smoothing: float = 0.0, name: str | None = None):
        super().__init__(weight=weight, name=name or "contrastive")
        self.label_smoothing = label_smoothing

    def forward(self, outputs, batch: dict) -> dict[str, torch.Tensor]:
        img, txt = outputs.image_emb, outputs.text_emb
        rank, _ = world()
        labels = torch.arange(img.shape[0], device=img.device) + rank * img.shape[0]
        inv_t = 1.0 / outputs.temperature
        logits_i2t = img @ gather_with_grad(txt).T * inv_t
        logits_t2i = txt @ gather_with_grad(img).T * inv_t
        per_pair = 0.5 * (F.cross_entropy(logits_i2t, labels, label_smoothing=self.label_smoothing, reduction="none")
                          + F.cross_entropy(logits_t2i, labels, label_smoothing=self.label_smoothing, reduction="none"))
        loss = self.weighted_mean(per_pair, outputs.pair_weight)
        with torch.no_grad():
            acc = 0.5 * ((logits_i2t.argmax(1) == labels).float().mean() + (logits_t2i.argmax(1) == labels).float().mean())
        return {f"{self.name}_loss": loss, f"{self.name}_acc": acc}
