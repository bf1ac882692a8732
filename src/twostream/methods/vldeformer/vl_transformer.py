"""A single-stream (early-interaction) vision-language transformer, ViLT-style, on HF ``ViltModel``.

Text tokens and image patches go through one transformer together; that is what makes pair scoring
accurate and retrieval slow (every image-caption pair is one forward pass). The same weights can
also run on one modality alone, which is what VLDeformer's decomposition trains.

[choice] The network is HF ``ViltModel`` (random init from ``config``, or pretrained weights from a
local directory), so real ViLT checkpoints load unchanged. Two things are done here instead of by
``ViltModel.forward``: (1) images are embedded with ViLT's own patch projection, position and
[CLS] parameters but without its per-sample random patch sampling (a Python loop over the batch
that draws from the global RNG; our images have a fixed size, so every patch is kept) and
(2) single-modality sequences, which ``ViltModel.forward`` cannot take.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from twostream.errors import ConfigError

OPEN_CLIP_VOCAB = 49408  # open_clip's BPE; the id past it is [MASK]
Pooling = Literal["mean_tanh", "mean_all_tanh", "cls"]


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: Pooling) -> torch.Tensor:
    """One vector per sequence of a single-modality pass: [CLS], or tanh of the (masked) mean of the states."""
    if how == "cls":
        return hidden[:, 0]
    m = (mask if how == "mean_tanh" else torch.ones_like(mask)).unsqueeze(-1).to(hidden.dtype)
    return torch.tanh((hidden * m).sum(1) / m.sum(1).clamp_min(1.0))


class VLTransformer(nn.Module):
    """Args:
        config: ``ViltConfig`` fields (hidden_size, num_hidden_layers, image_size, patch_size, ...).
        pretrained: a local directory with ``ViltModel`` weights (``config`` then overrides nothing).
        tokenizer: ``"open_clip"`` (the BPE vocabulary in the open_clip wheel; needs vocab_size
            >= 49409, the last id being [MASK]) or a local HF tokenizer directory (BERT's for ViLT).
        context_length: caption length in tokens (<= the config's max_position_embeddings).
        stem: "patch" (ViLT's patch-sized convolution) or "conv" (the towers' ``ConvStem``: stride-2
            3x3 convolutions, still one token per patch) [choice]. The conv stem is what made
            the small two-stream towers learn early (docs/testbed.md); a from-scratch cross-encoder
            has the same problem, more so (docs/cookie_vldeformer.md).
        stem_channels: the conv stem's first-stage channels.
    """

    def __init__(self, config: dict[str, Any] | None = None, pretrained: str | None = None,
                 tokenizer: str = "open_clip", context_length: int = 32,
                 stem: Literal["patch", "conv"] = "patch", stem_channels: int = 32):
        super().__init__()
        from transformers import ViltConfig, ViltModel

        if pretrained:
            from twostream.towers.hf_text import _local

            self.vilt = _local(ViltModel.from_pretrained, pretrained, "ViLT model").train()  # not eval: dropout
        else:
            self.vilt = ViltModel(ViltConfig(**{"vocab_size": OPEN_CLIP_VOCAB + 1, **(config or {})}))
        cfg = self.vilt.config
        if context_length > cfg.max_position_embeddings:
            raise ConfigError(f"context_length {context_length} > the text position table "
                              f"({cfg.max_position_embeddings}): raise config.max_position_embeddings")
        self.hidden = self.output_dim = self.token_dim = int(cfg.hidden_size)
        self.image_size, self.patch_size = int(cfg.image_size), int(cfg.patch_size)
        self.context_length = context_length
        if stem == "conv":  # replaces the patch projection (a pretrained one is not kept)
            from twostream.towers.open_clip_towers import ConvStem

            self.vilt.embeddings.patch_embeddings = ConvStem(self.patch_size, self.hidden, stem_channels)
        elif stem != "patch":
            raise ConfigError(f"stem: {stem!r}; valid: 'patch', 'conv'")
        self._set_tokenizer(tokenizer, int(cfg.vocab_size))

    def _set_tokenizer(self, tokenizer: str, vocab_size: int) -> None:
        if tokenizer == "open_clip":
            import open_clip

            if vocab_size < OPEN_CLIP_VOCAB + 1:
                raise ConfigError(f"tokenizer 'open_clip' needs vocab_size >= {OPEN_CLIP_VOCAB + 1}, got {vocab_size}")
            self.tokenizer, self.pad_id, self.mask_id = open_clip.SimpleTokenizer(context_length=self.context_length), 0, OPEN_CLIP_VOCAB
            tok = self.tokenizer
            self.special_ids = (0, tok.sot_token_id, tok.eot_token_id)
        else:
            from transformers import AutoTokenizer

            from twostream.towers.hf_text import _local

            self.tokenizer = _local(AutoTokenizer.from_pretrained, tokenizer, "HF tokenizer")
            self.pad_id, self.mask_id = int(self.tokenizer.pad_token_id or 0), self.tokenizer.mask_token_id
            self.special_ids = tuple(self.tokenizer.all_special_ids)

    def tokenize(self, captions: list[str]) -> dict[str, torch.Tensor]:
        if hasattr(self.tokenizer, "sot_token_id"):  # open_clip
            ids = self.tokenizer(list(captions))
        else:
            ids = self.tokenizer(list(captions), padding="max_length", truncation=True,
                                 max_length=self.context_length, return_tensors="pt")["input_ids"]
        return {"input_ids": ids, "attention_mask": ids != self.pad_id}

    # ------------------------------------------------------------------ embeddings
    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        emb = self.vilt.embeddings
        x = emb.text_embeddings(input_ids=input_ids)
        return x + emb.token_type_embeddings(torch.zeros_like(input_ids))

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        """[CLS] + every patch, ViLT's position table resized to the patch grid when it differs."""
        emb = self.vilt.embeddings
        x = emb.patch_embeddings(images)  # [B, D, gh, gw]
        b, d, gh, gw = x.shape
        table = emb.position_embeddings  # [1, 1 + g*g, D]
        grid = int(round((table.shape[1] - 1) ** 0.5))
        pos = table[:, 1:].transpose(1, 2).reshape(1, d, grid, grid)
        if (gh, gw) != (grid, grid):
            pos = F.interpolate(pos, size=(gh, gw), mode="bilinear", align_corners=True)
        x = x + pos
        x = torch.cat([emb.cls_token.expand(b, -1, -1) + table[:, :1], x.flatten(2).transpose(1, 2)], dim=1)
        types = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
        return emb.dropout(x) + emb.token_type_embeddings(types)

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The shared transformer over any token sequence (text, image or both), final LayerNorm."""
        from transformers.masking_utils import create_bidirectional_mask

        attn = create_bidirectional_mask(config=self.vilt.config, inputs_embeds=x, attention_mask=mask.long())
        return self.vilt.layernorm(self.vilt.encoder(x, attention_mask=attn)[0])

    # ------------------------------------------------------------------ the three uses
    def forward_pair(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, images: torch.Tensor):
        """Joint sequence [text; image] → (hidden states, pooled [CLS] of the text = ViLT's pooler)."""
        img = self.embed_image(images)
        x = torch.cat([self.embed_text(input_ids), img], dim=1)
        mask = torch.cat([attention_mask.bool(), attention_mask.new_ones(img.shape[:2], dtype=torch.bool)], dim=1)
        hidden = self.encode(x, mask)
        return hidden, self.vilt.pooler(hidden)

    def forward_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encode(self.embed_text(input_ids), attention_mask.bool())

    def forward_image(self, images: torch.Tensor) -> torch.Tensor:
        x = self.embed_image(images)
        return self.encode(x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device))
