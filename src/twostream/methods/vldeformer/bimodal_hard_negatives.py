"""VLDeformer's contrastive objective with bi-modal hard negatives appended to the softmax.

[paper] contrastive learning with "bi-modal hard negatives"; [code] InfoNCE over the batch with
CE(S/τ) + CE(Sᵀ/τ) *summed* (``reduction="sum"``; ``"mean"`` halves it), τ = 0.005 (the encoder's
temperature). [code, unused in the authors' released loop; ours to switch on] a negative caption
replaces ~30 % of the caption's object/attribute words (``word_fraction``), a negative image takes
half of its patch cells from another image of the batch (``patch_fraction``). [choice] every hard
negative caption is one more column of the image→text softmax for *every* image (likewise hard
images for text→image); a caption with no vocabulary word cannot be turned into a negative and is
left out (its column is −inf), and the share of usable ones is logged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from twostream.distributed import gather_with_grad, world
from twostream.errors import ConfigError
from twostream.heads import LossHead
from twostream import seeding
from twostream.methods.vldeformer.near_miss import load_word_groups, mix_patches, near_miss_captions


class BimodalHardNegatives(LossHead):
    """Args:
        caption_negatives / image_negatives: toggles for each kind of hard negative.
        words: the replaceable vocabulary — a dict of groups (``"a|b"`` marks synonyms), a list, or
            a word-list file; default: the datamodule's ``caption_word_groups()`` (synthetic data).
        patch_size: cell size of the image mixing; default the vision tower's ``patch_size``.
    """

    def __init__(self, caption_negatives: bool = True, image_negatives: bool = True, word_fraction: float = 0.3,
                 patch_fraction: float = 0.5, words: str | list[str] | dict[str, list[str]] | None = None,
                 patch_size: int | None = None, reduction: str = "sum", weight: float = 1.0, name: str | None = None):
        super().__init__(weight=weight, name=name or "decomposition")
        if reduction not in ("sum", "mean"):
            raise ConfigError(f"reduction: {reduction!r}; valid: 'sum' (VLDeformer's code), 'mean'")
        self.caption_negatives, self.image_negatives = caption_negatives, image_negatives
        self.word_fraction, self.patch_fraction = word_fraction, patch_fraction
        self.groups = load_word_groups(words) if words is not None else None
        self.patch_size, self.reduction = patch_size, reduction

    def attach(self, encoder: nn.Module) -> None:
        super().attach(encoder)
        if self.image_negatives and self.patch_size is None:
            self.patch_size = getattr(encoder.vision, "patch_size", None)
            if self.patch_size is None:
                raise ConfigError(f"{type(self).__name__}: set patch_size (the vision tower does not say its own)")

    def _word_groups(self) -> dict:
        if self.groups is None:
            trainer = getattr(self.encoder, "_trainer", None)
            dm = trainer.datamodule if trainer is not None else None
            if not hasattr(dm, "caption_word_groups"):
                raise ConfigError(f"{type(self).__name__}: give `words` (a word list or file): the datamodule "
                                  f"{type(dm).__name__} has no caption_word_groups()")
            self.groups = load_word_groups(dm.caption_word_groups())
        return self.groups

    def prepare_batch(self, batch: dict) -> None:
        """Negative captions, tokenized on the CPU; seeded by (run seed, step, caption index): resumable."""
        if not self.caption_negatives or "caption" not in batch:
            return
        seed = seeding.per_sample_step_seed(self.encoder.global_step)
        keys = [int(k) for k in batch["text_index"]]
        captions, valid = near_miss_captions(list(batch["caption"]), self._word_groups(), self.word_fraction,
                                                 seed, keys)
        tokens = self.encoder.text.tokenize(captions)
        batch.update({"near_miss_input_ids": tokens["input_ids"],
                      "near_miss_attention_mask": tokens["attention_mask"], "near_miss_valid": valid})

    def forward(self, outputs, batch: dict) -> dict[str, torch.Tensor]:
        img, txt, inv_t = outputs.image_emb, outputs.text_emb, 1.0 / outputs.temperature
        rank, _ = world()
        labels = torch.arange(img.shape[0], device=img.device) + rank * img.shape[0]
        i2t, t2i = img @ gather_with_grad(txt).T, txt @ gather_with_grad(img).T
        logs: dict[str, torch.Tensor] = {}
        if self.caption_negatives:
            neg = self.encoder.encode_text(batch["near_miss_input_ids"], batch["near_miss_attention_mask"])[0]
            valid = batch["near_miss_valid"].to(img.device)
            extra = (img @ neg.T).masked_fill(~valid.unsqueeze(0), float("-inf"))
            logs[f"{self.name}_caption_negatives_valid"] = valid.float().mean()
            logs[f"{self.name}_caption_negative_acc"] = _beats(i2t, labels, (img * neg).sum(-1), valid)
            i2t = torch.cat([i2t, extra], dim=1)
        if self.image_negatives:
            mixed, _ = mix_patches(batch["image"], self.patch_size, self.patch_fraction, generator=outputs.generator)
            neg = self.encoder.encode_image(mixed)[0]
            logs[f"{self.name}_image_negative_acc"] = _beats(t2i, labels, (txt * neg).sum(-1), None)
            t2i = torch.cat([t2i, txt @ neg.T], dim=1)
        per_pair = F.cross_entropy(i2t * inv_t, labels, reduction="none") + F.cross_entropy(t2i * inv_t, labels, reduction="none")
        loss = self.weighted_mean(per_pair if self.reduction == "sum" else 0.5 * per_pair, outputs.pair_weight)
        return {f"{self.name}_loss": loss, **{k: v.detach() for k, v in logs.items()}}


@torch.no_grad()
def _beats(scores: torch.Tensor, labels: torch.Tensor, hard: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Share of pairs whose positive scores above its *own* hard negative."""
    wins = (scores.gather(1, labels[:, None]).squeeze(1) > hard).float()
    return wins.mean() if valid is None else (wins * valid).sum() / valid.sum().clamp(min=1)
