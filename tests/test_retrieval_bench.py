"""experiments/benchmarks/search.py at a tiny size: every index kind measured, targets judged, report + plot written."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments" / "benchmarks"))
sys.path.insert(0, str(ROOT / "experiments"))


def test_search_benchmark_tiny_run_writes_markdown_json_and_plot(tmp_path):
    import search

    out = tmp_path / "bench_search"
    search.main(["--fast", "--galleries", "random", "--sizes", "600", "--queries", "50", "--latency-queries", "20",
                 "--ef-search", "16", "64", "--build-threads", "1", "--out", str(out)])
    result = json.loads(out.with_suffix(".json").read_text())
    kinds = {r["index"][:3] for r in result["rows"]}
    assert kinds == {"Fla", "HNS", "IVF"} and all(0 <= r["recall_at_10"] <= 1 for r in result["rows"])
    flat = next(r for r in result["rows"] if r["index"] == "Flat")
    assert flat["recall_at_10"] == 1.0 and flat["bytes_per_vector"] >= 4 * result["dim"]
    assert len(result["targets"]) == 2 and result["machine"]["threads"] == 1 and "loadavg" in result["machine"]
    md = out.with_suffix(".md").read_text()
    assert "## Targets" in md and "uniform on the sphere" in md and out.with_suffix(".png").stat().st_size > 1000
