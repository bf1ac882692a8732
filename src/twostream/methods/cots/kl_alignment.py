"""COTS task-level interaction: align the image→text and text→image retrieval distributions."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from twostream.errors import ConfigError
from twostream.heads import LossHead
from twostream.methods.cots.momentum_queue import MomentumQueue, momentum_keys


def kl_rows(target_logp: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """KL(target ‖ p) per row, from log-probabilities."""
    return (target_logp.exp() * (target_logp - logp)).sum(dim=1)


class KLAlignment(LossHead):
    """KL divergence between P_i2t and P_t2i over one index set, {own pair} ∪ queue.

    [paper] a KL loss between the probability distributions of the text-to-image and image-to-text
    retrieval tasks, each computed with the negative queues. [choice] image and text queues are filled
    together, so index k of both is one pair; for pair i, P_i2t(k) = softmax_k(v_i·t_k/τ) and
    P_t2i(k) = softmax_k(t_i·v_k/τ), k over {i's momentum keys} ∪ queue; v_i, t_i are the online
    embeddings. ``direction``: ``i2t_t2i`` = KL(P_i2t ‖ P_t2i) (default), ``t2i_i2t`` the reverse,
    ``symmetric`` their mean; ``stop_grad_target`` detaches the first argument (the target).
    Needs a :class:`MomentumQueue` in ``model.init_args.state``.
    """

    def __init__(self, weight: float = 1.0, direction: Literal["i2t_t2i", "t2i_i2t", "symmetric"] = "i2t_t2i",
                 stop_grad_target: bool = True, name: str | None = None):
        super().__init__(weight=weight, name=name or "kl_alignment")
        if direction not in ("i2t_t2i", "t2i_i2t", "symmetric"):
            raise ConfigError(f"KLAlignment.direction: {direction!r}; valid: 'i2t_t2i', 't2i_i2t', 'symmetric'")
        self.direction, self.stop_grad_target = direction, stop_grad_target

    def attach(self, encoder: nn.Module) -> None:
        super().attach(encoder)
        # the two retrieval distributions are over its queues
        self.require_state(MomentumQueue, "momentum: {class_path: twostream.methods.cots.MomentumQueue}")

    def forward(self, outputs, batch: dict) -> dict[str, torch.Tensor]:
        img_q, txt_q, _ = self.encoder.find_state(MomentumQueue).queue()
        image_key, text_key = momentum_keys(outputs)
        inv_t = 1.0 / outputs.temperature
        # column 0: the pair's own momentum keys; columns 1..: the queue (slot k = one pair in both)
        own_i2t = (outputs.image_emb * text_key).sum(-1, keepdim=True)
        own_t2i = (outputs.text_emb * image_key).sum(-1, keepdim=True)
        logp_i2t = F.log_softmax(torch.cat([own_i2t, outputs.image_emb @ txt_q.T], dim=1) * inv_t, dim=1)
        logp_t2i = F.log_softmax(torch.cat([own_t2i, outputs.text_emb @ img_q.T], dim=1) * inv_t, dim=1)

        def kl(target: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
            return kl_rows(target.detach() if self.stop_grad_target else target, other)

        if self.direction == "i2t_t2i":
            per_pair = kl(logp_i2t, logp_t2i)
        elif self.direction == "t2i_i2t":
            per_pair = kl(logp_t2i, logp_i2t)
        else:
            per_pair = 0.5 * (kl(logp_i2t, logp_t2i) + kl(logp_t2i, logp_i2t))
        return {f"{self.name}_loss": self.weighted_mean(per_pair, outputs.pair_weight)}
