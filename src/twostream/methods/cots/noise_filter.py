"""Adaptive momentum filter (AMF): which pairs look too dissimilar to be real pairs (COTS).

COTS [third-party description]: noisy web pairs are filtered adaptively using a momentum-updated
distribution of similarity scores. Ours [choice]: the score of a pair is computed from its momentum
image and text keys (the online embeddings when no momentum towers exist): ``score: margin``
(default) is its cosine similarity minus the mean similarity of each side to the other pairs of the
batch, which cancels the drift of the overall similarity level while the encoders train;
``score: cosine`` is the raw similarity. An EMA of the batch mean and variance of the scores is
kept; after ``warmup_steps`` optimizer steps, pairs scoring below ``mean - k * std`` get weight 0 in
every loss (``outputs.pair_weight``) and are not enqueued. Its stage is after the queue's: it reads
the keys the queue annotates.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from twostream.errors import ConfigError
from twostream.heads import EncoderOutput, TrainingState
from twostream.methods.cots.momentum_queue import KEYS, MomentumQueue


class AdaptiveMomentumFilter(TrainingState):
    """Running statistics (persistent buffers) + the keep rule.

    Args:
        k: how many standard deviations below the running mean a pair may fall and still be kept.
        momentum: EMA coefficient of the running mean/variance (per optimizer step).
        warmup_steps: optimizer steps during which every pair is kept (similarities of an untrained
            model carry no information about noise).

    Logs the kept fraction, threshold and running mean; when the batch has a ``noisy`` flag (the
    synthetic data's injected caption noise) also the share of noisy and of clean pairs dropped.
    """

    stage = 1  # after MomentumQueue (stage 0): it scores the keys the queue annotates

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

    # ------------------------------------------------------------------ during the step
    @torch.no_grad()
    def annotate(self, outputs: EncoderOutput, batch: dict) -> dict[str, torch.Tensor]:
        """Score the pairs (momentum keys when a queue annotated them, else the online embeddings),
        set ``outputs.pair_weight``; the scores are carried to :meth:`update`."""
        if KEYS in outputs.extra:
            image, text = outputs.extra[KEYS]
        elif self.encoder.find_state(MomentumQueue) is not None:
            raise RuntimeError("AdaptiveMomentumFilter annotated before MomentumQueue (see their stages)")
        else:
            image, text = outputs.image_emb, outputs.text_emb
        similarity = self.pair_scores(image.detach(), text.detach())
        outputs.pair_weight = self.keep_mask(similarity)
        self._log(outputs.pair_weight, batch)
        return {"similarity": similarity}

    def _log(self, keep: torch.Tensor, batch: dict) -> None:
        logs = {"filter_kept_fraction": keep.mean(), "filter_threshold": self.threshold.detach(),
                "filter_mean": self.mean.detach()}
        if "noisy" in batch:  # injected noise (caption_noise > 0): how well does the filter find it?
            noisy, dropped = batch["noisy"].bool(), 1.0 - keep
            logs["filter_dropped_noisy"] = (dropped * noisy).sum() / noisy.sum().clamp(min=1)
            logs["filter_dropped_clean"] = (dropped * ~noisy).sum() / (~noisy).sum().clamp(min=1)
        self.encoder.log_dict({f"train/{k}": v for k, v in logs.items()}, batch_size=keep.shape[0])

    # ------------------------------------------------------------------ after the optimizer step
    @torch.no_grad()
    def update(self, carried: dict[str, torch.Tensor], step: int, total_steps: int) -> dict[str, float]:
        self.update_statistics(carried["similarity"])
        return {}

    @torch.no_grad()
    def update_statistics(self, similarity: torch.Tensor) -> None:
        """One EMA step from all pairs of one optimizer step. The first step initialises the
        statistics from the batch instead of blending with the zero/one init."""
        mean = similarity.float().mean()
        var = similarity.float().var(unbiased=False) if similarity.numel() > 1 else torch.zeros_like(mean)
        if int(self.steps) == 0:
            self.mean.copy_(mean)
            self.var.copy_(var)
        else:
            self.mean.lerp_(mean, 1.0 - self.momentum)
            self.var.lerp_(var, 1.0 - self.momentum)
        self.steps += 1
