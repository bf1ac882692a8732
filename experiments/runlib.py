"""One ``python -m twostream fit`` run per (configs, seed), reused when it already finished.

Shared by the ablation sweep and ``make tables``: both drive the user's entry point in subprocesses
and collect each run's metrics.json, so an interrupted sweep continues where it stopped.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def run_fit(configs: list[str], name: str, seed: int, workdir: Path, extra: list[str] = (), rerun: bool = False,
            threads: int | None = None) -> tuple[dict, float]:
    """Run (or reuse) ``workdir/name``; returns (its metrics.json + run_wall_s, wall seconds)."""
    metrics_file = workdir / name / "metrics.json"
    if metrics_file.exists() and not rerun:
        print(f"[reuse] {name}")
        saved = json.loads(metrics_file.read_text())
        return saved, float(saved.get("run_wall_s", 0.0))
    cmd = [sys.executable, "-m", "twostream", "fit", *[a for c in configs for a in ("--config", str(c))],
           f"--seed_everything={seed}", f"--trainer.logger.init_args.save_dir={workdir.parent}",
           f"--trainer.logger.init_args.name={workdir.name}", f"--trainer.logger.init_args.version={name}",
           "--trainer.enable_progress_bar=false", *extra]
    print(f"[run] {name}: {' '.join(cmd[2:])}", flush=True)
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.time() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    found = next((workdir / name).rglob("metrics.json"), None)
    if found is None:
        raise SystemExit(f"{name}: no metrics.json under {workdir / name} (is RunSummary in the config?)")
    metrics = json.loads(found.read_text())
    metrics["run_wall_s"] = round(wall, 1)
    metrics_file.parent.mkdir(parents=True, exist_ok=True)
    metrics_file.write_text(json.dumps(metrics, indent=2, sort_keys=True))  # the reuse record
    print(f"[done] {name} in {wall:.0f} s: rsum {metrics['rsum']:.2f}", flush=True)
    return metrics, wall


def plot_rsum(path: Path, labels: list[str], runs: list[list[dict]], xlabel: str, with_std: bool = True) -> None:
    """One bar per row (mean RSUM, ± std when ``with_std``), every seed as a dot: the spread is part of the result."""
    import statistics

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [[r["rsum"] for r in row] for row in runs]
    means = [statistics.mean(v) for v in values]
    stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values] if with_std else None
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(labels) + 1.5))
    ax.barh(range(len(labels)), means, xerr=stds, color="#4c72b0", alpha=0.8, capsize=4)
    for i, v in enumerate(values):
        ax.scatter(v, [i] * len(v), color="black", s=12, zorder=3)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
