"""experiments/check_results.py: committed sweep tables describe today's row files."""
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import check_results  # noqa: E402
from runlib import run_key  # noqa: E402


def test_committed_sweep_tables_are_of_todays_rows():
    """Editing a row without rerunning it leaves a table that names the wrong configuration: rerun it."""
    assert check_results.main([]) == 0


def test_an_edited_row_is_reported(tmp_path):
    root = tmp_path / "repo"
    rows = root / "rows"
    rows.mkdir(parents=True)
    (root / "base.yaml").write_text("model: {}\n")
    for name in ("a", "b"):
        (rows / f"{name}.yaml").write_text("model: {init_args: {lr: 0.1}}\n")
    keys = {n: run_key([str(root / "base.yaml"), str(rows / f"{n}.yaml")], 0, ["--x=1"]) for n in ("a", "b")}
    results = tmp_path / "sweep.json"
    results.write_text(json.dumps({
        "command": "python experiments/ablations/run_ablation.py --base base.yaml --rows rows --out o --x=1",
        "runs": {n: {"0": {"rsum": 1.0, "run_key": keys[n]}} for n in keys}}))
    assert check_results.stale_runs(results, root) == []
    (rows / "b.yaml").write_text("model: {init_args: {lr: 0.2}}\n")
    assert check_results.stale_runs(results, root) == ["b seed 0"]
    shutil.rmtree(rows)
    assert check_results.stale_runs(results, root) == ["a seed 0", "b seed 0"]  # a row file that is gone
    other = tmp_path / "bench.json"
    other.write_text(json.dumps({"command": "python experiments/benchmarks/x.py"}))
    assert check_results.stale_runs(other, root) is None


def test_an_unreadable_results_file_is_named(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match=r"broken.json: not a readable results JSON"):
        check_results.stale_runs(bad)
