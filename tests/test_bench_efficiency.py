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


def test_paper_sizes_script_tiny_mode(tmp_path):
    """experiments/benchmarks/efficiency_paper.py end to end at toy sizes: interleaved rows, derived formulas."""
    spec = importlib.util.spec_from_file_location("bench_efficiency_paper", BENCH / "efficiency_paper.py")
    paper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(paper)
    n, m, ks = 6, 30, (2, 4)
    result = paper.main(["--tiny", "--rounds", "4", "--every", "img384=2,vl_img=3", "--image-batch", "2",
                         "--caption-batch", "4", "--pair-batch", "2", "--context", "12",
                         "--datasets", f"A={n}x{m},B=2x10",
                         "--ks", ",".join(map(str, ks)), "--out", str(tmp_path / "paper")])
    data = json.loads((tmp_path / "paper.json").read_text())
    costs = data["costs"]
    assert list(costs) == ["img224", "img384", "cap", "pair", "vl_img", "vl_cap"]
    assert costs["img224"]["batches"] == 4 and costs["img384"]["batches"] == 2 and costs["vl_img"]["batches"] == 2
    assert costs["cap"]["items"] == 16 and costs["pair"]["items"] == 8
    assert all(c["per_item_s"] > 0 for c in costs.values()) and len(data["load_per_round"]) == 4
    t = {k: c["per_item_s"] for k, c in costs.items()}
    rows = {r["key"]: r for r in data["derived"]["A"]["rows"]}
    assert list(rows) == ["full", "two-stream", "two-stream 384", "decomposed", *(f"k{k}" for k in ks)]
    sim = data["sim_sort"]["A"]
    assert rows["full"]["seconds"] == pytest.approx(n * m * t["pair"])
    two = n * t["img224"] + m * t["cap"] + sim["total_s"]["two"]
    assert rows["two-stream"]["seconds"] == pytest.approx(two)
    decomposed = n * t["vl_img"] + m * t["vl_cap"] + sim["total_s"]["decomposed"]
    assert rows["decomposed"]["seconds"] == pytest.approx(decomposed)
    for k in ks:
        assert rows[f"k{k}"]["seconds"] == pytest.approx(two + (n + m) * k * t["pair"])
    for r in rows.values():
        assert r["speedup"] == pytest.approx(rows["full"]["seconds"] / r["seconds"])
    md = (tmp_path / "paper.md").read_text()
    assert "10,800" in md and "333" in md and "1000+" in md and "N·M·t_pair / (N·t_img" in md and "## B:" in md
    assert data["machine"]["threads"] == 1 and "--tiny" in data["command"] and result["wall_s"] > 0
