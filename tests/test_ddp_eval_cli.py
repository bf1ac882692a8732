"""`twostream test` on 2 DDP processes gives exactly the single-process recalls (odd-sized split:
DistributedSampler pads both loaders with duplicates that the metric must drop)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DEFAULT = str(Path(__file__).resolve().parents[1] / "experiments" / "pretrain" / "default.yaml")


def _test_run(tmp: Path, devices: int, strategy: str) -> dict:
    out = tmp / f"runs{devices}"
    cmd = [sys.executable, "-m", "twostream", "test", "--config", DEFAULT, f"--data.init_args.root={tmp / 'data'}",
           "--data.init_args.num_train=32", "--data.init_args.num_val=8", "--data.init_args.num_test=25",
           "--data.init_args.eval_batch_size=4", "--data.init_args.num_workers=0",
           f"--trainer.devices={devices}", f"--trainer.strategy={strategy}",
           f"--trainer.logger.init_args.save_dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(next(out.rglob("metrics.json")).read_text())


@pytest.mark.ddp
def test_two_process_test_split_equals_single_process(tmp_path):
    single = _test_run(tmp_path, 1, "auto")
    double = _test_run(tmp_path, 2, "ddp")
    assert single == double
    assert 0 < single["rsum"] < 600
