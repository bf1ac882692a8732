"""The controlled COOKIE comparison through its script: per-seed teacher, equal-budget baseline, paired table."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cookie_controlled_uses_each_seeds_teacher_and_pairs_rows(tmp_path):
    mini = yaml.safe_load((ROOT / "experiments" / "testbed" / "mini.yaml").read_text())
    towers = mini["model"]["init_args"]  # the mini schedule with 1-layer, width-32 towers: a quick run
    towers["vision"]["init_args"]["config"].update(width=32, layers=1, head_width=16)
    towers["text"]["init_args"]["config"].update(width=32, layers=1, context_length=16)
    towers["embed_dim"] = 32
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(mini))
    cmd = [sys.executable, str(ROOT / "experiments" / "ablations" / "cookie_controlled.py"), "--seeds", "1",
           "--out", str(tmp_path / "cookie"), "--workdir", "runs/cookie", "--schedule", str(tmp_path / "tiny.yaml"),
           "--data.init_args.root=data",
           "--data.init_args.num_train=32", "--data.init_args.num_val=8", "--data.init_args.num_test=12",
           "--data.init_args.batch_size=16", "--data.init_args.num_workers=0", "--trainer.max_epochs=1"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    runs = tmp_path / "runs" / "cookie"
    heads = yaml.safe_load((runs / "overrides" / "cookie_seed0.yaml").read_text())["model"]["init_args"]["heads"]
    teacher = "runs/cookie/teacher_seed0/checkpoints/last.ckpt"  # relative to the working directory
    assert [h["init_args"]["teacher_checkpoint"] for h in heads[1:]] == [teacher, teacher]
    student = torch.load(runs / "cookie_seed0" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    source = torch.load(tmp_path / teacher, weights_only=True)["state_dict"]
    frozen = {k.split("teacher.tower.", 1)[1]: v for k, v in student.items() if k.startswith("heads.1.teacher.tower.")}
    assert frozen and all(torch.equal(v, source[f"vision.{k}"]) for k, v in frozen.items())  # the seed's own teacher
    steps = {name: torch.load(runs / f"{name}_seed0" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
             for name in ("teacher", "clip_10ep", "cookie")}
    assert steps["clip_10ep"] == 5 * (steps["teacher"] + steps["cookie"])  # 10 epochs = 5 x (1 + 1) in this tiny run
    report = json.loads((tmp_path / "cookie.json").read_text())
    assert set(report["runs"]) == {"clip_10ep", "clip_5ep", "shared_only", "cookie"}
    md = (tmp_path / "cookie.md").read_text()
    assert "vs `clip_10ep`" in md and "I2I R1" in md and "T2T R1" in md
