"""The optimiser every twostream LightningModule uses: AdamW with decay only on weight matrices, and a
per-step linear warm-up + cosine schedule."""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up from 0, then cosine decay to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def adamw_warmup_cosine(named_parameters: Iterable[tuple[str, torch.nn.Parameter]], lr: float, weight_decay: float,
                        warmup_steps: int, total_steps: int, min_lr_ratio: float,
                        betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> dict:
    """Lightning's ``configure_optimizers`` dict. Frozen parameters are left out; biases, norms,
    embeddings and scalars (the temperature) get no weight decay."""
    decay, no_decay = [], []
    for name, p in named_parameters:
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "embedding" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=tuple(betas), eps=eps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, warmup_steps, total_steps, min_lr_ratio))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
