"""Is each committed sweep table still a table of today's row files?

    python experiments/check_results.py [experiments/results/*.json]

Why: a table's rows are named by their files (``experiments/ablations/cots/5_kl.yaml``), but a file can
be edited after its runs finished — a tuned value written in — and the table then describes a row that
no longer exists (it happened: the first tuned COTS table held untuned KL and full rows). Every run
record of an ``run_ablation.py`` sweep carries its ``run_key`` (hash of the config texts, seed and extra
arguments); this re-parses the sweep's own command, recomputes each key from today's files and lists
the runs whose key differs. Exit status 1 when any does. Other results files (no ``runs`` or not made
by run_ablation.py) are passed over.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
sys.path.insert(0, str(ROOT / "experiments" / "ablations"))
from runlib import run_key  # noqa: E402
import run_ablation  # noqa: E402

SWEEP = "experiments/ablations/run_ablation.py"


def stale_runs(results_file: Path, root: Path = ROOT) -> list[str] | None:
    """``row seed`` of each run whose configs changed since; None when the file is not a sweep's results."""
    try:
        data = json.loads(results_file.read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"check_results: {results_file}: not a readable results JSON ({err})")
    words = shlex.split(data.get("command", ""))
    if "runs" not in data or len(words) < 2 or not words[1].endswith(SWEEP):
        return None
    args, extra = run_ablation.parse_args(words[2:])
    base, extra = run_ablation.sweep_inputs(args, extra)
    base = [str(root / config) for config in base]
    stale = []
    for row, seeds in data["runs"].items():
        row_file = root / args.rows / f"{row}.yaml"
        for seed, record in seeds.items():
            if "run_key" not in record:
                continue  # from before keys existed: cannot be checked
            if not row_file.exists() or run_key([*base, str(row_file)], int(seed), extra) != record["run_key"]:
                stale.append(f"{row} seed {seed}")
    return stale


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="*", type=Path, help="results JSON files (default: experiments/results/*.json)")
    files = p.parse_args(argv).results or sorted((ROOT / "experiments" / "results").glob("*.json"))
    bad = 0
    for f in files:
        stale = stale_runs(f)
        if stale is None:
            continue
        bad += bool(stale)
        print(f"{f.name}: " + ("current" if not stale else
              f"{len(stale)} run(s) made from configs that have changed since: {', '.join(stale)} — rerun the "
              f"sweep's command (it reruns only these; experiments/restore_runs.py puts the others back)"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
