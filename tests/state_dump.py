"""A test-only callback: each rank writes its COTS state at the end of fit (path from TWOSTREAM_DUMP)."""
import os

import lightning as L
import torch


class DumpState(L.Callback):
    def on_train_end(self, trainer, pl_module):
        out = os.environ["TWOSTREAM_DUMP"]
        torch.save({k: v.detach().cpu() for k, v in pl_module.state.state_dict().items()},
                   f"{out}/state_rank{trainer.global_rank}.pt")


class FilterAudit(L.Callback):
    """Counts, after the filter's warm-up, how many noisy and clean pairs it dropped."""

    def __init__(self):
        self.dropped = {True: 0, False: 0}
        self.seen = {True: 0, False: 0}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        f = pl_module.state["filter"]
        if trainer.global_step <= f.warmup_steps:  # the keep mask of this batch predates the warm-up's end
            return
        keep, noisy = outputs["training_state"]["pair_weight"].bool(), batch["noisy"].bool()
        for flag in (True, False):
            self.seen[flag] += int((noisy == flag).sum())
            self.dropped[flag] += int((~keep & (noisy == flag)).sum())
