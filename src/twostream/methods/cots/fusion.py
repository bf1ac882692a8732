"""The light fusion head shared by the token-level objectives (no cross-attention anywhere).

COTS [paper] predicts masked tokens from unmasked context plus the paired other modality's
features, without a cross-stream module. [choice] each masked token feature is fused with the
paired sample's *global* embedding from the other stream: concatenation (or addition after a
linear map) then Linear-GELU-LayerNorm, then the vocabulary classifier.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from twostream.errors import ConfigError


class GlobalFusion(nn.Module):
    def __init__(self, token_dim: int, global_dim: int, fusion: Literal["concat", "add"] = "concat"):
        super().__init__()
        if fusion not in ("concat", "add"):
            raise ConfigError(f"fusion: {fusion!r}; valid: 'concat', 'add'")
        self.fusion = fusion
        in_dim = token_dim + global_dim if fusion == "concat" else token_dim
        self.global_map = nn.Linear(global_dim, token_dim) if fusion == "add" else None
        self.mlp = nn.Sequential(nn.Linear(in_dim, token_dim), nn.GELU(), nn.LayerNorm(token_dim))

    def forward(self, tokens: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """tokens [N, token_dim] (the masked positions), other [N, global_dim] (their pair's embedding)."""
        if self.global_map is not None:
            return self.mlp(tokens + self.global_map(other))
        return self.mlp(torch.cat([tokens, other], dim=-1))
