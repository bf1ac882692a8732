"""What every tower returns, so heads never depend on which library built the tower."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TowerOutput:
    """``pooled``: one vector per sample (the tower's own pooling/projection), [B, output_dim].
    ``tokens``: per-token features for token-level objectives, [B, L, width].
    ``mask``: [B, L] bool, True for real tokens (None when every token is real, e.g. patches)."""

    pooled: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor | None = None


@dataclass
class MaskedLMSpec:
    """What masked language modeling needs from a text tower, whatever library built it.

    ``random_ids``: the [low, high) id range the 10 % random replacements are drawn from;
    ``embedding``: the input token embedding (tied to the MLM decoder by default)."""

    mask_token_id: int
    special_ids: tuple[int, ...]
    random_ids: tuple[int, int]
    embedding: torch.nn.Embedding
    token_dim: int
