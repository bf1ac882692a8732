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
