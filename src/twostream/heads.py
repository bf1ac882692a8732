"""The contract between the encoder and everything a method plugs into it.

Three pieces, nothing paper-specific:

* :class:`EncoderOutput` — what one training (or evaluation) batch produced: normalised
  embeddings, tower outputs, the temperature, per-pair loss weights, the step's seeded generator,
  and ``extra``, a dict where training state leaves what its heads read (COTS's momentum keys).
* :class:`LossHead` — an objective. ``forward(outputs, batch)`` returns a dict; keys ending in
  ``_loss`` are summed, times ``weight``, into the training loss; every key is logged.
* :class:`TrainingState` — state that is not trained by gradient (momentum towers, queues, running
  statistics). ``annotate`` runs inside the training step and may read the batch and write into
  the output; ``update`` runs once per *optimizer* step, after it, with what ``annotate`` returned
  for every micro-batch, gathered from every rank (driven by
  :class:`~twostream.callbacks.TrainingStateCallback`, which the encoder adds itself). Nothing
  changes state in ``forward``: under gradient accumulation or activation checkpointing a forward
  runs more than once per optimizer step (PITFALLS 3).

The encoder builds states first (by stage), then attaches heads, so a head can check in
``attach`` that the state it needs exists and name the missing setting if it does not.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from twostream.errors import ConfigError
from twostream.towers.base import TowerOutput

S = TypeVar("S", bound="TrainingState")


@dataclass
class EncoderOutput:
    """Embeddings are L2-normalised; ``None`` where the batch lacks that modality.

    ``pair_weight``: weight of each pair in every loss (1 keep, 0 drop), set by training state such
    as a noise filter; ``None`` means every pair counts. ``generator``: the training step's seeded CPU
    generator; every random mask or negative is drawn from it, so draws survive a resume exactly.
    ``extra``: per-step values training state computes for its heads (keys are the state's to name)."""

    image_emb: torch.Tensor | None
    text_emb: torch.Tensor | None
    image: TowerOutput | None
    text: TowerOutput | None
    temperature: torch.Tensor
    pair_weight: torch.Tensor | None = None
    generator: torch.Generator | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class _Attached(nn.Module):
    """Holds a plain (unregistered) reference to the encoder: not a submodule, so nothing is
    registered, moved or checkpointed twice."""

    def _attach_encoder(self, encoder: nn.Module) -> None:
        object.__setattr__(self, "_encoder", encoder)

    @property
    def encoder(self) -> nn.Module:
        if "_encoder" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__} is not attached to an encoder yet")
        return self.__dict__["_encoder"]


class LossHead(_Attached):
    """Base class of all objectives; ``name`` prefixes its logged keys (default: the class name in snake_case)."""

    def __init__(self, weight: float = 1.0, name: str | None = None):
        super().__init__()
        self.weight = float(weight)
        self.name = name or snake_case(type(self).__name__)

    def attach(self, encoder: nn.Module) -> None:
        """Called once by the encoder after its towers and states are built; subclasses call
        ``super().attach`` first, then create their parameters (sizes from the towers) and check
        that the states they read exist (:meth:`require_state`)."""
        self._attach_encoder(encoder)

    def prepare_batch(self, batch: dict) -> None:
        """Add inputs this head needs to a training batch, on the CPU before it moves to the device
        (e.g. a teacher's own tokenization). Called by the encoder; default: nothing."""

    def require_state(self, kind: type[S], setting: str) -> S:
        """The encoder's training state of type ``kind``; a ConfigError naming ``setting`` if there is none."""
        found = self.encoder.find_state(kind)
        if found is None:
            raise ConfigError(f"{type(self).__name__} needs {kind.__name__} training state: add it to "
                              f"model.init_args.state ({setting})")
        return found

    @staticmethod
    def weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """Mean of per-sample losses, with per-pair weights (e.g. a noise filter's 0/1) when there are any."""
        if weights is None:
            return values.mean()
        return (values * weights).sum() / weights.sum().clamp(min=1.0)

    def forward(self, outputs: EncoderOutput, batch: dict) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class TrainingState(_Attached):
    """Base class of non-gradient training state: persistent buffers (and frozen copies of modules),
    so it is in every checkpoint and moves with the model.

    The encoder names it by its key in ``model.init_args.state`` (``encoder.state[name]``, so
    ``state.<name>.*`` in the checkpoint) and annotates states in ascending :attr:`stage` (ties in
    config order): a state that reads what another annotates has the higher stage."""

    stage: int = 0

    def __init__(self) -> None:
        super().__init__()
        self.name = type(self).__name__

    def build(self, encoder: nn.Module) -> None:
        """Called once by the encoder after its towers exist (and after ``init_from`` weights are in):
        create buffers and copies sized by the model. Subclasses call ``super().build`` first."""
        self._attach_encoder(encoder)

    def on_fit_start(self, trainer) -> None:
        """Check the run's setup (e.g. the global batch against a queue size); default: nothing."""

    def annotate(self, outputs: EncoderOutput, batch: dict) -> dict[str, torch.Tensor]:
        """During the training step: add to ``outputs`` what heads read; return the tensors
        :meth:`update` needs after the optimizer step (row ``i`` of each is pair ``i`` of the batch)."""
        return {}

    def update(self, carried: dict[str, torch.Tensor], step: int, total_steps: int) -> dict[str, float]:
        """After an optimizer step: ``carried`` is everything every state's ``annotate`` returned for
        this step's micro-batches, concatenated and gathered from all ranks (plus ``pair_weight``
        when the output had one); returns scalars to log."""
        return {}
