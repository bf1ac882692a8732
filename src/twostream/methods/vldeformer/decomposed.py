"""VLDeformer: a single-stream transformer decomposed into two individual encoders.

[paper] Stage 2 of VLDeformer: the early-interaction transformer is run on a caption alone and on
an image alone, and contrastive learning teaches these separate passes to embed matching pairs
alike, so retrieval becomes two-stream (encode once, compare by dot product). [code] the authors'
embedding is tanh(mean of all output positions), 768-d, no projection; cosine similarity;
InfoNCE with temperature 0.005; CE(S/τ) + CE(Sᵀ/τ). [choice] the mean is masked to real tokens
(``pooling="mean_tanh"``; ``"mean_all_tanh"`` is the code's unmasked mean, ``"cls"`` the [CLS]
state); hard negatives come from :class:`~twostream.methods.vldeformer.BimodalHardNegatives`.

The decomposed model *is* a :class:`TwoStreamEncoder` (same training loop, evaluation, CLI); its
two towers are views of one :class:`VLTransformer`, registered once here as ``transformer``.
"""
from __future__ import annotations

import torch
from torch import nn

from twostream.checkpoints import load_prefixed
from twostream.encoder import TwoStreamEncoder
from twostream.errors import ConfigError
from twostream.prerequisites import Artifact
from twostream.methods.vldeformer.vl_transformer import Pooling, VLTransformer, pool
from twostream.towers.base import TowerOutput

class _View(nn.Module):
    """One modality's pass through the shared transformer (a plain reference: no parameters here)."""

    def __init__(self, transformer: VLTransformer, pooling: Pooling):
        super().__init__()
        object.__setattr__(self, "transformer", transformer)
        self.pooling = pooling
        self.output_dim = self.token_dim = transformer.hidden
        self.image_size = (transformer.image_size, transformer.image_size)
        self.patch_size = transformer.patch_size


class TextView(_View):
    def tokenize(self, captions: list[str]) -> dict[str, torch.Tensor]:
        return self.transformer.tokenize(captions)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> TowerOutput:
        mask = (attention_mask if attention_mask is not None else input_ids != self.transformer.pad_id).bool()
        hidden = self.transformer.forward_text(input_ids, mask)
        return TowerOutput(pooled=pool(hidden, mask, self.pooling), tokens=hidden, mask=mask)


class ImageView(_View):
    def forward(self, images: torch.Tensor) -> TowerOutput:
        hidden = self.transformer.forward_image(images)
        mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        return TowerOutput(pooled=pool(hidden, mask, self.pooling), tokens=hidden)


class DecomposedEncoder(TwoStreamEncoder):
    """Args (VLDeformer's defaults [code]; every other :class:`TwoStreamEncoder` argument passes through):
        transformer: the single-stream network's config (the same as the run it decomposes).
        init_from: that run's checkpoint (a SingleStreamModel ``.ckpt``): its ``transformer.*``
            weights are the starting point — the whole idea of decomposition.
        pooling: see :func:`pool`. temperature: fixed 0.005 unless ``learn_temperature``.

    The towers, embedding size and projection are the transformer's, so they are not arguments.
    """

    artifacts = {"init_from": Artifact("make pretrain CONFIG=experiments/pretrain/single_stream.yaml",
                                       "the single-stream (stage 1) checkpoint VLDeformer decomposes")}
    encoding_modules = ("transformer", *TwoStreamEncoder.encoding_modules)

    def __init__(self, transformer: VLTransformer, init_from: str | None = None, pooling: Pooling = "mean_tanh",
                 temperature: float = 0.005, learn_temperature: bool = False, min_temperature: float = 0.001,
                 lr: float = 7.5e-6, weight_decay: float = 0.05, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, warmup_steps: int = 200, **kwargs):
        if pooling not in ("mean_tanh", "mean_all_tanh", "cls"):
            raise ConfigError(f"pooling: {pooling!r}; valid: 'mean_tanh', 'mean_all_tanh', 'cls'")
        state = kwargs.pop("state", None)
        super().__init__(ImageView(transformer, pooling), TextView(transformer, pooling),
                         embed_dim=transformer.hidden, projection="none", temperature=temperature,
                         learn_temperature=learn_temperature, min_temperature=min_temperature, lr=lr,
                         weight_decay=weight_decay, betas=betas, eps=eps, warmup_steps=warmup_steps, **kwargs)
        self.transformer = transformer  # registered once here; the two views hold plain references
        if init_from:
            load_transformer(self.transformer, init_from)
        self.assemble(state)

    defer_assembly = True


def load_transformer(transformer: VLTransformer, path: str) -> None:
    """``transformer.*`` of a SingleStreamModel checkpoint into ``transformer`` (all keys must fit)."""
    n = load_prefixed(transformer, path, "transformer.", what="init_from:", target="transformer",
                      hint="it is not a single-stream checkpoint of this transformer config: use the `transformer` "
                           "config of the run that wrote it",
                      missing_hint="stage 1, `make pretrain CONFIG=experiments/pretrain/single_stream.yaml`, "
                                   "writes runs/single_stream/last.ckpt")
    print(f"init_from: {n} transformer tensors from {path}")
