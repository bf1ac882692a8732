"""COOKIE's weight-sharing transformer: one stack of layers reads both streams' token sequences.

[paper] COOKIE puts a transformer whose weights are shared between modalities on top of the visual
and the textual encoder, so that both paths attend with the same parameters and are pushed towards
the same semantics. [choice] everything the abstract leaves open: a per-modality linear adapter
from each tower's token width to ``width`` (towers rarely share a width), a learned modality
embedding added to every token (so the shared layers can still tell the streams apart), pre-norm
``nn.TransformerEncoderLayer`` blocks, and pooling by the masked mean of the output tokens
(``pooling="cls"`` prepends a learned token instead). Heads then see this module's tokens and
pooled vector as the tower output.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from twostream.errors import ConfigError
from twostream.towers.base import TowerOutput

MODALITIES = ("image", "text")


class SharedTransformer(nn.Module):
    """Args:
        width, layers, heads, mlp_ratio, dropout: the shared transformer's size.
        pooling: ``"mean"`` (masked mean of the output tokens) or ``"cls"`` (a learned first token).
        modality_embedding: add a learned per-modality vector to the input tokens.
    """

    def __init__(self, width: int = 256, layers: int = 2, heads: int = 4, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, pooling: Literal["mean", "cls"] = "mean", modality_embedding: bool = True):
        super().__init__()
        if width % heads:
            raise ConfigError(f"SharedTransformer: width ({width}) must be a multiple of heads ({heads})")
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"SharedTransformer pooling: {pooling!r}; valid: 'mean', 'cls'")
        self.width = self.output_dim = int(width)
        self.pooling = pooling
        layer = nn.TransformerEncoderLayer(width, heads, int(width * mlp_ratio), dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.modality = nn.Parameter(torch.zeros(2, width)) if modality_embedding else None
        self.cls = nn.Parameter(torch.zeros(1, 1, width)) if pooling == "cls" else None
        self.adapters = nn.ModuleDict()

    def bind(self, image_dim: int, text_dim: int) -> None:
        """Create the input adapters once the towers' token widths are known (the encoder calls this)."""
        self.adapters["image"] = nn.Linear(image_dim, self.width)
        self.adapters["text"] = nn.Linear(text_dim, self.width)

    def forward(self, tower: TowerOutput, modality: Literal["image", "text"]) -> TowerOutput:
        if modality not in self.adapters:
            raise RuntimeError(f"SharedTransformer has no {modality!r} adapter: call bind() first (the encoder does)")
        x = self.adapters[modality](tower.tokens)
        if self.modality is not None:
            x = x + self.modality[MODALITIES.index(modality)]
        mask = tower.mask if tower.mask is not None else torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
            mask = torch.cat([mask.new_ones(x.shape[0], 1), mask], dim=1)
        x = self.norm(self.layers(x, src_key_padding_mask=~mask))
        if self.cls is not None:
            pooled = x[:, 0]
        else:
            m = mask.unsqueeze(-1).to(x.dtype)
            pooled = (x * m).sum(1) / m.sum(1).clamp_min(1.0)
        return TowerOutput(pooled=pooled, tokens=x, mask=mask)
