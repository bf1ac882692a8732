"""Pre-train → fine-tune through the CLI (what `make finetune` runs), and `init_from` on its own."""
import subprocess
from pathlib import Path

import pytest
import torch

from test_cli import tiny_args
from twostream.cli import run
from twostream.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
FINETUNE = str(ROOT / "experiments" / "finetune" / "synthetic.yaml")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("pre")
    run(["fit", *tiny_args(tmp), "--test_after_fit=false", "--trainer.enable_progress_bar=false"])
    return next((tmp / "runs").rglob("last.ckpt"))


@pytest.mark.slow
def test_finetune_starts_from_the_checkpoint_and_keeps_the_best_on_val_rsum(tmp_path, pretrained, capsys):
    cli = run(["fit", "--config", FINETUNE, f"--model.init_args.init_from={pretrained}",
               f"--data.init_args.root={tmp_path / 'data'}", "--data.init_args.num_train=96", "--data.init_args.num_val=20",
               "--data.init_args.num_test=20", "--data.init_args.batch_size=32", "--data.init_args.num_workers=0",
               "--trainer.max_epochs=2", "--trainer.enable_progress_bar=false",
               f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"])
    out = capsys.readouterr().out
    assert "init_from: " in out and str(pretrained) in out
    best = cli.trainer.checkpoint_callback
    assert best.monitor == "val/rsum" and best.mode == "max" and Path(best.best_model_path).name.startswith("best-")
    assert (Path(cli.trainer.logger.log_dir) / "metrics.json").is_file()


def test_init_from_copies_towers_and_errors_clearly(tmp_path, pretrained):
    from twostream.checkpoints import load_encoder_weights

    source = torch.load(pretrained, weights_only=False)["state_dict"]
    cli = run(["fit", *tiny_args(tmp_path), "--trainer.max_epochs=0", "--test_after_fit=false",
               f"--model.init_args.init_from={pretrained}", "--trainer.enable_progress_bar=false"])
    model = cli.model
    for key in ("vision.net.transformer.resblocks.0.attn.in_proj_weight", "text.net.token_embedding.weight", "image_proj.weight", "log_temperature"):
        assert torch.equal(model.state_dict()[key], source[key]), key
    with pytest.raises(FileNotFoundError, match="run `make pretrain` first"):
        load_encoder_weights(model, tmp_path / "nope.ckpt")
    bad = {k: torch.zeros(3) if k == "vision.net.transformer.resblocks.0.attn.in_proj_weight" else v for k, v in source.items()}
    torch.save({"state_dict": bad}, tmp_path / "bad.ckpt")
    with pytest.raises(ConfigError, match="shapes differ"):
        load_encoder_weights(model, tmp_path / "bad.ckpt")


def test_make_finetune_without_a_checkpoint_says_what_to_do(tmp_path):
    proc = subprocess.run(["make", "-s", "-C", str(ROOT), "finetune", "PRETRAINED=" + str(tmp_path / "missing.ckpt")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "run `make pretrain` first" in proc.stdout
