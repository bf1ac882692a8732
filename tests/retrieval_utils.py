"""Tiny runs for the retrieval tests: a two-stream run trained for 2 steps through `twostream fit`, whose
config.yaml and last.ckpt are the real files LightningCLI writes, on 32 px synthetic shapes."""
from __future__ import annotations

from pathlib import Path

import yaml

TOWERS = {
    "vision": {"class_path": "twostream.towers.OpenCLIPVisionTower",
               "init_args": {"config": {"patch_size": 8, "width": 32, "layers": 1, "head_width": 16}}},
    "text": {"class_path": "twostream.towers.OpenCLIPTextTower",
             "init_args": {"config": {"context_length": 16, "width": 32, "heads": 2, "layers": 1}}},
}


def tiny_config(tmp: Path, name: str = "tiny", embed_dim: int = 16, seed: int = 0, num_test: int = 24) -> Path:
    """A complete `twostream fit` YAML: tiny towers, 2 optimizer steps, no validation, last.ckpt kept."""
    config = {
        "seed_everything": seed,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 2, "limit_val_batches": 0,
                    "enable_progress_bar": False, "enable_model_summary": False,
                    "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                               "init_args": {"save_dir": str(tmp / "runs"), "name": name}},
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"save_last": True, "save_top_k": 0}}]},
        "model": {"class_path": "twostream.encoder.TwoStreamEncoder",
                  "init_args": {**TOWERS, "embed_dim": embed_dim, "warmup_steps": 1}},
        "data": {"class_path": "twostream.data.SyntheticShapesDataModule",
                 "init_args": {"root": str(tmp / "data"), "num_train": 16, "num_val": 4, "num_test": num_test,
                               "image_size": 32, "batch_size": 8, "eval_batch_size": 8, "progress": False}},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


_TRAINED: dict[tuple, Path] = {}


def tiny_run(tmp: Path, name: str = "tiny", **kwargs) -> Path:
    """Train the tiny config for 2 steps through the CLI; returns its last.ckpt (config.yaml beside checkpoints/).
    Runs once per test session for the same arguments (every retrieval test module shares it)."""
    from twostream.cli import main

    key = (name, tuple(sorted(kwargs.items())))
    if key not in _TRAINED or not _TRAINED[key].is_file():
        main(["fit", "--config", str(tiny_config(tmp, name, **kwargs)), "--test_after_fit", "false"])
        ckpts = sorted((tmp / "runs" / name).glob("version_*/checkpoints/last.ckpt"))
        assert ckpts, f"no checkpoint under {tmp / 'runs' / name}"
        _TRAINED[key] = ckpts[-1]
    return _TRAINED[key]


def saved_run(tmp: Path, config: dict, name: str) -> Path:
    """A run folder without training: the model ``config`` builds, saved as last.ckpt beside the config (fast;
    the real LightningCLI files are :func:`tiny_run`'s)."""
    import torch

    from twostream.retrieval.model import build_from_config

    version = tmp / "runs" / name / "version_0"
    (version / "checkpoints").mkdir(parents=True, exist_ok=True)
    (version / "config.yaml").write_text(yaml.safe_dump(config))
    model, _ = build_from_config([version / "config.yaml"])
    torch.save({"state_dict": model.state_dict()}, version / "checkpoints" / "last.ckpt")
    return version / "checkpoints" / "last.ckpt"


def other_checkpoint(ckpt: Path, out: Path) -> Path:
    """The same model with one tensor changed: another checkpoint (another SHA-256) of the same shapes."""
    import torch

    blob = torch.load(ckpt, map_location="cpu", weights_only=True)
    key = next(k for k in blob["state_dict"] if k.startswith("image_proj."))
    blob["state_dict"][key] = blob["state_dict"][key] + 1.0
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(blob, out)
    return out
