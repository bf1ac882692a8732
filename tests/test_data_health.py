"""The skip bookkeeping: collate, the bad-fraction check, and the DataHealth callback in real (tiny)
Lightning runs, on one process and summed over two gloo ranks."""
from __future__ import annotations

import json
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from dist_utils import spawn
from torch.utils.data import DataLoader

from twostream.callbacks import DataHealth
from twostream.callbacks.data_health import _gather, _Tally
from twostream.data import SKIPPED, DataQualityError, SkipReason, check_bad_fraction, collate_with_skips
from twostream.data.health import REPLACED
from twostream.data.health import pick_examples


def test_collate_concatenates_skips_and_leaves_clean_batches_alone():
    items = [{"x": torch.tensor([1.0]), "caption": "a"},
             {"x": torch.tensor([2.0]), "caption": "b", SKIPPED: [("corrupt_image", "k1"), ("missing_file", "k2")]},
             {"x": torch.tensor([3.0]), "caption": "c", SKIPPED: [("empty_caption", "k3")]}]
    batch = collate_with_skips(items)
    assert batch["x"].shape == (3, 1) and batch["caption"] == ["a", "b", "c"]
    assert batch[SKIPPED] == [("corrupt_image", "k1"), ("missing_file", "k2"), ("empty_caption", "k3")]
    assert SKIPPED in items[1]  # the items themselves are not modified
    assert set(collate_with_skips([{"x": torch.tensor([1.0])}])) == {"x"}


def test_bad_fraction_error_names_examples_and_setting():
    check_bad_fraction(5, 100, 0.05, [], "epoch 0")  # at the limit: fine
    with pytest.raises(DataQualityError, match=r"epoch 3: 6 of 100 samples \(6\.0%\).*max_bad_fraction=0\.05.*"
                                               r"e\.g\. corrupt_image:000123456"):
        check_bad_fraction(6, 100, 0.05, [("corrupt_image", "000123456")], "epoch 3")
    assert SkipReason.UNDECODABLE_VIDEO == "undecodable_video" and SkipReason.EMPTY_VIDEO == "empty_video"


def test_examples_show_every_reason_first():
    skips = [("corrupt_image", str(i)) for i in range(5)] + [("empty_caption", "e")]
    assert pick_examples(skips, 3) == [("corrupt_image", "0"), ("empty_caption", "e"), ("corrupt_image", "1")]


class _Toy(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch["x"]).sum()

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class _Data(L.LightningDataModule):
    """10 samples per epoch; samples 3 and 7 stand in for a corrupt image (REPLACED)."""

    def __init__(self, load_skips=(), batch_size: int = 5, bad_val_image: bool = True):
        super().__init__()
        self.load_skips, self.batch_size, self.bad_val_image = list(load_skips), batch_size, bad_val_image

    def train_dataloader(self):
        items = [{"x": torch.ones(2), "image_index": i} for i in range(10)]
        for i in (3, 7):
            items[i][REPLACED] = [("corrupt_image", f"k{i}")]
        return DataLoader(items, batch_size=self.batch_size, collate_fn=collate_with_skips)

    def val_dataloader(self):
        items = [{"image": torch.zeros(3), "image_index": i} for i in range(5)]
        if self.bad_val_image:
            items[1][REPLACED] = [("missing_file", "v1.jpg")]  # an eval image scored as blank
        return DataLoader(items, batch_size=5, collate_fn=collate_with_skips)


def _fit(tmp_path, callback: DataHealth, data: _Data, epochs: int = 2) -> L.Trainer:
    trainer = L.Trainer(accelerator="cpu", max_epochs=epochs, callbacks=[callback], default_root_dir=tmp_path,
                        logger=L.pytorch.loggers.CSVLogger(tmp_path), enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, log_every_n_steps=1)
    trainer.fit(_Toy(), datamodule=data)
    return trainer


def test_callback_prints_logs_and_adds_load_time_skips_once(tmp_path, capsys):
    trainer = _fit(tmp_path, DataHealth(max_bad_fraction=0.5), _Data(load_skips=[("empty_caption", "x.jpg#2")]))
    out = capsys.readouterr().out
    assert ("data: dropped 1 annotation entries while reading splits — empty_caption 1; "
            "e.g. empty_caption:x.jpg#2") in out
    assert ("epoch 0: skipped 3 of 11 samples (27.3%) — corrupt_image 2, empty_caption 1; "
            "e.g. empty_caption:x.jpg#2, corrupt_image:k3, corrupt_image:k7") in out
    assert ("epoch 1: skipped 2 of 10 samples (20.0%) — corrupt_image 2; "
            "e.g. corrupt_image:k3, corrupt_image:k7") in out
    assert out.count("validation: skipped 1 of 5 samples (20.0%) — missing_file 1; e.g. missing_file:v1.jpg "
                     "(scored as blank)") == 3  # sanity check + 2 epochs
    assert trainer.logged_metrics["data/skipped_corrupt_image"] == 2
    assert trainer.logged_metrics["data/skipped_fraction"] == pytest.approx(2 / 10)


def test_callback_stops_the_run_past_the_limit(tmp_path):
    with pytest.raises(DataQualityError, match=r"epoch 0: 2 of 10 samples .*max_bad_fraction=0\.1.*corrupt_image:k3"):
        _fit(tmp_path, DataHealth(max_bad_fraction=0.1), _Data(bad_val_image=False))
    with pytest.raises(DataQualityError, match=r"epoch 0 \(first 2 batches\): 1 of 4 samples"):
        _fit(tmp_path, DataHealth(max_bad_fraction=0.1, check_every_n_batches=1),
             _Data(batch_size=2, bad_val_image=False))
    with pytest.raises(DataQualityError, match=r"validation: 1 of 5 samples \(20\.0%\).*missing_file:v1\.jpg"):
        _fit(tmp_path, DataHealth(max_bad_fraction=0.19), _Data())


def _gather_worker(rank: int, world_size: int, out_file: str) -> None:
    tally = _Tally()
    tally.add({"image_index": torch.arange(10), SKIPPED: [("corrupt_image", f"r{rank}")] * (rank + 1)}, num_examples=2)
    counts, seen, examples = _gather(SimpleNamespace(world_size=world_size), tally)
    if rank == 0:
        with open(out_file, "w") as f:
            json.dump({"counts": dict(counts), "seen": seen, "examples": examples}, f)


@pytest.mark.ddp
def test_counts_are_summed_over_ranks(tmp_path):
    spawn(_gather_worker, 2, str(tmp_path / "out.json"))
    got = json.loads((tmp_path / "out.json").read_text())
    assert got["counts"] == {"corrupt_image": 3} and got["seen"] == 23
    assert [tuple(e) for e in got["examples"]] == [("corrupt_image", "r0"), ("corrupt_image", "r1")]
