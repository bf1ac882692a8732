"""experiments/benchmarks/efficiency.py at tiny sizes: rows, pair counts, ratios, measured vs extrapolated."""
import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks"
N, M, KS = 8, 40, (2, 4)  # k <= N, so a k-test scores exactly (N + M) * k pairs
TINY = ["--images", str(N), "--captions", str(M), "--width", "32", "--layers", "1", "--heads", "2",
        "--image-size", "32", "--context", "16", "--embed", "32", "--ks", ",".join(map(str, KS)),
        "--repeats", "2", "--encode-batch", "16", "--pair-batch", "64"]


@pytest.fixture(scope="module")
def efficiency():
    spec = importlib.util.spec_from_file_location("bench_efficiency", BENCH / "efficiency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the script puts experiments/ on sys.path itself, for report.py
    return module


def rows_by_key(result: dict) -> dict:
    return {row["key"]: row for row in result["rows"]}


def test_tiny_run_writes_consistent_table(efficiency, tmp_path):
    result = efficiency.main([*TINY, "--budget-s", "30", "--out", str(tmp_path / "eff")])
    md, data = (tmp_path / "eff.md").read_text(), json.loads((tmp_path / "eff.json").read_text())
    assert data["rows"] == json.loads(json.dumps(result["rows"]))
    rows = rows_by_key(data)
    assert list(rows) == ["two-stream", "decomposed", *(f"k{k}" for k in KS), "full"]
    assert all(row["seconds"] > 0 for row in rows.values())
    full = rows["full"]
    assert full["pairs"] == N * M and not full["extrapolated"] and full["measured_pairs"] == N * M
    assert "extrapolated" not in full["method"]  # the budget covers all 320 pairs: measured, not extrapolated
    for k in KS:
        row = rows[f"k{k}"]
        assert row["pairs"] == (N + M) * k and not row["extrapolated"]
        assert row["seconds"] > row["cross_encoder_s"]  # includes the two-stream shortlist
    assert rows["two-stream"]["pairs"] == rows["decomposed"]["pairs"] == 0
    for row in rows.values():
        assert row["speedup_full_over_row"] == pytest.approx(full["seconds"] / row["seconds"])
    assert "COTS" in md and "10,800" in md and "VLDeformer" in md and "333" in md and "1 torch thread" in md
    assert data["machine"]["threads"] == 1 and data["sizes"]["images"] == N and "--budget-s" in data["command"]


def test_zero_budget_extrapolates_from_one_batch(efficiency, tmp_path):
    result = efficiency.main([*TINY, "--budget-s", "0", "--out", str(tmp_path / "eff")])
    full = rows_by_key(result)["full"]
    assert full["extrapolated"] and full["measured_pairs"] == 64 and full["batches"] == 1
    assert full["seconds"] == pytest.approx(full["per_pair_s"] * N * M)
    assert "extrapolated from 64 measured pairs" in (tmp_path / "eff.md").read_text()
