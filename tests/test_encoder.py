"""TwoStreamEncoder wiring: weighted head sum, unique head names, temperature clamp after the step."""
import math

import lightning as L
import pytest
import torch

from twostream.data import SyntheticShapesDataModule
from twostream.encoder import TwoStreamEncoder
from twostream.optim import warmup_cosine
from twostream.errors import ConfigError
from twostream.contrastive import InBatchContrastive
from twostream.towers import OpenCLIPTextTower, OpenCLIPVisionTower


def tiny_encoder(heads=None, **kwargs) -> TwoStreamEncoder:
    torch.manual_seed(0)
    vision = OpenCLIPVisionTower(config={"image_size": 32, "patch_size": 8, "width": 32, "layers": 1,
                                         "head_width": 16}, embed_dim=16)
    text = OpenCLIPTextTower(config={"context_length": 16, "width": 32, "heads": 2, "layers": 1}, embed_dim=16)
    return TwoStreamEncoder(vision, text, heads=heads, embed_dim=8, **kwargs)


def tiny_batch(model, n=6):
    batch = {"image": torch.randn(n, 3, 32, 32), "caption": [f"a red circle number {i}" for i in range(n)]}
    return model.on_before_batch_transfer(batch, 0)


def test_total_loss_is_weighted_sum_of_heads():
    model = tiny_encoder(heads=[InBatchContrastive(weight=1.0, name="a"), InBatchContrastive(weight=0.5, name="b")])
    batch = tiny_batch(model)
    total, logs = model.objective(model(batch), batch)
    assert set(logs) == {"a_loss", "a_acc", "b_loss", "b_acc"}
    torch.testing.assert_close(total, 1.5 * logs["a_loss"])
    assert total.requires_grad


def test_duplicate_head_names_rejected():
    with pytest.raises(ConfigError, match="names must be unique"):
        tiny_encoder(heads=[InBatchContrastive(), InBatchContrastive()])


def test_projection_none_requires_matching_dims():
    with pytest.raises(ConfigError, match="output_dim \\(16\\) == embed_dim \\(8\\)"):
        tiny_encoder(projection="none")


def test_temperature_clamped_after_optimizer_step_not_in_forward(tmp_path):
    model = tiny_encoder(min_temperature=0.05, lr=1e-6, warmup_steps=0)
    with torch.no_grad():
        model.log_temperature.fill_(math.log(0.01))
    model(tiny_batch(model))
    assert model.temperature.item() == pytest.approx(0.01)  # forward leaves it alone
    data = SyntheticShapesDataModule(root=str(tmp_path / "d"), num_train=16, num_val=4, num_test=4, image_size=32,
                                     batch_size=8, progress=False)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=data)
    assert model.temperature.item() == pytest.approx(0.05)


def test_warmup_cosine_schedule_shape():
    values = [warmup_cosine(s, warmup_steps=10, total_steps=110, min_ratio=0.1) for s in range(110)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1.0) and values[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
