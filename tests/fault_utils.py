"""Fault injection for tests/test_faults.py: a callback that signals its own process at a chosen
step (deterministic, unlike a timed kill), tiny configs, and the run-a-CLI helpers."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import json

import lightning as L
import torch
import yaml
from fixtures_realdata import corrupt_jpeg, jpeg_bytes

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "experiments" / "pretrain" / "default.yaml")
TINY_MODEL = {"model": {"init_args": {
    "vision": {"class_path": "twostream.towers.OpenCLIPVisionTower", "init_args": {
        "config": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16}}},
    "text": {"class_path": "twostream.towers.OpenCLIPTextTower", "init_args": {
        "config": {"context_length": 16, "width": 32, "heads": 2, "layers": 1, "vocab_size": 49409}}},
    "embed_dim": 32, "warmup_steps": 2}}}


class SignalAt(L.Callback):
    """Send a signal to this (rank-0) process when global step ``step`` starts (TWOSTREAM_TEST_SIGNAL=
    "SIGTERM:6"); with TWOSTREAM_TEST_RECORD=dir each rank writes where it stopped (rank<r>.json)."""

    def __init__(self) -> None:
        name, _, step = os.environ.get("TWOSTREAM_TEST_SIGNAL", "SIGTERM:-1").partition(":")
        self.signum, self.step = signal.Signals[name], int(step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step and trainer.is_global_zero:
            os.kill(os.getpid(), self.signum)

    def on_exception(self, trainer, pl_module, exception) -> None:
        record = os.environ.get("TWOSTREAM_TEST_RECORD")
        if record:
            Path(record, f"rank{trainer.global_rank}.json").write_text(json.dumps(
                {"step": trainer.global_step, "exception": type(exception).__name__}))


class PoisonAt(L.Callback):
    """Fill the images of the batch of global step ``step`` with NaN (bad input data)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            batch["image"].fill_(float("nan"))


def every_epoch_config(tmp: Path) -> Path:
    path = tmp / "every_epoch.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"check_val_every_n_epoch": 1, "limit_val_batches": 0, "callbacks": [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
         "init_args": {"save_last": True, "save_top_k": 1, "every_n_epochs": 1}}]}}))
    return path


def albef_folder(root: Path, num_train: int = 12, bad: int = 0, val: bool = False) -> Path:
    """An ALBEF/LAVIS annotation folder (train + test, val only if asked) over ``num_train`` training
    images of which the first ``bad`` are corrupt files, and 4 test images."""
    images, ann = root / "images", root / "annotations"
    images.mkdir(parents=True, exist_ok=True)
    ann.mkdir(exist_ok=True)
    train = []
    for i in range(num_train):
        (images / f"train_{i}.jpg").write_bytes(corrupt_jpeg(i) if i < bad else jpeg_bytes(i))
        train += [{"image": f"train_{i}.jpg", "caption": f"a picture number {i}", "image_id": f"img_{i}"}]
    (ann / "tiny_train.json").write_text(json.dumps(train))
    for split in ("test", "val") if val else ("test",):
        rows = []
        for i in range(4):
            (images / f"{split}_{i}.jpg").write_bytes(jpeg_bytes(100 + i))
            rows.append({"image": f"{split}_{i}.jpg", "caption": [f"{split} picture {i}", f"{split} {i} again"]})
        (ann / f"tiny_{split}.json").write_text(json.dumps(rows))
    return ann


def albef_config(tmp: Path, ann: Path, max_bad_fraction: float, monitor: str | None = None) -> Path:
    """Data config: Flickr30kDataModule on ``ann`` (batch 4, 32 px), DataHealth at ``max_bad_fraction``,
    one ModelCheckpoint (monitoring ``monitor`` if given)."""
    checkpoint = {"save_last": True, "save_top_k": 0} if monitor is None else {"monitor": monitor, "mode": "max"}
    config = {"data": {"class_path": "twostream.data.Flickr30kDataModule", "init_args": {
                  "root": str(ann.parent / "images"), "annotations": str(ann), "batch_size": 4, "eval_batch_size": 8,
                  "num_workers": 0, "image_size": 32}},
              "trainer": {"callbacks": [
                  {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": checkpoint},
                  {"class_path": "twostream.callbacks.DataHealth", "init_args": {"max_bad_fraction": max_bad_fraction}}]}}
    path = tmp / f"albef_{len(list(tmp.glob('albef_*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_same_training_state(a: dict, b: dict) -> None:
    """Weights, optimizer moments and schedule bit-identical."""
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    different = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])]
    assert not different, f"differs: {different[:5]}"
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["lr_schedulers"] == b["lr_schedulers"]


def tiny_config(tmp: Path) -> Path:
    path = tmp / "tiny.yaml"
    if not path.exists():
        path.write_text(yaml.safe_dump(TINY_MODEL))
    return path


def tiny_args(tmp: Path, *extra: str, name: str = "run", num_train: int = 64, batch_size: int = 16,
              epochs: int = 2, workers: int = 0, data: Path | None = None, every_epoch: bool = False) -> list[str]:
    """The shipped default.yaml with tiny towers: 64 images / 16 = 4 steps per epoch; ``data``: a
    config file replacing the synthetic data (then the data arguments here are left out);
    ``every_epoch``: checkpoints at every epoch end (default.yaml's ``save_top_k: 0`` writes
    ``last.ckpt`` only when training ends: Lightning copies "last" only when it saves another)."""
    configs = ["--config", DEFAULT, "--config", str(tiny_config(tmp))]
    if every_epoch:
        configs += ["--config", str(every_epoch_config(tmp))]
    data_args = [f"--data.init_args.root={tmp / 'data'}", f"--data.init_args.num_train={num_train}",
                 "--data.init_args.num_val=16", "--data.init_args.num_test=16",
                 f"--data.init_args.batch_size={batch_size}", "--data.init_args.image_size=32",
                 f"--data.init_args.num_workers={workers}"]
    if data is not None:
        configs, data_args = [*configs, "--config", str(data)], []
    return [*configs, *data_args, f"--trainer.max_epochs={epochs}", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", f"--trainer.check_val_every_n_epoch={1 if every_epoch else 100}",
            "--trainer.log_every_n_steps=1", "--trainer.num_sanity_val_steps=0",
            f"--trainer.logger.init_args.save_dir={tmp / 'runs'}", f"--trainer.logger.init_args.name={name}", *extra]


def run_cli(args: list[str], env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    """``python -m twostream ARGS`` in a subprocess (for faults that end the process)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {}),
                "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "twostream", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)
