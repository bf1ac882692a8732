"""A test-only callback for DDP/FSDP2 comparisons: each rank writes its per-batch losses and the full
model state at the end of fit to ``$TWOSTREAM_DUMP/steps_rank<r>.pt``.

Sharded parameters (FSDP2 DTensors) are gathered with ``full_tensor()``, a collective every rank runs
in the same (state-dict) order, so a DDP and an FSDP2 run dump comparable plain tensors. It also
counts the collectives one EMA of the momentum towers issues (momentum 1: lerp weight 0, a no-op)."""
import os

import lightning as L
import torch


class DumpSteps(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))

    def on_train_end(self, trainer, pl_module):
        from torch.distributed.tensor import DTensor
        from torch.distributed.tensor.debug import CommDebugMode

        with CommDebugMode() as comm:
            pl_module.state["momentum"].momentum_update(pl_module, 1.0)

        state = {}
        for key, value in pl_module.state_dict().items():
            state[key] = (value.full_tensor() if isinstance(value, DTensor) else value).detach().cpu().clone()
        sharded = sorted(k for k, v in pl_module.named_parameters() if isinstance(v, DTensor))
        torch.save({"losses": self.losses, "global_step": trainer.global_step, "state": state, "sharded": sharded,
                    "ema_collectives": comm.get_total_counts()},
                   os.path.join(os.environ["TWOSTREAM_DUMP"], f"steps_rank{trainer.global_rank}.pt"))
