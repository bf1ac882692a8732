"""Momentum (EMA) copies of both towers and projections, and the feature queues they fill.

COTS [paper]: online encoders give queries, momentum encoders give keys; image and text queues hold
recent momentum keys from all ranks. Ours [choice]: an image-id queue rides with the feature queues
(captions of the same image are positives), the two feature queues are written together so slot k
of both holds one pair (the KL alignment head relies on this), and writes wrap around, so neither
the queue size nor the number of ranks has to divide anything (PITFALLS 2).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from twostream.errors import ConfigError

_COPIED = ("vision", "text", "image_proj", "text_proj")


@torch.no_grad()
def ema_update_(ema: list[torch.Tensor], online: list[torch.Tensor], momentum: float) -> None:
    """``ema = momentum * ema + (1 - momentum) * online`` for every pair, as one fused foreach op."""
    if ema:
        torch._foreach_lerp_(ema, online, 1.0 - momentum)


class MomentumQueue(nn.Module):
    """Momentum towers + image/text/id queues + write pointer, all in the state dict.

    Args:
        queue_size: number of past pairs kept as extra negatives (ALBEF/MoCo use 57,600-65,536 at
            scale [choice]; the embedded run uses a few thousand). Must be >= the global batch size
            (per-device batch x devices x gradient accumulation), checked at the first step.
    """

    def __init__(self, queue_size: int = 4096):
        super().__init__()
        if queue_size < 1:
            raise ConfigError(f"MomentumQueue.queue_size: expected a positive int, got {queue_size}")
        self.queue_size = int(queue_size)
        self.built = False

    def build(self, encoder: nn.Module, embed_dim: int) -> None:
        """Copy the encoder's towers and projections (called once by the encoder after it is built)."""
        for name in _COPIED:
            module = copy.deepcopy(getattr(encoder, name))
            module.requires_grad_(False)
            setattr(self, name, module)
        k = self.queue_size
        self.register_buffer("image_queue", torch.zeros(k, embed_dim))
        self.register_buffer("text_queue", torch.zeros(k, embed_dim))
        self.register_buffer("id_queue", torch.full((k,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.built = True

    # ------------------------------------------------------------------ keys
    @torch.no_grad()
    def encode(self, batch: dict) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Normalised momentum keys for the batch's images and captions (no graph)."""
        image_key = text_key = None
        if "image" in batch:
            image_key = F.normalize(self.image_proj(self.vision(batch["image"]).pooled), dim=-1)
        if "input_ids" in batch:
            out = self.text(batch["input_ids"], batch.get("attention_mask"))
            text_key = F.normalize(self.text_proj(out.pooled), dim=-1)
        return image_key, text_key

    def queue(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image keys, text keys, image ids) of the filled part; slot k of each is one pair.

        Before the first wrap the filled slots are exactly ``[0, filled)``; afterwards all are.
        """
        n = int(self.filled)
        return self.image_queue[:n], self.text_queue[:n], self.id_queue[:n]

    # ------------------------------------------------------------------ updates (callback only)
    def parameter_pairs(self, encoder: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Matching (momentum, online) tensor lists: parameters, then floating-point buffers."""
        ema, online = [], []
        for name in _COPIED:
            mine, theirs = getattr(self, name), getattr(encoder, name)
            ema += [p for p in mine.parameters()]
            online += [p for p in theirs.parameters()]
            ema += [b for b in mine.buffers() if b.is_floating_point()]
            online += [b for b in theirs.buffers() if b.is_floating_point()]
        if len(ema) != len(online):
            raise RuntimeError("momentum towers no longer match the online towers (was a tower replaced after build?)")
        return ema, online

    @torch.no_grad()
    def momentum_update(self, encoder: nn.Module, momentum: float) -> None:
        ema, online = self.parameter_pairs(encoder)
        ema_update_([t.data for t in ema], [t.data for t in online], momentum)

    @torch.no_grad()
    def enqueue(self, image_keys: torch.Tensor, text_keys: torch.Tensor, ids: torch.Tensor) -> None:
        """Write ``n`` pairs at the pointer, wrapping around the end of the queue."""
        n = image_keys.shape[0]
        if n > self.queue_size:
            raise ConfigError(f"MomentumQueue.queue_size ({self.queue_size}) is smaller than the global batch "
                              f"({n} pairs per optimizer step, all ranks and accumulated micro-batches): "
                              f"raise queue_size to at least {n}")
        if n == 0:
            return
        slots = (self.ptr + torch.arange(n, device=self.ptr.device)) % self.queue_size
        self.image_queue[slots] = image_keys.to(self.image_queue.dtype)
        self.text_queue[slots] = text_keys.to(self.text_queue.dtype)
        self.id_queue[slots] = ids.to(torch.long)
        self.ptr.copy_((self.ptr + n) % self.queue_size)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.queue_size))
