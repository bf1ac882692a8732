"""Run every ablation row for N seeds and write a mean ± 95 % CI table, a JSON file and a PNG plot.

    python experiments/ablations/run_ablation.py --base experiments/pretrain/cots.yaml \
        --rows experiments/ablations/cots --seeds 5 --out experiments/results/cots_ablation

Each row is a small override YAML applied on top of ``--base`` (and ``--schedule``: sizes and
epochs shared by all rows); each (row, seed) is one
``python -m twostream fit`` subprocess (the user's entry point) whose metrics.json is collected.
Finished runs are reused (``--rerun`` to ignore them), so an interrupted sweep continues.
Every row is compared with ``--baseline`` (default: the first row) seed by seed: paired Δ RSUM,
its 95 % CI and the paired t-test's p-value, and whether the difference shows at this scale.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report import command as command_line, machine, machine_line, write_report  # noqa: E402
from runlib import by_seed, markdown_table, mean_ci, paired_difference, plot_rsum, run_fit, run_name  # noqa: E402

METRICS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")
FAST = ["--data.init_args.num_train=512", "--data.init_args.num_val=100", "--data.init_args.num_test=200",
        "--trainer.max_epochs=1", "--trainer.check_val_every_n_epoch=1", "--trainer.val_check_interval=1.0"]


def row_title(path: Path) -> str:
    """The first comment line of the row file, without the leading '# Row N:'."""
    first = path.read_text().splitlines()[0].lstrip("# ").strip()
    return first.split(":", 1)[1].strip() if first.lower().startswith("row") and ":" in first else path.stem


def run_one(base: list[str], row: Path, seed: int, workdir: Path, extra: list[str], rerun: bool,
            threads: int | None = None) -> tuple[dict, float]:
    return run_fit([*base, str(row)], run_name(row.stem, seed), seed, workdir, extra, rerun, threads)


def short_label(stem: str, title: str, width: int = 38) -> str:
    """Plot label: the title up to its first parenthesis, cut to ``width`` characters."""
    text = title.split(" (")[0].rstrip(".")
    return text if len(text) <= width else text[: width - 1] + "…"


def summarise(results: dict[str, dict[int, dict]], baseline: str) -> tuple[dict, dict]:
    """Per row and metric: the mean's 95 % CI, and the paired difference to the baseline row (JSON-ready)."""
    summary = {row: {m: mean_ci(by_seed(runs, m).values()).as_dict() for m in METRICS} for row, runs in results.items()}
    paired = {row: {m: paired_difference(by_seed(results[baseline], m), by_seed(runs, m)).as_dict() for m in METRICS}
              for row, runs in results.items() if row != baseline}
    return summary, paired


def table_lines(titles: dict[str, str], results: dict[str, dict[int, dict]], baseline: str, seeds: int,
                header: str, wall: float, run_total: float, jobs: int) -> list[str]:
    """The header, how to read the table, and the table: mean ± CI per metric, paired Δ RSUM vs the baseline."""
    rows = list(results)
    others = len(rows) - 1  # comparisons made, each at 5 %: say how often one is a false alarm
    multiple = "" if others < 2 else (
        f"Each row is tested on its own: with {others} rows at 5 % each, a false \"distinguishable\" somewhere "
        f"is expected in about {100 * (1 - 0.95 ** others):.0f} % of sweeps where nothing differs. ")
    lines = [header, "", f"Mean ± 95 % CI half-width (Student t, n−1 df) over {seeds} seed(s), \"n/a\" with one seed; "
             "recalls in percent on the embedded synthetic test split. Δ RSUM: each row minus the baseline row "
             f"(`{baseline}`: {titles[baseline].rstrip('.')}) over the seeds both ran, paired by seed number, with "
             "its 95 % CI and the paired t-test's two-sided p; \"distinguishable\" means that CI excludes 0. " + multiple +
             f"Wall time: {wall / 60:.1f} min elapsed for this invocation ({jobs} run(s) at a time); "
             f"{run_total / 60:.1f} min summed over the runs' own wall times (reused runs included).", "",
             *markdown_table([titles[r] for r in rows], [results[r] for r in rows], METRICS, rows.index(baseline),
                             f"`{baseline}`")]
    return lines


