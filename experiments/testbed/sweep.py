"""Run testbed recipes (one ``twostream fit`` each, reused when finished), tabulate and plot them.

    python experiments/testbed/sweep.py --recipes experiments/testbed/recipes.yaml --jobs 2 \
        --only default_v1 conv_stem --out experiments/results/testbed

A recipe is a name, a note and the command-line overrides it adds to the file's ``base`` configs
and ``common`` arguments; the table says, for every row, the exact command that made it. With
``--jobs 2`` each run gets one torch thread, so two runs side by side see the same machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from curves import plot_curves, read_curves  # noqa: E402
from runlib import run_fit  # noqa: E402


def load_recipes(path: Path) -> dict:
    spec = yaml.safe_load(path.read_text())
    for key in ("base", "recipes"):
        if key not in spec:
            raise SystemExit(f"{path}: missing top-level key {key!r} (expected base, common, recipes)")
    return spec


def command_of(spec: dict, recipe: dict, seed: int) -> str:
    parts = ["twostream fit", *(f"--config {c}" for c in spec["base"] + recipe.get("configs", [])),
             *spec.get("common", []), *recipe.get("args", []), f"--seed_everything={seed}"]
    return " ".join(parts)


def summarise_run(name: str, metrics: dict, curves: dict) -> dict:
    loss = [p[2] for p in curves.get("train/loss", [])]
    val = curves.get("val/rsum", [])
    best = max(val, key=lambda p: p[2]) if val else None
    return {
        "name": name,
        "steps": curves["train/loss"][-1][0] + 1 if loss else 0,
        "fit_s": metrics.get("fit_wall_s"),
        "final_loss": sum(loss[-5:]) / max(1, len(loss[-5:])) if loss else None,
        "best_val_rsum": best[2] if best else None, "best_val_step": best[0] if best else None,
        **{k: metrics[k] for k in ("i2t_r1", "t2i_r1", "rsum") if k in metrics},
        "pct_of_oracle_rsum": metrics.get("pct_of_oracle", {}).get("rsum"),
        "oracle_rsum": metrics.get("oracle", {}).get("rsum"),
    }


def write_table(path: Path, rows: list[dict], commands: dict[str, str], notes: dict[str, str], header: str) -> None:
    lines = [header, "", "| recipe | what changes | steps | fit s | final loss | best val RSUM (step) | test I2T R@1 "
             "| test T2I R@1 | test RSUM | % of oracle RSUM |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v, spec=".2f": "–" if v is None else format(v, spec)  # noqa: E731
    for r in rows:
        lines.append(f"| {r['name']} | {notes[r['name']]} | {r['steps']} | {fmt(r['fit_s'], '.0f')} | "
                     f"{fmt(r['final_loss'], '.3f')} | {fmt(r['best_val_rsum'], '.1f')} ({r['best_val_step']}) | "
                     f"{fmt(r.get('i2t_r1'))} | {fmt(r.get('t2i_r1'))} | {fmt(r.get('rsum'), '.1f')} | "
                     f"{fmt(r['pct_of_oracle_rsum'], '.1f')} |")
    lines += ["", "Commands (each row's run; `runs/` paths via the sweep's `--workdir`):", ""]
    lines += [f"- **{name}**: `{cmd}`" for name, cmd in commands.items()]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", required=True, type=Path)
    p.add_argument("--only", nargs="*", default=None, help="recipe names to run (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--workdir", type=Path, default=Path("runs/testbed"))
    p.add_argument("--out", type=Path, required=True, help="output path without suffix (.md, .json, .png)")
    p.add_argument("--title", default="Testbed recipes (mini-scale, synthetic shapes)")
    args = p.parse_args(argv)
    spec = load_recipes(args.recipes)
    names = [n for n in spec["recipes"] if args.only is None or n in args.only]
    unknown = sorted(set(args.only or ()) - set(spec["recipes"]))
    if unknown:
        raise SystemExit(f"--only: unknown recipe(s) {unknown}; known: {sorted(spec['recipes'])}")
    threads = 1 if args.jobs > 1 else None
    start = time.time()

    def run(name: str):
        recipe = spec["recipes"][name]
        configs = spec["base"] + recipe.get("configs", [])
        return run_fit(configs, f"{name}_seed{args.seed}", args.seed, args.workdir,
                       [*spec.get("common", []), *recipe.get("args", [])], threads=threads)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = dict(zip(names, pool.map(run, names)))
    curves = {n: read_curves(args.workdir / f"{n}_seed{args.seed}") for n in names}
    rows = [summarise_run(n, results[n][0], curves[n]) for n in names]
    commands = {n: command_of(spec, spec["recipes"][n], args.seed) for n in names}
    notes = {n: spec["recipes"][n].get("note", "") for n in names}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# {args.title}\n\nSeed {args.seed}, one run per recipe; {args.jobs} run(s) at a time"
              f"{', 1 torch thread each' if threads else ''}; {(time.time() - start) / 60:.1f} min for this invocation.")
    write_table(args.out.with_suffix(".md"), rows, commands, notes, header)
    args.out.with_suffix(".json").write_text(json.dumps({"rows": rows, "commands": commands, "curves": curves},
                                                        indent=1) + "\n")
    ceiling = next((r["oracle_rsum"] for r in rows if r.get("oracle_rsum")), None)
    plot_curves(args.out.with_suffix(".png"), curves, args.title, ceiling=None)
    print(args.out.with_suffix(".md").read_text())
    _ = ceiling  # the test ceiling is in the table; the val curves have their own (val split) scale


if __name__ == "__main__":
    main()
