"""The training-state contract: any TrainingState plugs in without encoder edits, updates once per
optimizer step, and COTS's momentum keys follow the encoder's own path (COOKIE's shared neck too)."""
import pytest
import torch

from cots_utils import cots_args, cots_override
from twostream.cli import run
from twostream.encoder import TwoStreamEncoder
from twostream.errors import ConfigError
from twostream.heads import TrainingState
from twostream.methods.cookie import SharedTransformer
from twostream.methods.cots import KLAlignment, MomentumContrastive, MomentumQueue, momentum_keys
from twostream.towers import OpenCLIPTextTower, OpenCLIPVisionTower

SHARED = {"class_path": "twostream.methods.cookie.SharedTransformer", "init_args": {"width": 32, "layers": 1, "heads": 2}}


class CountingState(TrainingState):
    """Test-only state: counts annotate calls and the pairs each update receives."""

    def __init__(self, stage: int = 0):
        super().__init__()
        self.stage = stage
        self.annotated, self.updates = 0, []
        self.register_buffer("pairs_seen", torch.zeros((), dtype=torch.long))

    def annotate(self, outputs, batch):
        self.annotated += 1
        outputs.extra["order"] = outputs.extra.get("order", []) + [self.name]
        return {f"{self.name}_ids": batch["image_index"]}

    def update(self, carried, step, total_steps):
        self.updates.append((step, carried[f"{self.name}_ids"].tolist()))
        self.pairs_seen += len(carried[f"{self.name}_ids"])
        return {f"{self.name}_pairs": float(self.pairs_seen)}


def tiny(shared: bool, state: dict | None, heads=None) -> TwoStreamEncoder:
    torch.manual_seed(0)
    vision = OpenCLIPVisionTower(config={"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
                                 embed_dim=16)
    text = OpenCLIPTextTower(config={"context_length": 16, "width": 32, "heads": 2, "layers": 1}, embed_dim=16)
    return TwoStreamEncoder(vision, text, heads=heads, state=state, embed_dim=8,
                            shared=SharedTransformer(width=32, layers=1, heads=2) if shared else None)


def batch_for(model, n=6):
    batch = {"image": torch.randn(n, 3, 32, 32), "caption": [f"a red circle number {i}" for i in range(n)],
             "image_index": torch.arange(n)}
    return model.on_before_batch_transfer(batch, 0)


def test_momentum_keys_go_through_the_shared_neck():
    """At init the momentum copies equal the online modules, so the keys *are* the embeddings —
    including COOKIE's shared transformer (the old MomentumQueue.encode skipped it)."""
    model = tiny(shared=True, state={"momentum": MomentumQueue(queue_size=32)},
                 heads=[MomentumContrastive(), KLAlignment()]).eval()
    assert model.state["momentum"].copied == ("vision", "text", "shared", "image_proj", "text_proj")
    batch = batch_for(model)
    out = model(batch)
    model.annotate(out, batch)
    image_key, text_key = momentum_keys(out)
    torch.testing.assert_close(image_key, out.image_emb)
    torch.testing.assert_close(text_key, out.text_emb)
    assert not any(p.requires_grad for p in model.state["momentum"].shared.parameters())


def test_cots_heads_train_with_cookies_shared_transformer(tmp_path):
    """Through the CLI: COTS's queue heads + MLM + MVM on an encoder with the shared neck; the
    momentum copy of the neck follows the online one by EMA, and the queue fills."""
    override = cots_override(tmp_path, shared=SHARED)
    cli = run(["fit", *cots_args(tmp_path, override, "--test_after_fit=false", "--trainer.limit_val_batches=0",
                                 "--model.init_args.state.momentum.init_args.momentum=0.5")])
    model = cli.model
    online = dict(model.shared.named_parameters())
    momentum = dict(model.state["momentum"].shared.named_parameters())
    assert set(online) == set(momentum)
    moved = [k for k in online if not torch.equal(online[k], momentum[k])]
    assert moved, "the momentum neck should lag the trained one"
    assert int(model.state["momentum"].filled) == 48
    assert torch.isfinite(torch.tensor(float(cli.trainer.callback_metrics["train/loss"])))


def test_a_new_state_plugs_in_and_updates_once_per_optimizer_step(tmp_path):
    """A state the encoder has never heard of: annotated every micro-batch (in stage order), updated
    once per optimizer step with all micro-batches' carried tensors, checkpointed."""
    first, second = CountingState(stage=0), CountingState(stage=1)
    model = tiny(shared=False, state={"b": second, "a": first})
    assert list(model.state) == ["a", "b"]  # stage order, whatever the config order
    assert "state.a.pairs_seen" in model.state_dict()
    from lightning import Trainer

    from twostream.data import SyntheticShapesDataModule

    dm = SyntheticShapesDataModule(root=str(tmp_path / "data"), num_train=32, num_val=8, num_test=8, image_size=32,
                                   batch_size=8, num_workers=0)
    trainer = Trainer(max_epochs=1, accumulate_grad_batches=2, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    assert first.annotated == second.annotated == 4  # 32 pairs / 8 per micro-batch
    assert [step for step, _ in first.updates] == [1, 2]  # two optimizer steps, one update each
    assert all(len(ids) == 16 for _, ids in first.updates)  # both micro-batches' pairs
    assert sorted(i for _, ids in first.updates for i in ids) == list(range(32))
    assert int(first.pairs_seen) == 32 and float(trainer.callback_metrics["train/a_pairs"]) == 32


def test_heads_name_the_state_they_miss():
    with pytest.raises(ConfigError, match=r"KLAlignment needs MomentumQueue training state: add it to "
                                          r"model.init_args.state \(momentum: \{class_path: twostream.methods.cots"):
        tiny(shared=False, state=None, heads=[KLAlignment()])
    model = tiny(shared=False, state={"momentum": MomentumQueue(32), "filter": None})
    assert list(model.state) == ["momentum"]  # a null entry switches a state off
