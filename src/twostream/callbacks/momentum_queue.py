"""MomentumQueueCallback: the one place where momentum towers, queues and filter statistics change.

Why a callback: an update inside ``forward`` runs once per micro-batch under gradient accumulation
and again under activation-checkpoint re-forwards (PITFALLS 3). Here the keys and pair similarities
each training step returns are held until the optimizer has actually stepped, then, once: EMA of
the momentum towers (one fused ``_foreach_lerp_``), enqueue of the keys gathered from all ranks,
and one update of the filter statistics.
"""
from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from twostream.distributed import gather_no_grad
from twostream.errors import ConfigError


def _cosine(start: float, end: float, step: int, total: int) -> float:
    progress = min(1.0, step / max(1, total))
    return end - (end - start) * 0.5 * (1.0 + math.cos(math.pi * progress))


class MomentumQueueCallback(L.Callback):
    """Updates :class:`twostream.state.MomentumQueue` and :class:`twostream.state.AdaptiveMomentumFilter`.

    Args:
        momentum: EMA coefficient of the momentum towers, in [0, 1) (ALBEF/COTS range: 0.995 [choice]).
        final_momentum: when set, the coefficient follows a cosine from ``momentum`` to this value
            over the run's optimizer steps (BYOL's schedule); default constant.
    """

    def __init__(self, momentum: float = 0.995, final_momentum: float | None = None):
        for name, value in (("momentum", momentum), ("final_momentum", final_momentum)):
            if value is not None and not 0.0 <= value < 1.0:
                raise ConfigError(f"MomentumQueueCallback.{name}: expected a value in [0, 1), got {value}")
        self.momentum, self.final_momentum = float(momentum), final_momentum
        self._pending: list[dict[str, torch.Tensor]] = []
        self._last_step = 0

    def momentum_at(self, step: int, total: int) -> float:
        if self.final_momentum is None:
            return self.momentum
        return _cosine(self.momentum, self.final_momentum, step, total)

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = getattr(pl_module, "state", {})
        if "momentum" not in state and "filter" not in state:  # e.g. an ablation row without the queue
            rank_zero_warn("MomentumQueueCallback: the model has neither momentum towers nor a filter; nothing to update")
        batch = getattr(trainer.datamodule, "batch_size", None) if trainer.datamodule is not None else None
        if "momentum" in state and batch:
            global_batch = int(batch) * trainer.world_size * trainer.accumulate_grad_batches
            if global_batch > state["momentum"].queue_size:
                raise ConfigError(
                    f"MomentumQueue.queue_size ({state['momentum'].queue_size}) is smaller than the global batch "
                    f"({batch} per device x {trainer.world_size} devices x {trainer.accumulate_grad_batches} "
                    f"accumulated = {global_batch}): raise queue_size to at least {global_batch}")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pending.clear()
        self._last_step = trainer.global_step  # resumed runs start from the checkpoint's step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if isinstance(outputs, dict) and "momentum_state" in outputs:
            self._pending.append(outputs["momentum_state"])
        if trainer.global_step != self._last_step:  # the optimizer stepped during this batch
            self._last_step = trainer.global_step
            self.flush(trainer, pl_module)

    # ------------------------------------------------------------------ the update
    @torch.no_grad()
    def flush(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """EMA, enqueue and filter update for everything since the previous optimizer step."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        local = {key: torch.cat([p[key] for p in pending]) for key in pending[0]}
        state = pl_module.state
        if "momentum" in state:
            m = self.momentum_at(trainer.global_step, int(trainer.estimated_stepping_batches))
            state["momentum"].momentum_update(pl_module, m)
            pl_module.log("train/momentum", m, on_step=True, on_epoch=False, batch_size=1)
        gathered = {key: gather_no_grad(value) for key, value in local.items()}
        if "filter" in state and "similarity" in gathered:
            state["filter"].update(gathered["similarity"])
        if "momentum" in state and "image_key" in gathered:
            keep = gathered["keep"].bool() if "keep" in gathered else slice(None)
            state["momentum"].enqueue(gathered["image_key"][keep], gathered["text_key"][keep], gathered["ids"][keep])
