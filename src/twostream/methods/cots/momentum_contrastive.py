"""COTS instance-level interaction: momentum contrastive learning with negative queues."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from twostream.distributed import gather_no_grad, world
from twostream.heads import LossHead
from twostream.methods.cots.momentum_queue import MomentumQueue, momentum_keys


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy against a target distribution (several positives share the mass)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1)


def positive_targets(query_ids: torch.Tensor, key_ids: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """Uniform distribution over the keys that show the query's image (its own pair always included)."""
    pos = query_ids[:, None] == key_ids[None, :]
    pos[torch.arange(len(own), device=own.device), own] = True
    return pos.float() / pos.sum(dim=1, keepdim=True)


class MomentumContrastive(LossHead):
    """Online queries against momentum keys: {this step's global batch} ∪ queue, both directions.

    [paper] image→text InfoNCE over the paired momentum text key plus the text queue, and text→image
    symmetrically. [choice] the current step's momentum keys of *all ranks* are candidates too (so N
    devices see what one device with an N-times batch sees); keys whose image id equals the query's
    (other captions of the same image, in the batch or the queue) are positives with equal target
    mass; pairs the adaptive filter drops have weight 0. Needs a :class:`MomentumQueue` in
    ``model.init_args.state``.
    """

    def __init__(self, weight: float = 1.0, id_positives: bool = True, name: str | None = None):
        super().__init__(weight=weight, name=name or "momentum_contrastive")
        self.id_positives = id_positives

    def attach(self, encoder: nn.Module) -> None:
        super().attach(encoder)
        self.require_state(MomentumQueue, "momentum: {class_path: twostream.methods.cots.MomentumQueue}")

    def candidates(self, outputs, batch: dict, queue: MomentumQueue):
        """(image keys, text keys, key ids, index of each query's own pair) over batch ∪ queue."""
        img_q, txt_q, id_q = queue.queue()
        image_key, text_key = momentum_keys(outputs)
        ids = batch["image_index"].to(img_q.device)
        rank, _ = world()
        own = torch.arange(len(ids), device=ids.device) + rank * len(ids)
        image_keys = torch.cat([gather_no_grad(image_key), img_q])
        text_keys = torch.cat([gather_no_grad(text_key), txt_q])
        key_ids = torch.cat([gather_no_grad(ids), id_q])
        return image_keys, text_keys, key_ids, own, ids

    def forward(self, outputs, batch: dict) -> dict[str, torch.Tensor]:
        queue = self.encoder.find_state(MomentumQueue)
        image_keys, text_keys, key_ids, own, ids = self.candidates(outputs, batch, queue)
        if self.id_positives:
            targets = positive_targets(ids, key_ids, own)
        else:
            targets = F.one_hot(own, num_classes=len(key_ids)).float()
        inv_t = 1.0 / outputs.temperature
        logits_i2t = outputs.image_emb @ text_keys.T * inv_t
        logits_t2i = outputs.text_emb @ image_keys.T * inv_t
        per_pair = 0.5 * (soft_cross_entropy(logits_i2t, targets) + soft_cross_entropy(logits_t2i, targets))
        loss = self.weighted_mean(per_pair, outputs.pair_weight)
        with torch.no_grad():
            hit = 0.5 * ((logits_i2t.argmax(1) == own).float() + (logits_t2i.argmax(1) == own).float()).mean()
        return {f"{self.name}_loss": loss, f"{self.name}_acc": hit,
                f"{self.name}_queue_fill": torch.tensor(float(queue.filled), device=loss.device)}
