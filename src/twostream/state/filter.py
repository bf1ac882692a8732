"""Adaptive momentum filter (AMF) statistics: which pairs look too dissimilar to be real pairs.

COTS [third-party description]: noisy web pairs are filtered adaptively using a momentum-updated
distribution of similarity scores. Ours [choice]: the score of a pair is computed from its momentum
image and text keys (the online embeddings when no momentum towers exist): ``score: margin``
(default) is its cosine similarity minus the mean similarity of each side to the other pairs of the
batch, which cancels the drift of the overall similarity level while the encoders train;
``score: cosine`` is the raw similarity. An EMA of the batch mean and variance of the scores is
kept; after ``warmup_steps`` optimizer steps, pairs scoring below ``mean - k * std`` get weight 0 in
every loss and are not enqueued.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from twostream.errors import ConfigError


class AdaptiveMomentumFilter(nn.Module):
    """Running statistics (persistent buffers) + the keep rule.

    Args:
        k: how many standard deviations below the running mean a pair may fall and still be kept.
        momentum: EMA coefficient of the running mean/variance (per optimizer step).
        warmup_steps: optimizer steps during which every pair is kept (similarities of an untrained
            model carry no information about noise).
    """

    def __init__(self, k: float = 2.0, momentum: float = 0.99, warmup_steps: int = 500,
                 score: Literal["margin", "cosine"] = "margin"):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"AdaptiveMomentumFilter.momentum: expected a value in [0, 1), got {momentum}")
        if k <= 0:
            raise ConfigError(f"AdaptiveMomentumFilter.k: expected > 0, got {k}")
        if score not in ("margin", "cosine"):
            raise ConfigError(f"AdaptiveMomentumFilter.score: {score!r}; valid: 'margin', 'cosine'")
        self.k, self.momentum, self.warmup_steps, self.score = float(k), float(momentum), int(warmup_steps), score
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("var", torch.ones(()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def active(self) -> bool:
        return int(self.steps) >= self.warmup_steps

    @property
    def threshold(self) -> torch.Tensor:
        return self.mean - self.k * self.var.clamp(min=0).sqrt()

    @torch.no_grad()
    def pair_scores(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Score of each (image_i, text_i) pair of a batch of normalised embeddings."""
        sim = image @ text.T
        positive = sim.diagonal()
        n = sim.shape[0]
        if self.score == "cosine" or n < 2:
            return positive
        off_rows = (sim.sum(1) - positive) / (n - 1)  # image i vs the other captions
        off_cols = (sim.sum(0) - positive) / (n - 1)  # caption i vs the other images
        return positive - 0.5 * (off_rows + off_cols)

    @torch.no_grad()
    def keep_mask(self, similarity: torch.Tensor) -> torch.Tensor:
        """Float weights (1 keep, 0 drop) for a batch of positive-pair similarities."""
        if not self.active:
            return torch.ones_like(similarity)
        return (similarity >= self.threshold.to(similarity.dtype)).to(similarity.dtype)

    @torch.no_grad()
    def update(self, similarity: torch.Tensor) -> None:
        """One EMA step from all pairs of one optimizer step (callback only). The first step
        initialises the statistics from the batch instead of blending with the zero/one init."""
        mean = similarity.float().mean()
        var = similarity.float().var(unbiased=False) if similarity.numel() > 1 else torch.zeros_like(mean)
        if int(self.steps) == 0:
            self.mean.copy_(mean)
            self.var.copy_(var)
        else:
            self.mean.lerp_(mean, 1.0 - self.momentum)
            self.var.lerp_(var, 1.0 - self.momentum)
        self.steps += 1
