"""One ``python -m twostream fit`` run per (configs, seed), reused when it already finished; tables and plots of them.

Shared by the ablation sweep and ``make tables``: both drive the user's entry point in subprocesses
and collect each run's metrics.json, so an interrupted sweep continues where it stopped. A row's runs
are a dict seed -> metrics, so rows are compared seed by seed (stats.py) whatever order they finished in.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from stats import MeanCI, PairedDifference, mean_ci, paired_difference, t_cdf, t_quantile  # noqa: F401 (re-exported)


def run_key(configs: list[str], seed: int, extra: list[str] = ()) -> str:
    """What a finished run was made of: the text of each config file, the seed and the extra arguments.

    Why: reuse is by run name, so editing a row file (a tuned value written in) must not silently hand
    back runs of the old row; the key stored with the run is compared before it is reused.
    """
    h = hashlib.sha256()
    for config in configs:
        h.update(Path(config).read_bytes() + b"\0")
    h.update(json.dumps([seed, list(extra)]).encode())
    return h.hexdigest()[:16]


def run_name(name: str, seed: int | str) -> str:
    """The folder (under a sweep's workdir) of one run of ``name`` with ``seed``."""
    return f"{name}_seed{seed}"


def _same_key(saved: dict, key: str) -> bool:
    """Whether a saved record was made of the run ``key`` describes (records from before keys existed are
    trusted as before)."""
    return saved.get("run_key", key) == key


def _reusable(metrics_file: Path, name: str, key: str) -> dict | None:
    """The saved record when it was made of the same configs; None (and the old folder set aside) when not."""
    saved = json.loads(metrics_file.read_text())
    if _same_key(saved, key):
        print(f"[reuse] {name}")
        return saved
    stale = metrics_file.parent.with_name(f"{metrics_file.parent.name}.stale-{int(time.time())}")
    metrics_file.parent.rename(stale)
    print(f"[stale] {name}: its configs changed since it ran; old run moved to {stale.name}, running again", flush=True)
    return None


def would_reuse(configs: list[str], name: str, seed: int, workdir: Path, extra: list[str] = ()) -> bool:
    """Whether ``run_fit`` with these arguments would hand back a finished run (without touching it): a
    later stage can then tell whether it still needs what an earlier stage left on disk (a checkpoint)."""
    metrics_file = workdir / name / "metrics.json"
    return metrics_file.exists() and _same_key(json.loads(metrics_file.read_text()), run_key(configs, seed, list(extra)))


def run_fit(configs: list[str], name: str, seed: int, workdir: Path, extra: list[str] = (), rerun: bool = False,
            threads: int | None = None, subcommand: str = "fit") -> tuple[dict, float]:
    """Run (or reuse) ``workdir/name``; returns (its metrics.json + run_wall_s, wall seconds).

    ``subcommand="test"`` evaluates a checkpoint instead (``extra`` then holds ``--ckpt_path=...``);
    the key of a fit is the same as before the argument existed, so finished sweeps stay reusable."""
    metrics_file = workdir / name / "metrics.json"
    key = run_key(configs, seed, list(extra) if subcommand == "fit" else [subcommand, *extra])
    if metrics_file.exists() and not rerun and (saved := _reusable(metrics_file, name, key)) is not None:
        return saved, float(saved.get("run_wall_s", 0.0))
    cmd = [sys.executable, "-m", "twostream", subcommand, *[a for c in configs for a in ("--config", str(c))],
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
    metrics["run_key"] = key
    metrics_file.parent.mkdir(parents=True, exist_ok=True)
    metrics_file.write_text(json.dumps(metrics, indent=2, sort_keys=True))  # the reuse record
    print(f"[done] {name} in {wall:.0f} s: rsum {metrics['rsum']:.2f}", flush=True)
    return metrics, wall


def checkpoint_override(path: Path, dirpath: Path) -> Path:
    """A config (written to ``path``) whose callbacks save ``last.ckpt`` into ``dirpath`` and write metrics.json:
    one checkpoint folder per seed, so a later stage (VLDeformer's decomposition) starts from its own seed."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {
            "dirpath": str(dirpath), "save_last": True, "save_top_k": 0, "enable_version_counter": False}},
        {"class_path": "twostream.callbacks.RunSummary"}]}}, sort_keys=False))
    return path


def seeds_of(runs) -> dict[int, dict]:
    """A row's runs keyed by seed as read back from a results JSON, which stores seed keys as strings (older
    files: a list by seed)."""
    if isinstance(runs, list):
        return dict(enumerate(runs))
    return {int(s): r for s, r in (runs or {}).items()}


def by_seed(runs: dict[int, dict], metric: str) -> dict[int, float]:
    """One metric of a row's runs, keyed by seed; runs that lack it are left out."""
    return {seed: r[metric] for seed, r in runs.items() if metric in r}


def ci_cell(values, level: float = 0.95) -> str:
    """``mean ± half-width`` of the CI; "n/a" for the half-width of a single run, "-" for none."""
    ci = mean_ci(values, level)
    if ci.n == 0:
        return "-"
    return f"{ci.mean:.2f} ± " + ("n/a" if math.isnan(ci.half_width) else f"{ci.half_width:.2f}")


def paired_headers(baseline_label: str, metric: str = "rsum", level: float = 0.95) -> list[str]:
    """Column titles of ``paired_cells``."""
    return [f"Δ {metric.upper()} vs {baseline_label} [{100 * level:g} % CI]", "p", "verdict"]


def verdict(diff: PairedDifference | None) -> str:
    """What a reader may conclude: None stands for the baseline row itself."""
    if diff is None:
        return "baseline"
    return "distinguishable" if diff.distinguishable else "not distinguishable at this scale"


def paired_cells(diff: PairedDifference | None, seeds: int) -> list[str]:
    """Δ [CI], p and verdict cells; ``seeds`` is the row's own count, so fewer paired seeds are flagged."""
    if diff is None:
        return ["-", "-", verdict(None)]
    if diff.n == 0:
        return ["n/a (no common seed)", "n/a", verdict(diff)]
    ci = "n/a" if math.isnan(diff.low) else f"{diff.low:+.2f}, {diff.high:+.2f}"
    p = "n/a" if math.isnan(diff.p) else ("< 0.001" if diff.p < 0.001 else f"{diff.p:.3f}")
    paired = f" (n={diff.n})" if diff.n != seeds else ""
    return [f"{diff.mean:+.2f} [{ci}]{paired}", p, verdict(diff)]


def markdown_table(labels: list[str], runs: list[dict[int, dict]], metrics: tuple[str, ...], baseline: int | None = None,
                   baseline_label: str | None = None, level: float = 0.95, first: str = "row") -> list[str]:
    """Mean ± CI half-width per metric, then (with a baseline row index) the paired RSUM comparison columns."""
    head = [first, *(m.replace("_", " ").upper() for m in metrics)]
    align = "|---|" + "---:|" * len(metrics)
    if baseline is not None:
        head += paired_headers(baseline_label or labels[baseline], "rsum", level)
        align += "---:|---:|---|"
    lines = ["| " + " | ".join(head) + " |", align]
    for i, (label, row) in enumerate(zip(labels, runs)):
        cells = [label, *(ci_cell(by_seed(row, m).values(), level) for m in metrics)]
        if baseline is not None:
            diff = None if i == baseline else paired_difference(by_seed(runs[baseline], "rsum"), by_seed(row, "rsum"), level)
            cells += paired_cells(diff, len(row))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _seeds_and_mean(ax, y: int, values: list[float], level: float, color: str) -> None:
    """Every seed as a dot (spread a little vertically so equal values stay visible), the mean as a diamond ± CI."""
    offsets = [0.0] if len(values) < 2 else [-0.2 + 0.4 * k / (len(values) - 1) for k in range(len(values))]
    ax.scatter(values, [y + o for o in offsets], color="black", s=12, zorder=3)
    ci = mean_ci(values, level)
    if ci.n:
        err = None if math.isnan(ci.half_width) else [[ci.half_width], [ci.half_width]]
        ax.errorbar([ci.mean], [y], xerr=err, fmt="D", color=color, ms=7, capsize=5, elinewidth=2, zorder=2)


def plot_rsum(path: Path, labels: list[str], runs: list[dict[int, dict]], xlabel: str, baseline: int | None = None,
              comparable: list[bool] | None = None, level: float = 0.95, metric: str = "rsum") -> None:
    """Per row: seeds as dots, the mean with its CI (not the std: the CI says how well the mean is known).

    With ``baseline`` (a row index) a second panel shows each row's paired difference to it, per seed
    and as mean ± CI, against a line at 0; ``comparable`` marks the rows measured like the baseline.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [by_seed(r, metric) for r in runs]
    panels = 1 if baseline is None else 2
    fig, axes = plt.subplots(1, panels, sharey=True, squeeze=False, figsize=(8 + 5 * (panels - 1), 0.55 * len(labels) + 1.8))
    ax = axes[0][0]
    for i, v in enumerate(values):
        _seeds_and_mean(ax, i, list(v.values()), level, "#4c72b0")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(f"mean ◆ ± {100 * level:g} % CI; dots = seeds", fontsize=10)
    if baseline is not None:
        dx = axes[0][1]
        dx.axvline(0.0, color="grey", lw=1)
        for i, v in enumerate(values):
            if i == baseline or (comparable is not None and not comparable[i]):
                dx.annotate("baseline" if i == baseline else "not compared", (0, i), xytext=(4, 0),
                            textcoords="offset points", va="center", fontsize=8, color="grey")
                continue
            diff = paired_difference(values[baseline], v, level)
            _seeds_and_mean(dx, i, list(diff.differences.values()), level, "#dd8452")
        dx.set_xlabel(f"paired Δ {metric.upper()} vs {labels[baseline].splitlines()[0]} (same seed)")
        dx.set_title(f"Δ mean ◆ ± {100 * level:g} % CI; dots = seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
