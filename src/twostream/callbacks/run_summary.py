"""Write what a finished run measured where people look for it: a table on stdout, metrics.json."""
from __future__ import annotations

import json
import os
import time

import lightning as L

RECALL_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")


def run_dir(trainer: L.Trainer) -> str:
    """The logger's versioned directory (runs/<name>/<version>), or the trainer's root dir."""
    return trainer.logger.log_dir if trainer.logger is not None else trainer.default_root_dir


def format_table(metrics: dict) -> str:
    """The recall row; with an oracle ceiling, also the ceiling and the result as a percentage of it."""
    keys = [k for k in RECALL_KEYS if k in metrics]
    lines = ["| | " + " | ".join(keys) + " |", "|---|" + "|".join("---:" for _ in keys) + "|",
             "| model | " + " | ".join(f"{metrics[k]:.2f}" for k in keys) + " |"]
    if "oracle" in metrics:
        lines.append("| oracle ceiling | " + " | ".join(f"{metrics['oracle'][k]:.2f}" for k in keys) + " |")
        lines.append("| % of ceiling | " + " | ".join(f"{metrics['pct_of_oracle'][k]:.1f}" for k in keys) + " |")
    return "\n".join(lines)


def add_oracle(metrics: dict, oracle: dict[str, float] | None) -> dict:
    """``metrics`` plus ``oracle`` (the split's expected ceiling) and ``pct_of_oracle`` (100 x result /
    ceiling, per recall key), when the data can compute a ceiling."""
    if oracle:
        keys = [k for k in oracle if k in metrics]
        metrics = {**metrics, "oracle": {k: round(oracle[k], 3) for k in keys},
                   "pct_of_oracle": {k: round(100.0 * metrics[k] / oracle[k], 2) for k in keys}}
    return metrics


class RunSummary(L.Callback):
    """After testing: print the recall table and write ``metrics.json`` (percent) into the run dir.

    ``metrics.json`` holds the test recalls under plain keys (``i2t_r1`` ... ``rsum``), the median
    and mean ranks, ``fit_wall_s`` (seconds of the preceding fit in this process, if any), when the
    datamodule can compute one (synthetic data) the test split's oracle ceiling ``oracle`` and the
    result as ``pct_of_oracle``, when the datamodule names its splits (MSR-VTT), ``splits``, and under
    ``val`` the last validation pass of the fit (so sweeps can pick settings on validation and report
    test: ``val.rsum`` ...; absent when nothing was validated).
    """

    def __init__(self, filename: str = "metrics.json"):
        self.filename = filename
        self._fit_start: float | None = None
        self.fit_wall_s: float | None = None
        self.val: dict[str, float] = {}

    def on_fit_start(self, trainer, pl_module) -> None:
        self._fit_start = time.perf_counter()

    def on_fit_end(self, trainer, pl_module) -> None:
        if self._fit_start is not None:
            self.fit_wall_s = time.perf_counter() - self._fit_start

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.val = {k.removeprefix("val/"): float(v) for k, v in trainer.callback_metrics.items()
                        if k.startswith("val/")}

    def on_test_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {k.removeprefix("test/"): float(v) for k, v in trainer.callback_metrics.items()
                   if k.startswith("test/")}
        if self.fit_wall_s is not None:
            metrics["fit_wall_s"] = round(self.fit_wall_s, 1)
        dm = trainer.datamodule
        if hasattr(dm, "oracle_recall"):
            metrics = add_oracle(metrics, dm.oracle_recall("test"))
        if self.val:
            metrics["val"] = dict(self.val)
        split_names = getattr(dm, "split_names", None) if dm is not None else None
        if split_names:  # e.g. MSR-VTT {"train": "9k", "test": "1k-A"}: results tables name the split
            metrics["splits"] = dict(split_names)
        out_dir = run_dir(trainer)
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, self.filename)
        with open(path, "w") as f:
            json.dump(metrics, f, indent=2, sort_keys=True)
        splits = ", ".join(f"{k}={v}" for k, v in metrics.get("splits", {}).items())
        print("\nTest retrieval (percent)" + (f"; splits: {splits}" if splits else "") + ":\n" + format_table(metrics))
        print(f"run directory: {out_dir}\n")
