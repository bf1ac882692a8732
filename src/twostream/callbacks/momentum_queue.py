"""Deprecation alias: ``MomentumQueueCallback`` became the generic :class:`TrainingStateCallback`.

The encoder now adds the callback itself, and the EMA coefficient is an argument of the state
(``MomentumQueue(momentum=..., final_momentum=...)``). Kept for one release so old configs run:
its arguments are copied onto the model's momentum queue, with a warning.
"""
from __future__ import annotations

import warnings

import lightning as L

from twostream.callbacks.training_state import TrainingStateCallback


class MomentumQueueCallback(TrainingStateCallback):
    def __init__(self, momentum: float = 0.995, final_momentum: float | None = None):
        super().__init__()
        warnings.warn("twostream.callbacks.MomentumQueueCallback is deprecated: remove it from trainer.callbacks "
                      "(the encoder adds TrainingStateCallback itself) and set momentum/final_momentum on "
                      "twostream.methods.cots.MomentumQueue", FutureWarning, stacklevel=2)
        self.momentum, self.final_momentum = momentum, final_momentum

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from twostream.methods.cots import MomentumQueue

        queue = pl_module.find_state(MomentumQueue)
        if queue is not None:
            queue.momentum, queue.final_momentum = float(self.momentum), self.final_momentum
        super().on_fit_start(trainer, pl_module)
