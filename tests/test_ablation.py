"""`run_ablation.py` (what `make ablate` runs): rows x seeds through the CLI, CI + paired table, JSON, plot, reuse."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cots_utils import cots_override, tiny_tokenizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_ablation_sweep_writes_ci_and_paired_table_and_reuses_runs(tmp_path):
    (tmp_path / "runs" / "tokenizer").mkdir(parents=True)
    tiny_tokenizer(tmp_path / "runs" / "tokenizer" / "vqvae.pt")  # where cots.yaml's MVM head looks (cwd = tmp)
    override = cots_override(tmp_path, heads="keep")
    cmd = [sys.executable, str(ROOT / "experiments" / "ablations" / "run_ablation.py"),
           "--base", str(ROOT / "experiments" / "pretrain" / "cots.yaml"),
           "--schedule", str(ROOT / "experiments" / "testbed" / "mini.yaml"), "--rows", str(ROOT / "experiments" / "ablations" / "cots"),
           "--only", "1_itc", "7_full", "--seeds", "2", "--jobs", "2", "--out", str(tmp_path / "abl"), "--workdir", "runs/abl",
           "--config", str(override), "--data.init_args.root=data", "--data.init_args.num_train=32",
           "--data.init_args.num_val=8", "--data.init_args.num_test=12", "--data.init_args.batch_size=16",
           "--data.init_args.image_size=32", "--data.init_args.num_workers=0", "--trainer.max_epochs=1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    table = (tmp_path / "abl.md").read_text()
    assert "CLIP-style in-batch contrastive only" in table and "full COTS" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "±" in line]
    assert len(rows) == 2 and all(line.count(" ± ") == 7 for line in rows)
    assert "Mean ± 95 % CI half-width (Student t, n−1 df) over 2 seed(s)" in table
    assert "| Δ RSUM vs `1_itc` [95 % CI] | p | verdict |" in table
    assert rows[0].endswith("| - | - | baseline |")
    assert rows[1].endswith(("| distinguishable |", "| not distinguishable at this scale |"))
    data = json.loads((tmp_path / "abl.json").read_text())
    assert [sorted(v) for v in data["runs"].values()] == [["0", "1"], ["0", "1"]] and data["baseline"] == "1_itc"
    assert data["summary"]["1_itc"]["rsum"]["n"] == 2 and set(data["paired_vs_baseline"]) == {"7_full"}
    paired = data["paired_vs_baseline"]["7_full"]["rsum"]
    assert paired["n"] == 2 and set(paired["differences"]) == {"0", "1"}
    full = data["runs"]["7_full"]["0"]
    assert 0 <= full["rsum"] <= 600 and full["rsum"] == pytest.approx(sum(full[k] for k in
                                                                          ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")))
    assert (tmp_path / "abl.png").stat().st_size > 1000
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and again.stdout.count("[reuse]") == 4
