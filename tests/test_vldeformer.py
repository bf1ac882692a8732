"""VLDeformer: decomposition of a single-stream checkpoint with bi-modal hard negatives, through the CLI."""
import json
from pathlib import Path

import pytest
import torch
import yaml

from twostream.cli import run
from twostream.errors import ConfigError
from twostream.methods.vldeformer import BimodalHardNegatives, DecomposedEncoder, SingleStreamModel, VLTransformer

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
          "image_size": 32, "patch_size": 8, "max_position_embeddings": 16}
GROUPS = {"colour": ["red", "blue", "green"], "shape": ["circle|disc", "square", "star"]}


def decomposed(seed=0, **head) -> DecomposedEncoder:
    torch.manual_seed(seed)
    return DecomposedEncoder(VLTransformer(config=CONFIG, context_length=16),
                             heads=[BimodalHardNegatives(words=GROUPS, **head)], warmup_steps=1)


def train_batch(model, n=8):
    torch.manual_seed(1)
    colours, shapes = ["red", "blue", "green", "red"], ["circle", "square", "star", "star"]
    b = {"image": torch.randn(n, 3, 32, 32), "text_index": torch.arange(n), "image_index": torch.arange(n),
         "caption": [f"a {colours[i % 4]} {shapes[(i // 4) % 4]} number {i}" if i != 7 else "nothing to swap here"
                     for i in range(n)]}
    model.train()
    return model.on_before_batch_transfer(b, 0)


def test_near_miss_captions_are_tokenized_and_flagged():
    model = decomposed()
    b = train_batch(model)
    assert b["near_miss_input_ids"].shape == b["input_ids"].shape
    assert b["near_miss_valid"].tolist() == [True] * 7 + [False]  # the last caption has no vocabulary word
    changed = (b["near_miss_input_ids"] != b["input_ids"]).any(1)
    assert changed.tolist() == [True] * 7 + [False]
    off = decomposed(caption_negatives=False)
    assert "near_miss_input_ids" not in train_batch(off)


def test_hard_negatives_enter_the_softmax_and_the_loss_learns():
    model = decomposed()
    b = train_batch(model)
    plain = decomposed(caption_negatives=False, image_negatives=False)
    plain.load_state_dict(model.state_dict())
    out = model(b)
    out.generator = torch.Generator().manual_seed(0)
    with_neg = model.heads[0](out, b)["decomposition_loss"]
    without = plain.heads[0](out, b)["decomposition_loss"]
    assert with_neg > without  # extra negatives only add mass to the softmax denominators
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step in range(25):
        out = model(b)
        out.generator = torch.Generator().manual_seed(step)
        loss, _ = model.objective(out, b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


def test_decomposition_starts_from_the_single_stream_weights(tmp_path):
    torch.manual_seed(5)
    stage1 = SingleStreamModel(VLTransformer(config=CONFIG, context_length=16))
    torch.save({"state_dict": stage1.state_dict()}, tmp_path / "stage1.ckpt")
    torch.manual_seed(6)
    model = DecomposedEncoder(VLTransformer(config=CONFIG, context_length=16), init_from=str(tmp_path / "stage1.ckpt"))
    for key, value in stage1.transformer.state_dict().items():
        assert torch.equal(model.transformer.state_dict()[key], value), key
    assert model.temperature.item() == pytest.approx(0.005) and not model.log_temperature.requires_grad
    with pytest.raises(ConfigError, match="not a single-stream checkpoint"):
        DecomposedEncoder(VLTransformer(config={**CONFIG, "hidden_size": 64}, context_length=16),
                          init_from=str(tmp_path / "stage1.ckpt"))


def _tiny(tmp_path: Path, name: str, model: dict, ckpt_dir: Path) -> Path:
    transformer = {"class_path": "twostream.methods.vldeformer.VLTransformer",
                   "init_args": {"config": CONFIG, "context_length": 16}}
    cfg = {"model": {"init_args": {"transformer": transformer, "warmup_steps": 2, **model}},
           "trainer": {"callbacks": [
               {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"dirpath": str(ckpt_dir), "save_last": True, "save_top_k": 0}},
               {"class_path": "twostream.callbacks.RunSummary"}]}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _data_args(tmp_path: Path) -> list[str]:
    return [f"--data.init_args.root={tmp_path / 'data'}", "--data.init_args.num_train=48", "--data.init_args.num_val=8",
            "--data.init_args.num_test=30", "--data.init_args.eval_images=12", "--data.init_args.batch_size=16",
            "--data.init_args.image_size=32", "--data.init_args.num_workers=0", "--trainer.enable_progress_bar=false",
            f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"]


def test_single_stream_then_decomposition_then_rerank_through_the_cli(tmp_path):
    stage1 = _tiny(tmp_path, "stage1", {"mining_pool": 4}, tmp_path / "ckpt1")
    cli1 = run(["fit", "--config", str(ROOT / "experiments/pretrain/single_stream.yaml"), "--config", str(stage1),
                "--trainer.max_epochs=1", *_data_args(tmp_path)])
    full = json.loads((Path(cli1.trainer.logger.log_dir) / "metrics.json").read_text())
    ckpt = tmp_path / "ckpt1" / "last.ckpt"
    stage2 = _tiny(tmp_path, "stage2", {"init_from": str(ckpt)}, tmp_path / "ckpt2")
    cli2 = run(["fit", "--config", str(ROOT / "experiments/pretrain/vldeformer.yaml"), "--config", str(stage2),
                "--trainer.max_epochs=1", *_data_args(tmp_path)])
    run_dir = Path(cli2.trainer.logger.log_dir)
    dec = json.loads((run_dir / "metrics.json").read_text())
    assert {"rsum", "t2t_r1"} <= set(dec) and {"rsum"} <= set(full)
    # k-test with k=1 keeps the shortlist's top-1: its R@1 is the decomposed model's own
    cli3 = run(["test", "--config", str(ROOT / "experiments/pretrain/single_stream.yaml"), "--config", str(stage1),
                "--model.init_args.eval_mode=rerank", "--model.init_args.rerank_k=1",
                f"--model.init_args.shortlist={run_dir / 'test_embeddings.pt'}", f"--ckpt_path={ckpt}",
                *_data_args(tmp_path)])
    reranked = {k.removeprefix("test/"): float(v) for k, v in cli3.trainer.callback_metrics.items()}
    assert reranked["i2t_r1"] == pytest.approx(dec["i2t_r1"]) and reranked["t2i_r1"] == pytest.approx(dec["t2i_r1"])


def test_missing_stage1_checkpoint_says_what_writes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="single_stream.yaml"):
        DecomposedEncoder(VLTransformer(config=CONFIG, context_length=16), init_from=str(tmp_path / "none.ckpt"))
