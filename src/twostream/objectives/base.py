"""The contract every objective (loss head) follows.

A head is a plain ``nn.Module``: ``forward(outputs, batch, state)`` reads the encoder outputs, the
batch and the shared state modules (momentum towers, queues ...; an ``nn.ModuleDict`` owned by the
encoder, so it is checkpointed and moved with the model) and returns a dict. Keys ending in
``_loss`` are summed, times ``weight``, into the training loss; every key is logged. Heads never
update state in ``forward``: the callbacks do that once per optimizer step.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from twostream.encoder import EncoderOutput


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class LossHead(nn.Module):
    """Base class of all objectives; ``name`` prefixes its logged keys (default: the class name in snake_case)."""

    def __init__(self, weight: float = 1.0, name: str | None = None):
        super().__init__()
        self.weight = float(weight)
        self.name = name or snake_case(type(self).__name__)

    def attach(self, encoder: nn.Module, state: nn.ModuleDict) -> None:
        """Called once by the encoder after it is built; subclasses call ``super().attach`` first.

        Heads that re-run a tower on masked inputs reach it through :attr:`encoder` (a plain
        reference, not a submodule, so nothing is registered or checkpointed twice). Heads that need
        state check here that it exists and raise a ConfigError naming the missing setting."""
        object.__setattr__(self, "_encoder", encoder)

    def prepare_batch(self, batch: dict) -> None:
        """Add inputs this head needs to a training batch, on the CPU before it moves to the device
        (e.g. a teacher's own tokenization). Called by the encoder; default: nothing."""

    @property
    def encoder(self) -> nn.Module:
        if "_encoder" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__} is not attached to an encoder yet")
        return self.__dict__["_encoder"]

    @staticmethod
    def weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """Mean of per-sample losses, with the adaptive filter's 0/1 weights when there are any."""
        if weights is None:
            return values.mean()
        return (values * weights).sum() / weights.sum().clamp(min=1.0)

    def forward(self, outputs: "EncoderOutput", batch: dict, state: nn.ModuleDict) -> dict[str, torch.Tensor]:
        raise NotImplementedError
