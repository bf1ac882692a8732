"""A video tower built from any image tower: encode every frame, then aggregate over time.

Why wrap an image tower: the frame encoder is exactly the image model (same configs, same
pre-trained weights — ``init_from`` maps an image checkpoint's ``vision.*`` onto
``vision.frame_tower.*``), and the encoder needs nothing video-specific: it calls
``vision(batch["image"])`` and reads ``vision.output_dim``.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from twostream.errors import ConfigError
from twostream.towers.base import TowerOutput

AGGREGATIONS = ("mean", "transformer")


class VideoTower(nn.Module):
    """Frames [B, T, 3, H, W] -> ``TowerOutput(pooled [B, D], tokens [B, T, D] per-frame features)``.

    ``aggregation="mean"``: the mean of the per-frame pooled vectors (order-free: it cannot tell
    "moves left" from "moves right"). ``"transformer"``: a small temporal transformer over the
    per-frame vectors with learned temporal position embeddings, added as a residual to the mean
    through a zero-initialised projection, so training starts exactly at mean pooling. A 4-D
    batch [B, 3, H, W] is a one-frame video, so the tower also encodes image batches.
    """

    def __init__(self, frame_tower: nn.Module, aggregation: Literal["mean", "transformer"] = "mean",
                 num_frames: int = 12, layers: int = 1, heads: int = 4) -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ConfigError(f"VideoTower aggregation: {aggregation!r}; valid: {', '.join(AGGREGATIONS)}")
        if not hasattr(frame_tower, "output_dim"):
            raise ConfigError(f"VideoTower frame_tower: {type(frame_tower).__name__} has no `output_dim`; "
                              f"give an image tower such as twostream.towers.OpenCLIPVisionTower")
        self.frame_tower = frame_tower
        self.aggregation, self.num_frames = aggregation, int(num_frames)
        self.output_dim = self.token_dim = int(frame_tower.output_dim)
        self.image_size = getattr(frame_tower, "image_size", None)
        self.grid_size = getattr(frame_tower, "grid_size", ())
        if aggregation == "transformer":
            self._build_temporal(layers, heads)

    def _build_temporal(self, layers: int, heads: int) -> None:
        dim = self.output_dim
        if layers < 1 or heads < 1 or dim % heads:
            raise ConfigError(f"VideoTower transformer: need layers >= 1 and heads dividing output_dim={dim}, "
                              f"got layers={layers}, heads={heads}")
        self.temporal_pos = nn.Parameter(torch.randn(self.num_frames, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.temporal = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.temporal_norm = nn.LayerNorm(dim)
        self.temporal_proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.temporal_proj.weight)
        nn.init.zeros_(self.temporal_proj.bias)

    def forward(self, frames: torch.Tensor) -> TowerOutput:
        if frames.ndim == 4:
            frames = frames.unsqueeze(1)
        if frames.ndim != 5:
            raise ValueError(f"VideoTower expects frames [B, T, 3, H, W] (or images [B, 3, H, W]), "
                             f"got shape {tuple(frames.shape)}")
        b, t = frames.shape[:2]
        per_frame = self.frame_tower(frames.flatten(0, 1)).pooled.view(b, t, -1)
        pooled = per_frame.mean(dim=1)
        if self.aggregation == "mean":
            return TowerOutput(pooled=pooled, tokens=per_frame)
        if t > self.num_frames:
            raise ValueError(f"VideoTower has temporal position embeddings for num_frames={self.num_frames} frames, "
                             f"got {t}: raise num_frames (the datamodule's num_frames must not exceed it)")
        tokens = self.temporal(per_frame + self.temporal_pos[:t])
        pooled = pooled + self.temporal_proj(self.temporal_norm(tokens).mean(dim=1))
        return TowerOutput(pooled=pooled, tokens=tokens)
