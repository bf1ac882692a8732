"""Learning curves of finished runs: read from their TensorBoard event files, plotted side by side.

Why a reader of event files: every ``twostream fit`` already logs ``train/loss`` and ``val/*`` to
TensorBoard with wall-clock stamps, so curves against step *and* against seconds come for free from
the runs the sweep made (and from any run a user made by hand).
"""
from __future__ import annotations

from pathlib import Path

TAGS = ("train/loss", "val/rsum", "val/t2i_r1", "val/i2t_r1", "train/temperature")


def read_curves(run_dir: Path, tags: tuple[str, ...] = TAGS) -> dict[str, list[tuple[int, float, float]]]:
    """{tag: [(step, seconds since the first logged value, value), ...]} for ``tags``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(Path(run_dir).glob("events.out.tfevents*"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no TensorBoard event file (was the run logged with TensorBoardLogger?)")
    out: dict[str, list[tuple[int, float, float]]] = {}
    t0 = None
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in tags:
            if tag in acc.Tags()["scalars"]:
                events = acc.Scalars(tag)
                t0 = min(t0 if t0 is not None else events[0].wall_time, events[0].wall_time)
                out.setdefault(tag, []).extend((e.step, e.wall_time, e.value) for e in events)
    return {tag: [(s, w - t0, v) for s, w, v in sorted(points)] for tag, points in out.items()}


def smooth(values: list[float], window: int = 5) -> list[float]:
    """Trailing moving average (train loss is logged per step and noisy)."""
    out, acc = [], []
    for v in values:
        acc = (acc + [v])[-window:]
        out.append(sum(acc) / len(acc))
    return out


def plot_curves(path: Path, curves: dict[str, dict], title: str) -> None:
    """Three panels: train loss vs step, val RSUM vs step, val RSUM vs wall seconds; one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for i, (name, c) in enumerate(curves.items()):
        colour = f"C{i % 10}"
        loss = c.get("train/loss", [])
        if loss:
            axes[0].plot([p[0] for p in loss], smooth([p[2] for p in loss]), color=colour, label=name, lw=1.2)
        val = c.get("val/rsum", [])
        if val:
            axes[1].plot([p[0] for p in val], [p[2] for p in val], "o-", color=colour, ms=3, lw=1.2)
            axes[2].plot([p[1] for p in val], [p[2] for p in val], "o-", color=colour, ms=3, lw=1.2)
    axes[0].set(xlabel="optimizer step", ylabel="train loss (moving avg of 5 logs)", title="training loss")
    axes[1].set(xlabel="optimizer step", ylabel="val RSUM", title="validation RSUM by step")
    axes[2].set(xlabel="seconds since start (1 thread)", ylabel="val RSUM", title="validation RSUM by wall time")
    axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
