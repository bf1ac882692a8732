"""COTS token level, image side: predict the visual tokens of masked patches, helped by the caption."""
from __future__ import annotations

import inspect
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from twostream.errors import ConfigError
from twostream.heads import LossHead
from twostream.prerequisites import Artifact
from twostream.methods.cots.fusion import GlobalFusion
from twostream.masking import block_patch_mask, random_patch_mask


class MaskedVisionModeling(LossHead):
    """Mask patches at the vision tower's input; classify each masked patch's visual-token id.

    [paper] a (variational) autoencoder imposed on the visual encoder yields discrete visual tokens;
    masked ones are predicted from the unmasked context plus the paired text's features. [choice] a
    frozen VQ-VAE (:class:`twostream.methods.cots.tokenizer.VisualTokenizer`, trained by ``make tokenizer``) read
    from ``tokenizer``; ``mask_ratio`` 40 % of patches, ``block`` (BEiT-style) or ``random``; masked
    patch embeddings are replaced by a learned mask token; each masked output feature is fused with
    the paired caption's global embedding and classified over the codebook. The tokenizer's token
    grid must equal the vision tower's patch grid (checked).
    """

    artifacts = {"tokenizer": Artifact("make tokenizer", "the VQ-VAE visual tokenizer (MVM targets)")}

    def __init__(self, tokenizer: str | None = None, weight: float = 1.0, mask_ratio: float = 0.4,
                 masking: Literal["block", "random"] = "block", fusion: Literal["concat", "add"] = "concat",
                 detach_text: bool = False, name: str | None = None):
        super().__init__(weight=weight, name=name or "mvm")
        if tokenizer is None:
            raise ConfigError("MaskedVisionModeling needs a visual tokenizer: set `tokenizer:` to the file written by "
                              "`make tokenizer` (default runs/tokenizer/vqvae.pt)")
        if not 0.0 < mask_ratio < 1.0:
            raise ConfigError(f"MaskedVisionModeling.mask_ratio: expected a value in (0, 1), got {mask_ratio}")
        if masking not in ("block", "random"):
            raise ConfigError(f"MaskedVisionModeling.masking: {masking!r}; valid: 'block', 'random'")
        self.tokenizer_path, self.mask_ratio, self.masking = tokenizer, mask_ratio, masking
        self.fusion_kind, self.detach_text = fusion, detach_text

    def attach(self, encoder: nn.Module) -> None:
        super().attach(encoder)
        from twostream.methods.cots.tokenizer import VisualTokenizer

        vision = encoder.vision
        if "patch_mask" not in inspect.signature(vision.forward).parameters:
            raise ConfigError(f"MaskedVisionModeling needs a vision tower that can mask input patches "
                              f"(OpenCLIPVisionTower); {type(vision).__name__} cannot")
        self.tokenizer = VisualTokenizer.from_file(self.tokenizer_path)
        grid = tuple(getattr(vision, "grid_size", ()))
        token_grid = tuple(self.tokenizer.grid_size(tuple(vision.image_size)))
        if not grid or token_grid != grid:
            raise ConfigError(f"MaskedVisionModeling: the tokenizer {self.tokenizer_path} gives a {token_grid} token grid "
                              f"for {tuple(vision.image_size)} images, but the vision tower has a {grid} patch grid; "
                              f"train a tokenizer whose downsample equals the tower's patch size")
        self.mask_token = nn.Parameter(torch.randn(vision.token_dim) * 0.02)
        self.fuse = GlobalFusion(vision.token_dim, encoder.hparams.embed_dim, self.fusion_kind)
        self.classifier = nn.Linear(vision.token_dim, self.tokenizer.codebook_size)

    def train(self, mode: bool = True) -> "MaskedVisionModeling":
        super().train(mode)
        self.tokenizer.eval()  # frozen: always in inference mode
        return self

    def forward(self, outputs, batch: dict) -> dict[str, torch.Tensor]:
        images = batch["image"]
        vision = self.encoder.vision
        targets = self.tokenizer.encode(images).flatten(1)
        draw = block_patch_mask if self.masking == "block" else random_patch_mask
        mask = draw(images.shape[0], tuple(vision.grid_size), self.mask_ratio, outputs.generator, images.device)
        tokens = vision(images, patch_mask=mask, mask_token=self.mask_token).tokens
        rows, cols = mask.nonzero(as_tuple=True)
        text = outputs.text_emb.detach() if self.detach_text else outputs.text_emb
        logits = self.classifier(self.fuse(tokens[rows, cols], text[rows]))
        per_patch = F.cross_entropy(logits, targets[rows, cols], reduction="none")
        keep = outputs.pair_weight[rows] if outputs.pair_weight is not None else None
        loss = self.weighted_mean(per_patch, keep)
        with torch.no_grad():
            acc = (logits.argmax(1) == targets[rows, cols]).float().mean()
        return {f"{self.name}_loss": loss, f"{self.name}_acc": acc}
