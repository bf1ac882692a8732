"""Validation-split tuning through its script: runs, dedupes identical configurations, picks by val RSUM."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cots_utils import cots_override

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tune_picks_on_validation_and_runs_each_configuration_once(tmp_path):
    override = cots_override(tmp_path, heads="keep")
    grid = {"title": "tiny tune", "base": str(ROOT / "experiments" / "pretrain" / "cots.yaml"),
            "rows": str(ROOT / "experiments" / "ablations" / "cots_tune_rows"),  # as before tuning, like the real grid
            "settings": {"kl_weight": {"row": "5_kl.yaml", "where": ["model", "init_args", "heads", 1, "init_args", "weight"],
                                       "values": [0.1, 1.0]},
                         "queue_size": {"row": "2_queue.yaml", "values": [2048],
                                        "where": ["model", "init_args", "state", "momentum", "init_args", "queue_size"]},
                         "momentum": {"row": "2_queue.yaml", "values": [0.995],
                                      "where": ["model", "init_args", "state", "momentum", "init_args", "momentum"]}}}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    cmd = [sys.executable, str(ROOT / "experiments" / "ablations" / "tune.py"), "--grid", str(tmp_path / "grid.yaml"),
           "--out", str(tmp_path / "tune"), "--workdir", "runs/tune", "--jobs", "2",
           "--config", str(override), "--data.init_args.root=data", "--data.init_args.num_train=32",
           "--data.init_args.num_val=8", "--data.init_args.num_test=12", "--data.init_args.batch_size=16",
           "--data.init_args.image_size=32", "--data.init_args.num_workers=0", "--trainer.max_epochs=1",
           "--trainer.check_val_every_n_epoch=1"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.count("[run] ") == 3  # queue_size=2048 and momentum=0.995 are one configuration
    report = json.loads((tmp_path / "tune.json").read_text())
    for setting, spec in grid["settings"].items():
        got = report["chosen"][setting]
        assert str(got["value"]) == max(got["val_rsum"], key=got["val_rsum"].get)  # JSON keys are strings
        assert len(got["val_rsum"]) == len(spec["values"])
    runs = report["runs"]
    assert runs["queue_size=2048"] == runs["momentum=0.995"]
    generated = yaml.safe_load((tmp_path / "runs" / "tune" / "overrides" / "kl_weight_0.1.yaml").read_text())
    assert generated["model"]["init_args"]["heads"][1] == {"class_path": "twostream.methods.cots.KLAlignment",
                                                         "init_args": {"weight": 0.1}}
    md = (tmp_path / "tune.md").read_text()
    assert "val rsum" in md and "test/" not in md and "| test" not in md  # no test-split number to pick on
