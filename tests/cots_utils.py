"""Tiny COTS runs through the real entry point: the shipped cots.yaml plus a small override file."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COTS = str(ROOT / "experiments" / "pretrain" / "cots.yaml")


def tiny_tokenizer(path: Path) -> Path:
    """An untrained VQ-VAE file with the right grid (8 px tokens on 32 px images = 4x4 patches)."""
    from twostream.methods.cots.tokenizer import VisualTokenizer

    if not path.exists():
        VisualTokenizer(downsample=8, hidden=16, codebook_size=32, code_dim=8).save(path)
    return path


def cots_override(tmp: Path, heads: list[dict] | str | None = None, momentum: float | None = None,
                  stem: str | None = None, filter: dict | None = None, **model: object) -> Path:
    """YAML with tiny towers (32 px images, width 32, 1 layer) and the heads of cots.yaml, tokenizer in tmp;
    ``stem`` overrides cots.yaml's vision stem ("patch" / "conv"); ``momentum`` (the queue's EMA
    coefficient) and ``filter`` (the noise filter's init_args) change cots.yaml's state."""
    tok = str(tiny_tokenizer(tmp / "tok.pt"))
    if heads is None:
        heads = [{"class_path": "twostream.methods.cots.MomentumContrastive"},
                 {"class_path": "twostream.methods.cots.MaskedLanguageModeling"},
                 {"class_path": "twostream.methods.cots.MaskedVisionModeling", "init_args": {"tokenizer": tok}},
                 {"class_path": "twostream.methods.cots.KLAlignment"}]
    init = {"vision": {"class_path": "twostream.towers.OpenCLIPVisionTower", "init_args": {
                "embed_dim": 32, "config": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16}}},
            "text": {"class_path": "twostream.towers.OpenCLIPTextTower", "init_args": {
                "embed_dim": 32, "config": {"context_length": 16, "width": 32, "heads": 2, "layers": 1,
                                            "vocab_size": 49409, "no_causal_mask": True}}},
            "embed_dim": 32, "warmup_steps": 2, **model}
    if stem is not None:
        init["vision"]["init_args"]["stem"] = stem
    if heads != "keep":  # "keep": leave the heads of the config(s) before this one
        init["heads"] = heads
    config: dict = {"model": {"init_args": init}}
    if momentum is not None or filter is not None:  # a state dict in a config file replaces cots.yaml's whole
        state = copy.deepcopy(yaml.safe_load(Path(COTS).read_text())["model"]["init_args"]["state"])
        if momentum is not None:
            state["momentum"]["init_args"]["momentum"] = momentum
        if filter is not None:
            state["filter"]["init_args"] = filter
        init["state"] = state
    path = tmp / f"override_{len(list(tmp.glob('override_*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def cots_args(tmp: Path, override: Path, *extra: str, num_train: int = 64, batch_size: int = 16) -> list[str]:
    return ["--config", COTS, "--config", str(override), f"--data.init_args.root={tmp / 'data'}",
            f"--data.init_args.num_train={num_train}", "--data.init_args.num_val=16", "--data.init_args.num_test=16",
            f"--data.init_args.batch_size={batch_size}", "--data.init_args.image_size=32", "--data.init_args.num_workers=0",
            "--model.init_args.state.momentum.init_args.queue_size=48", "--trainer.max_epochs=1",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--trainer.logger.init_args.save_dir={tmp / 'runs'}", *extra]
