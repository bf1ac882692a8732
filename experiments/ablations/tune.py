"""Pick what a paper leaves open on the VALIDATION split: one value per setting, before the final rows.

    python experiments/ablations/tune.py --grid experiments/ablations/cots_tune.yaml \
        --out experiments/results/cots_tuning --seeds 1 --jobs 2

The grid names, per setting, a row file (an ablation row: the setting only matters with its objective
on), the place of the value inside that row's YAML (a list of keys and list indices) and the values
to try. Each (setting, value, seed) is one ``python -m twostream fit`` run of base + schedule + the row
with that value written in (a generated override under the workdir), reused when finished. The table
shows validation recall only (``metrics.json``'s ``val``); the test split is not looked at here, so
the final rows' test numbers are not selected on. The chosen value of each setting is the one with
the highest mean validation RSUM; the Markdown says how far apart the values were compared with the
seed spread measured on the testbed, because with one seed a small gap is noise.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report import command as command_line, machine, machine_line, write_report  # noqa: E402
from runlib import mean_ci, run_fit, run_name  # noqa: E402

VAL_KEYS = ("i2t_r1", "t2i_r1", "rsum")


def with_value(row: dict, where: list, value) -> dict:
    """A copy of the row YAML with ``value`` at the key/index path ``where``."""
    out = copy.deepcopy(row)
    node = out
    for step in where[:-1]:
        node = node.setdefault(step, {}) if isinstance(node, dict) else node[step]
    node[where[-1]] = value
    return out


def overrides(grid: dict, rows_dir: Path, workdir: Path) -> list[tuple[str, object, Path]]:
    """(setting, value, generated override file) for every grid point."""
    points = []
    for setting, spec in grid["settings"].items():
        row = yaml.safe_load((rows_dir / spec["row"]).read_text()) or {}
        for value in spec["values"]:
            path = workdir / "overrides" / f"{setting}_{value}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(with_value(row, spec["where"], value), sort_keys=False))
            points.append((setting, value, path))
    return points


def table(grid: dict, results: dict) -> tuple[list[str], dict]:
    """Markdown rows (validation only) and the chosen value per setting."""
    lines = ["| setting | value | row | " + " | ".join(f"val {k}" for k in VAL_KEYS) + " | chosen |",
             "|---|---:|---|" + "---:|" * len(VAL_KEYS) + ":---:|"]
    chosen = {}
    for setting, spec in grid["settings"].items():
        means = {v: mean_ci([r["val"]["rsum"] for r in results[(setting, v)]]).mean for v in spec["values"]}
        best = max(means, key=means.get)
        chosen[setting] = {"value": best, "val_rsum": means, "gap_to_next": _gap(means)}
        for v in spec["values"]:
            cells = [f"{mean_ci([r['val'][k] for r in results[(setting, v)]]).mean:.2f}" for k in VAL_KEYS]
            lines.append(f"| {setting} | {v} | `{spec['row']}` | " + " | ".join(cells) + f" | {'✓' if v == best else ''} |")
    return lines, chosen


def _gap(means: dict) -> float:
    ranked = sorted(means.values(), reverse=True)
    return ranked[0] - ranked[1] if len(ranked) > 1 else float("nan")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", required=True, help="YAML: base, schedule, rows, settings{name: {row, where, values}}")
    p.add_argument("--out", required=True, help="output path without suffix (.md and .json are written)")
    p.add_argument("--workdir", default="runs/tune/cots")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--only", nargs="*", default=None, help="settings to run (default: all)")
    args, extra = p.parse_known_args(argv)
    grid = yaml.safe_load(Path(args.grid).read_text())
    if args.only:
        grid["settings"] = {k: v for k, v in grid["settings"].items() if k in args.only}
    workdir = Path(args.workdir)
    base = [grid["base"]] + ([grid["schedule"]] if grid.get("schedule") else [])
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    points, first = overrides(grid, Path(grid["rows"]), workdir), {}
    name = {}  # override path -> the run name of the first point with the same configuration
    for s, v, path in points:  # two settings' defaults are often one configuration: run it once
        name[path] = first.setdefault(path.read_text(), f"{s}_{v}")
    tasks = [(s, v, path, seed) for s, v, path in points for seed in range(args.seeds)]
    unique = {(name[t[2]], t[3]): t for t in tasks}
    start = time.time()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        ran = dict(zip(unique, pool.map(lambda t: run_fit([*base, str(t[2])], run_name(name[t[2]], t[3]), t[3], workdir,
                                                             extra, False, threads)[0], unique.values())))
    done = [ran[(name[t[2]], t[3])] for t in tasks]
    results: dict = {}
    for (s, v, _, _), metrics in zip(tasks, done):
        if "val" not in metrics:
            raise SystemExit(f"{s}={v}: the run has no validation metrics (does the schedule validate at the end?)")
        results.setdefault((s, v), []).append(metrics)
    lines, chosen = table(grid, results)
    command, host = command_line(argv, __file__), (machine(threads) if threads else machine())
    header = [f"# {grid.get('title', 'Tuning on the validation split')}", "", f"Command: `{command}`", "",
              f"Machine: {machine_line(host)}. Wall time {(time.time() - start) / 60:.1f} min ({args.jobs} run(s) at a time).",
              "", f"Validation split only (500 images × 5 captions), {args.seeds} seed(s) per value; the test split "
              "is not used for any choice here. " + grid.get("note", ""), ""]
    write_report(Path(args.out), {"command": command, "machine": host, "seeds": args.seeds, "chosen": chosen,
                                  "runs": {f"{s}={v}": r for (s, v), r in results.items()}}, header + lines)
    print("\n".join(header + lines))


if __name__ == "__main__":
    main()
