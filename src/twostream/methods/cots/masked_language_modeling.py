"""COTS token level, text side: masked language modeling helped by the paired image."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from twostream.errors import ConfigError
from twostream.heads import LossHead
from twostream.methods.cots.fusion import GlobalFusion
from twostream.masking import mask_tokens


class MaskedLanguageModeling(LossHead):
    """Mask captions BERT-style, re-encode them with the text tower, predict the original ids.

    [paper] masked tokens are predicted from unmasked context plus the paired image's features,
    with no cross-stream network. [choice] ``mask_prob`` 15 % of non-special tokens, 80/10/10
    [MASK]/random/kept (BERT); each masked token's feature is fused with the paired image's global
    embedding (:class:`GlobalFusion`); the classifier is tied to the input token embedding
    (``tie_embeddings``); ``detach_image`` stops this loss from training the image tower. For
    open_clip text towers the [MASK] id is one past the BPE vocabulary (set ``vocab_size`` one
    larger in the text config), unless ``mask_token_id`` is given. A bidirectional text tower
    (open_clip ``no_causal_mask: true``) lets each token see both sides, as BERT's MLM assumes.
    """

    def __init__(self, weight: float = 1.0, mask_prob: float = 0.15, replace_mask: float = 0.8,
                 replace_random: float = 0.1, fusion: Literal["concat", "add"] = "concat",
                 tie_embeddings: bool = True, detach_image: bool = False, mask_token_id: int | None = None,
                 name: str | None = None):
        super().__init__(weight=weight, name=name or "mlm")
        if not 0.0 < mask_prob < 1.0:
            raise ConfigError(f"MaskedLanguageModeling.mask_prob: expected a value in (0, 1), got {mask_prob}")
        if replace_mask < 0 or replace_random < 0 or replace_mask + replace_random > 1.0:
            raise ConfigError("MaskedLanguageModeling: replace_mask + replace_random must lie in [0, 1]")
        self.mask_prob, self.replace_mask, self.replace_random = mask_prob, replace_mask, replace_random
        self.fusion_kind, self.tie_embeddings = fusion, tie_embeddings
        self.detach_image, self.mask_token_id = detach_image, mask_token_id

    def attach(self, encoder: nn.Module) -> None:
        super().attach(encoder)
        if not hasattr(encoder.text, "mlm_spec"):
            raise ConfigError(f"MaskedLanguageModeling: text tower {type(encoder.text).__name__} has no mlm_spec()")
        spec = encoder.text.mlm_spec(self.mask_token_id)
        self.spec = spec  # a plain attribute: its embedding is the tower's own module, not a copy
        self.register_buffer("special_ids", torch.tensor(spec.special_ids, dtype=torch.long), persistent=False)
        self.fuse = GlobalFusion(spec.token_dim, encoder.hparams.embed_dim, self.fusion_kind)
        vocab = spec.embedding.num_embeddings
        if self.tie_embeddings and spec.embedding.embedding_dim != spec.token_dim:
            raise ConfigError("MaskedLanguageModeling.tie_embeddings: token embedding and token feature sizes differ; "
                              "set tie_embeddings: false")
        self.decoder = None if self.tie_embeddings else nn.Linear(spec.token_dim, vocab, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, outputs, batch: dict) -> dict[str, torch.Tensor]:
        spec = self.spec
        ids, attention = batch["input_ids"], batch["attention_mask"].bool()
        special = torch.isin(ids, self.special_ids)
        masked_ids, selected = mask_tokens(ids, attention & ~special, spec.mask_token_id, spec.random_ids,
                                           outputs.generator, self.mask_prob, self.replace_mask, self.replace_random)
        tokens = self.encoder.text(masked_ids, attention).tokens
        rows, cols = selected.nonzero(as_tuple=True)
        image = outputs.image_emb.detach() if self.detach_image else outputs.image_emb
        fused = self.fuse(tokens[rows, cols], image[rows])
        weight = self.decoder.weight if self.decoder is not None else spec.embedding.weight
        logits = fused @ weight.T + self.bias
        per_token = F.cross_entropy(logits, ids[rows, cols], reduction="none")
        keep = outputs.pair_weight[rows] if outputs.pair_weight is not None else None
        loss = self.weighted_mean(per_token, keep) if len(rows) else tokens.sum() * 0.0
        with torch.no_grad():
            acc = (logits.argmax(1) == ids[rows, cols]).float().mean() if len(rows) else loss.new_zeros(())
        return {f"{self.name}_loss": loss, f"{self.name}_acc": acc}
