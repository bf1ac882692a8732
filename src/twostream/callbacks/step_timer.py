"""``StepTimer``: wall-clock seconds per training step, end to end, written to ``step_times.json``.

Why end to end: a step's cost on a small machine is not only forward/backward/optimizer but also
waiting for the loader, tokenizing, Lightning's hooks and logging. Step ``i``'s time is the wall
clock between the end of step ``i - 1`` and the end of step ``i`` (``on_train_batch_end``), which
is also how ``open_clip_train`` measures its ``Batch (t)``; so the two trainers compare like for
like (``experiments/benchmarks/vs_open_clip.py``). The first step has no predecessor and is timed
from the start of the epoch's first batch fetch (it includes the loader's start-up): drop
``warmup`` steps before reading a speed.
"""
from __future__ import annotations

import json
import os
import statistics
import time

import lightning as L

from twostream.callbacks.run_summary import run_dir


class StepTimer(L.Callback):
    """Record each training step's wall time; at the end of fit write ``<run dir>/<filename>``.

    The file holds ``step_s`` (every step, seconds), ``warmup`` (steps left out of the summary),
    ``median_step_s``, ``samples_per_s`` (batch size x timed steps / their total time) and
    ``batch_size``. ``warmup`` only shapes the summary; every step is kept.
    """

    def __init__(self, warmup: int = 2, filename: str = "step_times.json"):
        if warmup < 0:
            raise ValueError(f"warmup: expected >= 0, got {warmup}")
        self.warmup, self.filename = warmup, filename
        self.step_s: list[float] = []
        self.batch_size: int | None = None
        self._last: float | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._last = time.perf_counter()  # the first step of an epoch includes its first fetch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.step_s.append(now - self._last)
        self._last = now
        if self.batch_size is None and isinstance(batch, dict) and "image" in batch:
            self.batch_size = int(batch["image"].shape[0])

    def summary(self) -> dict:
        timed = self.step_s[self.warmup:]
        out = {"step_s": self.step_s, "warmup": self.warmup, "batch_size": self.batch_size,
               "median_step_s": statistics.median(timed) if timed else None, "samples_per_s": None}
        if timed and self.batch_size:
            out["samples_per_s"] = self.batch_size * len(timed) / sum(timed)
        return out

    def on_fit_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        directory = run_dir(trainer)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, self.filename), "w") as f:
            json.dump(self.summary(), f, indent=1)
