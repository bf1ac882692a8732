"""Momentum (EMA) copies of the encoding path, and the feature queues they fill (COTS instance level).

COTS [paper]: online encoders give queries, momentum encoders give keys; image and text queues hold
recent momentum keys from all ranks. Ours [choice]: an image-id queue rides with the feature queues
(captions of the same image are positives), the two feature queues are written together so slot k
of both holds one pair (the KL alignment head relies on this), and writes wrap around, so neither
the queue size nor the number of ranks has to divide anything (PITFALLS 2).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from twostream.errors import ConfigError
from twostream.heads import EncoderOutput, TrainingState

KEYS = "momentum_keys"  # outputs.extra[KEYS] = (image keys, text keys) of this step


@torch.no_grad()
def ema_update_(ema: list[torch.Tensor], online: list[torch.Tensor], momentum: float) -> None:
    """``ema = momentum * ema + (1 - momentum) * online`` for every pair, as one fused foreach op."""
    if ema:
        torch._foreach_lerp_(ema, online, 1.0 - momentum)


def _cosine(start: float, end: float, step: int, total: int) -> float:
    progress = min(1.0, step / max(1, total))
    return end - (end - start) * 0.5 * (1.0 + math.cos(math.pi * progress))


def momentum_keys(outputs: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
    """This step's (image, text) momentum keys, left in ``outputs.extra`` by :meth:`MomentumQueue.annotate`."""
    if KEYS not in outputs.extra:
        raise RuntimeError("no momentum keys in the encoder output: the MomentumQueue state did not annotate this step")
    return outputs.extra[KEYS]


class MomentumQueue(TrainingState):
    """Momentum copies of the encoding path + image/text/id queues + write pointer, all in the state dict.

    Args:
        queue_size: number of past pairs kept as extra negatives (ALBEF/MoCo use 57,600-65,536 at
            scale [choice]; the embedded run uses a few thousand). Must be >= the global batch size
            (per-device batch x devices x gradient accumulation), checked when fitting starts.
        momentum: EMA coefficient of the momentum copies, in [0, 1) (ALBEF/COTS range: 0.995 [choice]).
        final_momentum: when set, the coefficient follows a cosine from ``momentum`` to this value
            over the run's optimizer steps (BYOL's schedule); default constant.

    Keys come from the encoder's own ``encode`` run on the momentum copies of *its*
    ``encoding_modules`` (towers, shared neck, projections), so every tower/neck combination
    encodes keys exactly as the online model encodes queries.
    """

    def __init__(self, queue_size: int = 4096, momentum: float = 0.995, final_momentum: float | None = None):
        super().__init__()
        if queue_size < 1:
            raise ConfigError(f"MomentumQueue.queue_size: expected a positive int, got {queue_size}")
        for arg, value in (("momentum", momentum), ("final_momentum", final_momentum)):
            if value is not None and not 0.0 <= value < 1.0:
                raise ConfigError(f"MomentumQueue.{arg}: expected a value in [0, 1), got {value}")
        self.queue_size, self.momentum, self.final_momentum = int(queue_size), float(momentum), final_momentum
        self.copied: tuple[str, ...] = ()

    def build(self, encoder: nn.Module) -> None:
        """Copy the encoder's encoding path and size the queues by its embedding dimension."""
        super().build(encoder)
        copies = encoder.copy_encoding_modules()
        for name, module in copies.items():
            setattr(self, name, module)
        self.copied = tuple(name for name, module in copies.items() if module is not None)
        k, dim = self.queue_size, encoder.embed_dim
        self.register_buffer("image_queue", torch.zeros(k, dim))
        self.register_buffer("text_queue", torch.zeros(k, dim))
        self.register_buffer("id_queue", torch.full((k,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def momentum_at(self, step: int, total: int) -> float:
        if self.final_momentum is None:
            return self.momentum
        return _cosine(self.momentum, self.final_momentum, step, total)

    def on_fit_start(self, trainer) -> None:
        datamodule = trainer.datamodule
        batch = getattr(datamodule, "batch_size", None) if datamodule is not None else None
        if batch:
            self.check_global_batch(int(batch) * trainer.world_size * trainer.accumulate_grad_batches,
                                    f"{batch} per device x {trainer.world_size} devices x "
                                    f"{trainer.accumulate_grad_batches} accumulated")

    def check_global_batch(self, global_batch: int, detail: str) -> None:
        if global_batch > self.queue_size:
            raise ConfigError(f"MomentumQueue.queue_size ({self.queue_size}) is smaller than the global batch "
                              f"({detail} = {global_batch}): raise queue_size to at least {global_batch}")

    # ------------------------------------------------------------------ during the step
    @torch.no_grad()
    def annotate(self, outputs: EncoderOutput, batch: dict) -> dict[str, torch.Tensor]:
        """Momentum keys of the batch into ``outputs.extra``; keys and image ids carried to :meth:`update`."""
        keys = self.encoder.encode(batch, path=self)
        outputs.extra[KEYS] = (keys.image_emb, keys.text_emb)
        return {"image_key": keys.image_emb, "text_key": keys.text_emb, "ids": batch["image_index"]}

    def queue(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image keys, text keys, image ids) of the filled part; slot k of each is one pair.

        Before the first wrap the filled slots are exactly ``[0, filled)``; afterwards all are.
        """
        n = int(self.filled)
        return self.image_queue[:n], self.text_queue[:n], self.id_queue[:n]

    # ------------------------------------------------------------------ after the optimizer step
    @torch.no_grad()
    def update(self, carried: dict[str, torch.Tensor], step: int, total_steps: int) -> dict[str, float]:
        """EMA of the copies, then enqueue this step's keys of every rank (pairs weighted 0 are not)."""
        m = self.momentum_at(step, total_steps)
        self.momentum_update(self.encoder, m)
        keep = carried["pair_weight"].bool() if "pair_weight" in carried else slice(None)
        self.enqueue(carried["image_key"][keep], carried["text_key"][keep], carried["ids"][keep])
        return {"momentum": m}

    def parameter_pairs(self, encoder: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Matching (momentum, online) tensor lists: parameters, then floating-point buffers."""
        ema, online = [], []
        for name in self.copied:
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
        self.check_global_batch(n, "pairs per optimizer step, all ranks and accumulated micro-batches")
        if n == 0:
            return
        slots = (self.ptr + torch.arange(n, device=self.ptr.device)) % self.queue_size
        self.image_queue[slots] = image_keys.to(self.image_queue.dtype)
        self.text_queue[slots] = text_keys.to(self.text_queue.dtype)
        self.id_queue[slots] = ids.to(torch.long)
        self.ptr.copy_((self.ptr + n) % self.queue_size)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.queue_size))
