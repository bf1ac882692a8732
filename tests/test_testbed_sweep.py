"""The testbed sweep through its script: recipes × seeds, curves, the seed table with paired
differences, and reuse of finished runs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sweep_runs_recipes_over_seeds_writes_tables_curves_and_reuses_runs(tmp_path):
    tiny = ["--data.init_args.root=data", "--data.init_args.num_train=64", "--data.init_args.num_val=16",
            "--data.init_args.num_test=20", "--data.init_args.batch_size=16", "--data.init_args.num_workers=0",
            "--data.init_args.progress=false", "--trainer.max_epochs=2", "--trainer.check_val_every_n_epoch=1",
            "--trainer.log_every_n_steps=1"]
    recipes = {"base": [str(ROOT / "experiments" / "pretrain" / "default.yaml")], "common": tiny,
               "recipes": {"plain": {"note": "as configured"},
                           "slow": {"note": "lower lr", "args": ["--model.init_args.lr=1.0e-5"]}}}
    (tmp_path / "recipes.yaml").write_text(yaml.safe_dump(recipes))
    cmd = [sys.executable, str(ROOT / "experiments" / "testbed" / "sweep.py"), "--recipes", "recipes.yaml",
           "--seeds", "2", "--jobs", "2", "--workdir", "runs/sweep", "--out", "out/tb", "--title", "tiny"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.count("[run]") == 4
    table = (tmp_path / "out" / "tb.md").read_text()
    assert "| plain | as configured |" in table and "--model.init_args.lr=1.0e-5" in table
    seeds = (tmp_path / "out" / "tb_seeds.md").read_text()
    assert "Δ RSUM vs plain" in seeds and "| slow |" in seeds and "baseline" in seeds
    data = json.loads((tmp_path / "out" / "tb.json").read_text())
    assert set(data["curves"]) == {"plain", "slow"} and data["curves"]["plain"]["train/loss"]
    assert set(data["seeds"]["slow"]["runs"]) == {"0", "1"}  # keyed by seed
    assert (tmp_path / "out" / "tb.png").stat().st_size > 0 and (tmp_path / "out" / "tb_seeds.png").stat().st_size > 0
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0 and again.stdout.count("[reuse]") == 4 and "[run]" not in again.stdout
