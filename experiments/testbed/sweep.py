"""Run testbed recipes (one ``twostream fit`` each, reused when finished), tabulate and plot them.

    python experiments/testbed/sweep.py --recipes experiments/testbed/recipes.yaml --jobs 2 \
        --only default_v1 conv_stem --out experiments/results/testbed

A recipe is a name, a note and the command-line overrides it adds to the file's ``base`` configs
and ``common`` arguments; the table says, for every row, the exact command that made it. With
``--jobs 2`` each run gets one torch thread, so two runs side by side see the same machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from curves import plot_curves, read_curves  # noqa: E402
from report import command as command_line, machine, machine_line, write_report  # noqa: E402
from runlib import markdown_table, mean_ci, plot_rsum, run_fit, run_name  # noqa: E402

from twostream.callbacks.run_summary import RECALL_KEYS  # noqa: E402


def load_recipes(path: Path) -> dict:
    spec = yaml.safe_load(path.read_text())
    for key in ("base", "recipes"):
        if key not in spec:
            raise SystemExit(f"{path}: missing top-level key {key!r} (expected base, common, recipes)")
    return spec


def configs_of(spec: dict, recipe: dict) -> list[str]:
    """The recipe's config files: its own ``base`` (else the file's) and then its ``configs``."""
    return recipe.get("base", spec["base"]) + recipe.get("configs", [])


def args_of(spec: dict, recipe: dict) -> list[str]:
    """The recipe's command-line overrides: its own ``common`` (else the file's) and then its ``args``."""
    return [*recipe.get("common", spec.get("common", [])), *recipe.get("args", [])]


def command_of(spec: dict, recipe: dict, seed: int) -> str:
    parts = ["twostream fit", *(f"--config {c}" for c in configs_of(spec, recipe)), *args_of(spec, recipe),
             f"--seed_everything={seed}"]
    return " ".join(parts)


def summarise_run(name: str, metrics: dict, curves: dict) -> dict:
    loss = [p[2] for p in curves.get("train/loss", [])]
    val = curves.get("val/rsum", [])
    best = max(val, key=lambda p: p[2]) if val else None
    return {
        "name": name,
        "last_logged_step": curves["train/loss"][-1][0] if loss else None,
        "fit_s": metrics.get("fit_wall_s"),
        "final_loss": sum(loss[-5:]) / max(1, len(loss[-5:])) if loss else None,
        "best_val_rsum": best[2] if best else None, "best_val_step": best[0] if best else None,
        **{k: metrics[k] for k in ("i2t_r1", "t2i_r1", "rsum") if k in metrics},
        "pct_of_oracle_rsum": metrics.get("pct_of_oracle", {}).get("rsum"),
        "oracle_rsum": metrics.get("oracle", {}).get("rsum"),
    }


def table_lines(rows: list[dict], commands: dict[str, str], notes: dict[str, str], header: str) -> list[str]:
    """The recipes table (first seed) and, under it, each row's command."""
    lines = [header, "", "| recipe | what changes | last logged step | fit s | final loss | best val RSUM (step) | test I2T R@1 "
             "| test T2I R@1 | test RSUM | % of oracle RSUM |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v, spec=".2f": "–" if v is None else format(v, spec)  # noqa: E731
    for r in rows:
        lines.append(f"| {r['name']} | {notes[r['name']]} | {fmt(r['last_logged_step'], 'd')} | {fmt(r['fit_s'], '.0f')} | "
                     f"{fmt(r['final_loss'], '.3f')} | {fmt(r['best_val_rsum'], '.1f')} ({r['best_val_step']}) | "
                     f"{fmt(r.get('i2t_r1'))} | {fmt(r.get('t2i_r1'))} | {fmt(r.get('rsum'), '.1f')} | "
                     f"{fmt(r['pct_of_oracle_rsum'], '.1f')} |")
    lines += ["", "Commands (each row's run; `runs/` paths via the sweep's `--workdir`):", ""]
    lines += [f"- **{name}**: `{cmd}`" for name, cmd in commands.items()]
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", required=True, type=Path)
    p.add_argument("--only", nargs="*", default=None, help="recipe names to run (default: all)")
    p.add_argument("--seed", type=int, default=0, help="the (first) seed")
    p.add_argument("--seeds", type=int, default=1, help="seeds per recipe (seed, seed+1, ...): with more than one, "
                   "a mean ± 95 %% CI table and paired differences to --baseline are written too")
    p.add_argument("--baseline", default=None, help="recipe the others are compared with (default: the first)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (0: torch's default)")
    p.add_argument("--workdir", type=Path, default=Path("runs/testbed"))
    p.add_argument("--out", type=Path, required=True, help="output path without suffix (.md, .json, .png)")
    p.add_argument("--title", default="Testbed recipes (mini-scale, synthetic shapes)")
    args = p.parse_args(argv)
    spec = load_recipes(args.recipes)
    names = [n for n in spec["recipes"] if args.only is None or n in args.only]
    unknown = sorted(set(args.only or ()) - set(spec["recipes"]))
    if unknown:
        raise SystemExit(f"--only: unknown recipe(s) {unknown}; known: {sorted(spec['recipes'])}")
    threads = args.threads or None
    start = time.time()

    seeds = list(range(args.seed, args.seed + args.seeds))
    tasks = [(n, seed) for seed in seeds for n in names]  # seed-major: a stopped sweep has whole seeds

    def run(task: tuple[str, int]):
        name, seed = task
        recipe = spec["recipes"][name]
        return run_fit(configs_of(spec, recipe), run_name(name, seed), seed, args.workdir, args_of(spec, recipe),
                       threads=threads)

    reused = sum((args.workdir / run_name(n, seed) / "metrics.json").exists() for n, seed in tasks)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = dict(zip(tasks, pool.map(run, tasks)))
    first = seeds[0]
    curves = {n: read_curves(args.workdir / run_name(n, first)) for n in names}
    rows = [summarise_run(n, results[(n, first)][0], curves[n]) for n in names]
    commands = {n: command_of(spec, spec["recipes"][n], first) for n in names}
    notes = {n: spec["recipes"][n].get("note", "") for n in names}
    where = f"{args.jobs} run(s) at a time{f', {threads} torch thread(s) each' if threads else ''}"
    if reused:
        where += f" ({reused} of {len(tasks)} runs reused from an earlier invocation, with its timing)"
    host, cmd = (machine(threads) if threads else machine()), command_line(argv, __file__)
    header = (f"# {args.title}\n\nSeed {first}, one run per recipe; {where}; "
              f"{(time.time() - start) / 60:.1f} min for this invocation. Machine: {machine_line(host)}.\n\n"
              f"Command: `{cmd}`")
    payload = {"command": cmd, "machine": host, "rows": rows, "commands": commands, "curves": curves}
    if len(seeds) > 1:
        payload["seeds"] = write_seed_table(args, names, notes, seeds, results, where)
    md, _ = write_report(args.out, payload, table_lines(rows, commands, notes, header))
    plot_curves(args.out.with_suffix(".png"), curves, args.title)
    print(md.read_text())


def write_seed_table(args, names: list[str], notes: dict, seeds: list[int], results: dict, where: str) -> dict:
    """``<out>_seeds.{md,png}``: mean ± 95 % CI per recipe, paired differences to the baseline recipe."""
    baseline = names.index(args.baseline) if args.baseline else 0
    runs = [{seed: results[(n, seed)][0] for seed in seeds} for n in names]
    lines = [f"# {args.title}: {len(seeds)} seeds", "", f"Seeds {seeds[0]}–{seeds[-1]}; {where}. Mean ± 95 % CI "
             "half-width (Student t); Δ = paired difference to the baseline on the same seeds.", "",
             *markdown_table(names, runs, RECALL_KEYS, baseline=baseline, first="recipe"), ""]
    summary = {}
    for n, row in zip(names, runs):
        rsum = mean_ci([r["rsum"] for r in row.values()])
        fit = mean_ci([r["fit_wall_s"] for r in row.values() if "fit_wall_s" in r])
        summary[n] = {"rsum": rsum.as_dict(), "std_over_mean_pct": 100 * rsum.std / rsum.mean, "fit_wall_s": fit.as_dict(),
                      "runs": row}
        lines.append(f"- **{n}** ({notes[n]}): RSUM std {rsum.std:.2f} = {100 * rsum.std / rsum.mean:.2f} % of the mean; "
                     f"fit {fit.mean:.0f} s on average (max {max(r['fit_wall_s'] for r in row.values()):.0f} s)")
    out = args.out.with_name(args.out.name + "_seeds")
    md, _ = write_report(out, None, lines)  # its numbers go into <out>.json under "seeds"
    plot_rsum(out.with_suffix(".png"), names, runs, "test RSUM", baseline=baseline if len(names) > 1 else None)
    print(md.read_text())
    return summary


if __name__ == "__main__":
    main()
