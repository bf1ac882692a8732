"""TrainingStateCallback: the one place where training state (``model.state``) changes.

Why a callback: an update inside ``forward`` runs once per micro-batch under gradient accumulation
and again under activation-checkpoint re-forwards (PITFALLS 3). Here what each training step's
states ``annotate`` (returned under ``training_state``) is held until the optimizer has actually
stepped, then concatenated over the micro-batches, gathered from all ranks, and handed once to
every state's ``update``, in the order of ``model.init_args.state``.

The encoder adds this callback itself (``configure_callbacks``) whenever it has state, so configs
need not list it.
"""
from __future__ import annotations

import lightning as L
import torch

from twostream.distributed import gather_no_grad


class TrainingStateCallback(L.Callback):
    """Drives :class:`twostream.heads.TrainingState` objects: ``update`` after each optimizer step."""

    def __init__(self) -> None:
        self._pending: list[dict[str, torch.Tensor]] = []
        self._last_step = 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for state in pl_module.state.values():
            state.on_fit_start(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pending.clear()
        self._last_step = trainer.global_step  # resumed runs start from the checkpoint's step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if isinstance(outputs, dict) and "training_state" in outputs:
            self._pending.append(outputs["training_state"])
        if trainer.global_step != self._last_step:  # the optimizer stepped during this batch
            self._last_step = trainer.global_step
            self.flush(trainer, pl_module)

    @torch.no_grad()
    def flush(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Every state's update with everything carried since the previous optimizer step."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        carried = {key: gather_no_grad(torch.cat([p[key] for p in pending])) for key in pending[0]}
        if not all(bool(torch.isfinite(v).all()) for v in carried.values() if v.is_floating_point()):
            return  # a non-finite step (skipped by NonFiniteGuard) never enters a queue or a statistic
        total = int(trainer.estimated_stepping_batches)
        for state in pl_module.state.values():
            for key, value in state.update(carried, trainer.global_step, total).items():
                pl_module.log(f"train/{key}", value, on_step=True, on_epoch=False, batch_size=1)
