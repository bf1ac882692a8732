"""SIGTERM / SIGINT during ``fit``: finish the current step, save a resumable checkpoint, exit 143 / 130.

Why not Lightning's own handling: on SIGTERM Lightning stops after the step but raises a
``SIGTERMException`` that exits with status 0 and saves nothing unless a checkpoint callback asks
for it; Ctrl-C raises ``KeyboardInterrupt`` wherever the program is (possibly mid optimizer step) and
exits 1. Schedulers (SLURM, Kubernetes, spot instances) send SIGTERM and then SIGKILL after a grace
period, so the state has to be written at once and the exit status has to say "interrupted".

How, reusing Lightning's path: from ``on_train_start`` (after Lightning installed its handlers)
this callback's handler only records the signal. At the end of every optimizer step (not inside a
gradient-accumulation window: accumulated gradients are not checkpointed) the ranks agree whether
any of them got one (one max all-reduce of a scalar under DDP, so every rank stops after the same
step); then the callback sets Lightning's SIGTERM flag and Lightning raises
``SIGTERMException`` at the end of that step, after the model's hooks, logging and any validation,
which is the "restarted on last" position Lightning's loops resume from. ``on_exception`` then
writes ``last.ckpt`` (every rank takes part; rank 0 writes), with the train loader's position
(:class:`~twostream.data.datamodules.resumable.ResumableLoader`), so a resumed run continues with
the next batch bit-exactly. The CLI prints the resume command and exits ``128 + signal``.

A second Ctrl-C aborts at once without saving; a second SIGTERM is ignored (the save is under way).
"""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}


def _write(message: str) -> None:
    """Write from a signal handler: ``os.write`` is safe where ``print`` may re-enter its buffer."""
    os.write(2, message.encode())


def checkpoint_dir(trainer: L.Trainer) -> Path:
    """Where the run's checkpoints go: the first ModelCheckpoint's folder, else ``<log dir>/checkpoints``."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            return Path(callback.dirpath)
    return Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints"


class Interruption(Checkpoint):
    """Turn SIGTERM/SIGINT into a checkpoint at the next step boundary (see the module docstring).

    Args:
        signals: which signals stop training this way (names; default both).
        filename: the checkpoint's file name in the run's checkpoint folder (``last.ckpt``: what
            ``--ckpt_path last`` and ``ModelCheckpoint(save_last=True)`` use).

    A ``Checkpoint`` subclass so that Lightning orders it after the other callbacks: the training
    state of the step is complete when it decides.
    """

    def __init__(self, signals: tuple[str, ...] = ("SIGTERM", "SIGINT"), filename: str = "last.ckpt") -> None:
        unknown = [s for s in signals if s not in SIGNALS]
        if unknown:
            raise ValueError(f"Interruption: unknown signal(s) {unknown}; valid: {', '.join(SIGNALS)}")
        self.signals = tuple(SIGNALS[s] for s in signals)
        self.filename = filename
        self.signum: int | None = None  # the first signal received during this fit
        self.stopped_at: dict[str, int] | None = None  # where training stopped (step, epoch, batch)
        self.checkpoint: str | None = None  # what on_exception wrote
        self._previous: dict[int, Any] = {}

    # ------------------------------------------------------------------ signals
    def _handler(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is None:
            self.signum = signum
            _write(f"\n{name} received: stopping after this training step and saving a checkpoint "
                   f"({'Ctrl-C again aborts without saving' if signum == signal.SIGINT else 'please wait'})\n")
        elif signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        else:
            _write(f"{name} received again: still saving the checkpoint\n")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.signum, self.stopped_at, self.checkpoint = None, None, None
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handler)

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    # ------------------------------------------------------------------ stopping
    def _agreed_signal(self, trainer: L.Trainer) -> int:
        """The signal any rank received (0: none); the same answer on every rank."""
        mine = torch.tensor([self.signum or 0], dtype=torch.long, device=trainer.strategy.root_device)
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(mine, op=torch.distributed.ReduceOp.MAX)
        return int(mine.item())

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        done = batch_idx + 1
        if done % trainer.accumulate_grad_batches and done != trainer.num_training_batches:
            return  # mid gradient accumulation: stop where the optimizer has stepped (grads are not saved)
        signum = self._agreed_signal(trainer)
        if not signum:
            return
        self.signum = signum
        self.stopped_at = {"step": trainer.global_step, "epoch": trainer.current_epoch, "batch": batch_idx + 1,
                           "batches": int(trainer.num_training_batches)}
        # Lightning raises SIGTERMException once this step is complete (TrainingEpochLoop.on_advance_end)
        trainer._signal_connector.received_sigterm = True

    #: set when a KeyboardInterrupt ended a trainer call (Lightning then exits with status 1; the CLI
    #: reports 130, what a shell expects after Ctrl-C)
    aborted: ClassVar[bool] = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            Interruption.aborted = True
        if not isinstance(exception, SIGTERMException) or self.stopped_at is None:
            return
        path = checkpoint_dir(trainer) / self.filename
        for callback in trainer.checkpoint_callbacks:  # so that, resumed, it overwrites this file (no last-v1.ckpt)
            if isinstance(callback, ModelCheckpoint) and callback.save_last and Path(callback.dirpath or "") == path.parent:
                callback.last_model_path = str(path)
        trainer.save_checkpoint(str(path))  # every rank: the strategy gathers, rank 0 writes
        self.checkpoint = str(path)
        exception.signum, exception.checkpoint, exception.stopped_at = self.signum, self.checkpoint, self.stopped_at
        exception.code = 128 + int(self.signum)

    def state_dict(self) -> dict[str, Any]:
        return {}
