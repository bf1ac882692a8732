"""The testbed learns: the default recipe leaves the contrastive plateau within a few hundred steps.

The plateau is the loss of embeddings that carry no information, ln(batch): the old default sat
there for its first ~150 steps and some recipes never left it (docs/testbed.md). Fixed seed, the
user's entry point, default.yaml's towers and optimiser with a CI-sized schedule: batch 64, 300
steps with a 100-step warm-up, 2,000 training images.
"""
import json
import math
import sys
from pathlib import Path

from twostream.cli import run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments" / "testbed"))
from curves import read_curves  # noqa: E402  (all of a run's event files: fit and test write one each)


def test_default_recipe_leaves_the_contrastive_plateau(tmp_path):
    batch = 64
    cli = run(["fit", "--config", str(ROOT / "experiments" / "pretrain" / "default.yaml"),
               f"--data.init_args.root={tmp_path / 'data'}", "--data.init_args.num_train=2000",
               "--data.init_args.num_val=50", "--data.init_args.num_test=200", f"--data.init_args.batch_size={batch}",
               "--data.init_args.progress=false", "--trainer.max_epochs=-1", "--trainer.max_steps=300",
               "--model.init_args.warmup_steps=100",
               "--trainer.check_val_every_n_epoch=null", "--trainer.val_check_interval=300",
               "--trainer.log_every_n_steps=10", "--trainer.enable_progress_bar=false",
               f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}", "--seed_everything=0"])
    run_dir = Path(cli.trainer.logger.log_dir)
    loss = [value for _, _, value in read_curves(run_dir)["train/loss"]]
    plateau = math.log(batch)
    assert max(loss[:2]) > plateau - 0.2, "the run should start at the plateau (untrained embeddings)"
    last = sum(loss[-5:]) / 5
    assert last < plateau - 1.5, f"train loss {last:.2f} after 300 steps: still near the plateau ln({batch}) = {plateau:.2f}"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    chance_r1 = 100 / 200  # 200 test images
    assert metrics["t2i_r1"] > 10 * chance_r1 and metrics["i2t_r1"] > 10 * chance_r1, metrics