def plot(path: Path, titles: dict[str, str], results: dict[str, dict[int, dict]], baseline: str) -> None:
    rows = list(results)
    plot_rsum(path, [short_label(r, titles[r]) for r in rows], [results[r] for r in rows],
              "RSUM (sum of I2T and T2I R@1/5/10)", baseline=rows.index(baseline))


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """The sweep's options and the extra ``twostream fit`` arguments passed through to every run."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True)
    p.add_argument("--schedule", default=None, help="YAML applied after --base and before each row (sizes, epochs)")
    p.add_argument("--rows", required=True, help="folder of override YAMLs, run in name order")
    p.add_argument("--only", nargs="*", default=None, help="row file stems to run (default: all)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", required=True, help="output path without suffix (.md, .json, .png are written)")
    p.add_argument("--workdir", default="runs/ablations/cots")
    p.add_argument("--fast", action="store_true", help="small data, 1 epoch, 1 seed: a quick look")
    p.add_argument("--rerun", action="store_true")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time; each gets cpu_count // jobs torch threads")
    p.add_argument("--title", default="COTS ablation (mini-scale)")
    p.add_argument("--baseline", default=None, help="row file stem every row is compared with (default: the first row)")
    return p.parse_known_args(argv)


def select_rows(args: argparse.Namespace) -> list[Path]:
    rows = sorted(Path(args.rows).glob("*.yaml"))
    if args.only:
        rows = [r for r in rows if r.stem in args.only]
    if not rows:
        raise SystemExit(f"--rows {args.rows}: no *.yaml row files found")
    return rows


def sweep_inputs(args: argparse.Namespace, extra: list[str]) -> tuple[list[str], list[str]]:
    """The configs every row is stacked on (base, schedule) and the extra arguments every run gets."""
    base = [args.base] + ([args.schedule] if args.schedule else [])
    return base, (FAST if args.fast else []) + extra


def main(argv: list[str] | None = None) -> None:
    args, extra = parse_args(argv)
    rows = select_rows(args)
    baseline = args.baseline or rows[0].stem
    if baseline not in [r.stem for r in rows]:
        raise SystemExit(f"--baseline {baseline}: not among the rows run ({', '.join(r.stem for r in rows)})")
    seeds = 1 if args.fast else args.seeds
    workdir = Path(args.workdir + ("_fast" if args.fast else ""))
    start = time.time()
    base, extra = sweep_inputs(args, extra)
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    tasks = [(r, s) for r in rows for s in range(seeds)]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        done = list(pool.map(lambda t: run_one(base, t[0], t[1], workdir, extra, args.rerun, threads), tasks))
    wall = time.time() - start
    by_task = dict(zip(tasks, done))
    results = {r.stem: {s: by_task[(r, s)][0] for s in range(seeds)} for r in rows}
    run_total = sum(w for _, w in done)
    titles = {r.stem: row_title(r) for r in rows}
    summary, paired = summarise(results, baseline)
    out = Path(args.out)
    command, host = command_line(argv, __file__), (machine(threads) if threads else machine())
    header = (f"# {args.title}{' — FAST (not for reporting)' if args.fast else ''}\n\nCommand: `{command}`\n\n"
              f"Machine: {machine_line(host)}.")
    md, _ = write_report(out, {"command": command, "machine": host, "seeds": seeds, "wall_s": wall,
                               "run_wall_s_total": run_total, "jobs": args.jobs, "titles": titles, "baseline": baseline,
                               "runs": results, "summary": summary, "paired_vs_baseline": paired},
                         table_lines(titles, results, baseline, seeds, header, wall, run_total, args.jobs))
    plot(out.with_suffix(".png"), titles, results, baseline)
    print(md.read_text())


if __name__ == "__main__":
    main()
