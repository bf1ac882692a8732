"""experiments/benchmarks/cots_step.py --smoke: runs end to end and writes all three sections."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cots_step_benchmark_smoke_writes_markdown_and_json(tmp_path):
    stem = tmp_path / "bench"
    cmd = [sys.executable, str(ROOT / "experiments" / "benchmarks" / "cots_step.py"), "--smoke", "--out", str(stem)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)  # ~20 s on 2 busy cores
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    md = stem.with_suffix(".md").read_text()
    for heading in ("## (a) Momentum (EMA) update", "## (b) COTS training step", "## (c) Share of the bare step"):
        assert heading in md
    assert "ALBEF per-parameter loop" in md and "ratio lightning / bare" in md and "--smoke" in md
    data = json.loads(stem.with_suffix(".json").read_text())
    assert {"command", "machine", "ema", "step", "share_large"} <= set(data)
    assert all(row["max_abs_diff_vs_fused"] < 1e-5 for run in data["ema"]["runs"] for row in run["rows"])
    assert len(data["step"]["ratios"]) == data["step"]["repeats"] and all(r > 0 for r in data["step"]["ratios"])
    assert 0 <= data["step"]["share"]["target_pct"] <= 100 and 0 <= data["share_large"]["target_pct"] <= 100
    assert data["machine"]["torch"] and data["machine"]["lightning"]
