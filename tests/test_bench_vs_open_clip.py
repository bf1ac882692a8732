"""experiments/benchmarks/vs_open_clip.py --tiny: both trainers, interleaved rounds, the default before/after."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("webdataset") is None,
                    reason="open_clip_train needs webdataset (pip install -e '.[bench]')")
@pytest.mark.timeout(300)
def test_vs_open_clip_tiny_writes_ratio_and_rounds(tmp_path):
    stem = tmp_path / "bench"
    cmd = [sys.executable, str(ROOT / "experiments" / "benchmarks" / "vs_open_clip.py"), "--tiny", "--workdir",
           str(tmp_path / "work"), "--out", str(stem), "--default-steps", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=280, env=env)  # ~70 s, 2 busy cores
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    md = stem.with_suffix(".md").read_text()
    assert "twostream fit / open_clip_train throughput" in md and "--tiny" in md and "before steps/s" in md
    data = json.loads(stem.with_suffix(".json").read_text())
    assert len(data["rounds"]) == 2 and data["summary"]["ratio"]["median"] > 0
    for r in data["rounds"]:
        assert len(r["twostream"]["step_s"]) == 3 and len(r["open_clip"]["step_s"]) == 3
        assert r["default_before"]["steps_per_s"] > 0 and r["default_after"]["steps_per_s"] > 0
    assert data["machine"]["nproc"] and data["before_overrides"]
