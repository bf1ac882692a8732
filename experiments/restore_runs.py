"""Put a sweep's finished runs back from its results JSON, so the next sweep reuses them.

    python experiments/restore_runs.py experiments/results/cots_ablation.json --workdir runs/claims/cots_ablation
    python experiments/restore_runs.py experiments/results/tables.json --workdir runs/tables   # then `make tables`

Why: ``runs/`` is git-ignored, so a fresh clone (or another machine) has none of the runs behind a
committed table, and extending that table (a row edited, more seeds) would run every row again. The
results JSON of a sweep keeps each run's reuse record (its metrics and ``run_key``) under
``runs[row][seed]``; this writes them back as ``<workdir>/<row>_seed<seed>/metrics.json``. Reuse still
checks each record's key against today's config files (``runlib.run_fit``), so a record whose row has
changed since is set aside and run again, never handed back (``make tables`` also trains a single-stream
seed again when its VLDeformer run is still to do: the checkpoint it starts from is not in the record). Records without a key are skipped: they
could not be checked. Existing records are left alone.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runlib import run_name  # noqa: E402


def restore(results_file: Path, workdir: Path) -> dict[str, int]:
    """Counts of records ``restored``, ``kept`` (already there) and ``skipped`` (no run_key)."""
    try:
        runs = json.loads(results_file.read_text())["runs"]
    except (OSError, ValueError, KeyError) as err:
        raise SystemExit(f"restore_runs: {results_file}: expected a sweep's results JSON with a 'runs' "
                         f"mapping (row -> seed -> metrics), as run_ablation.py writes ({err})")
    counts = {"restored": 0, "kept": 0, "skipped": 0}
    for row, seeds in runs.items():
        for seed, record in seeds.items():
            target = workdir / run_name(row, seed) / "metrics.json"
            if "run_key" not in record:
                counts["skipped"] += 1
            elif target.exists():
                counts["kept"] += 1
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(record, indent=2, sort_keys=True))
                counts["restored"] += 1
    return counts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, help="a sweep's results JSON (experiments/results/<name>.json)")
    p.add_argument("--workdir", type=Path, required=True, help="the sweep's --workdir")
    args = p.parse_args(argv)
    counts = restore(args.results, args.workdir)
    print(f"restore_runs: {counts['restored']} record(s) written to {args.workdir}, {counts['kept']} already there, "
          f"{counts['skipped']} without a run_key skipped")


if __name__ == "__main__":
    sys.exit(main())
