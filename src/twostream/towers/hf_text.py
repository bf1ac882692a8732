"""A Hugging Face transformers text encoder (BERT, RoBERTa, MiniLM ...) as a text tower.

Loading is local-only (``local_files_only=True``): a hub id that is not in the local cache fails at
once with a message, instead of retrying downloads. ``config`` builds a randomly initialised model
of any architecture (``model_type`` plus sizes) for offline experiments; it then needs a local
``tokenizer`` directory.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from twostream.errors import ConfigError, WeightsNotAvailableError
from twostream.towers.base import MaskedLMSpec, TowerOutput


def _local(loader, name: str, what: str):
    try:
        return loader(name, local_files_only=True)
    except (OSError, ValueError) as err:
        raise WeightsNotAvailableError(
            f"{what} {name!r} is not available locally and twostream does not download at run time: "
            f"download it once on a machine with network (e.g. `huggingface-cli download {name}`) or give "
            f"a local directory holding its files. ({type(err).__name__}: {str(err).splitlines()[0]})") from None


class HFTextTower(nn.Module):
    """Pooled output is the [CLS] feature (``pooling="cls"``) or the masked mean of token features."""

    def __init__(self, name_or_path: str | None = None, config: dict[str, Any] | None = None,
                 tokenizer: str | None = None, pooling: Literal["cls", "mean"] = "cls", max_length: int = 32):
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        if name_or_path is None and config is None:
            raise ConfigError("HFTextTower: give `name_or_path` (a local model directory or cached id) or `config`")
        if config is not None:
            cfg = dict(config)
            model_type = cfg.pop("model_type", None)
            if model_type is None:
                raise ConfigError("HFTextTower config: `model_type` is required (e.g. bert)")
            self.net = AutoModel.from_config(AutoConfig.for_model(model_type, **cfg))
        else:
            # from_pretrained returns eval mode and Lightning keeps submodule modes: without this, dropout
            # would stay off while the tower trains
            self.net = _local(AutoModel.from_pretrained, name_or_path, "HF model").train()
        if getattr(self.net, "pooler", None) is not None:
            self.net.pooler = None  # unused (we pool ourselves); unused parameters break DDP
        tok_source = tokenizer or name_or_path
        if tok_source is None:
            raise ConfigError("HFTextTower: `tokenizer` (a local tokenizer directory) is required with `config`")
        self.tokenizer = _local(AutoTokenizer.from_pretrained, tok_source, "HF tokenizer")
        if pooling not in ("cls", "mean"):
            raise ConfigError(f"HFTextTower pooling: {pooling!r}; valid: 'cls', 'mean'")
        self.pooling = pooling
        self.max_length = max_length
        self.output_dim = self.token_dim = int(self.net.config.hidden_size)

    def mlm_spec(self, mask_token_id: int | None = None) -> MaskedLMSpec:
        """The tokenizer's own [MASK] and special tokens (BERT-style vocabularies have them)."""
        tok = self.tokenizer
        mask_id = mask_token_id if mask_token_id is not None else tok.mask_token_id
        if mask_id is None:
            raise ConfigError(f"HFTextTower: tokenizer {type(tok).__name__} has no mask token; give the MLM head a mask_token_id")
        return MaskedLMSpec(mask_token_id=int(mask_id), special_ids=tuple(tok.all_special_ids),
                            random_ids=(0, len(tok)), embedding=self.net.get_input_embeddings(), token_dim=self.token_dim)

    def tokenize(self, captions: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(captions), padding="max_length", truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"].bool()}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> TowerOutput:
        if attention_mask is None:
            attention_mask = input_ids != (self.tokenizer.pad_token_id or 0)
        tokens = self.net(input_ids=input_ids, attention_mask=attention_mask.long()).last_hidden_state
        if self.pooling == "cls":
            pooled = tokens[:, 0]
        else:
            m = attention_mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * m).sum(1) / m.sum(1).clamp_min(1.0)
        return TowerOutput(pooled=pooled, tokens=tokens, mask=attention_mask.bool())
