"""A trained run as an inference model: its config through the project's CLI, its weights from the checkpoint.

Why the CLI's own parser: a run directory holds the ``config.yaml`` LightningCLI saved, with the
argument links (image size, embedding size) applied by that parser and not written out again; only
the same parser rebuilds exactly the model that was trained. The checkpoint then supplies the
weights of the encoding path (heads and training state are training-only and are left out, so a
COTS or COOKIE run loads without its tokenizer's or teachers' files being needed again).
"""
from __future__ import annotations

import dataclasses
import hashlib
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from twostream.checkpoints import read_state_dict
from twostream.errors import ConfigError

DEFAULT_RUN_ROOT = "runs/default"
PRETRAIN_HINT = "`make pretrain` writes runs/default/version_*/checkpoints/last.ckpt"


@dataclasses.dataclass
class LoadedRun:
    """A model in eval mode, the run's datamodule (transforms, splits), and where both came from."""

    model: nn.Module
    datamodule: Any
    checkpoint: Path
    config: Path
    sha256: str


def default_checkpoint() -> Path:
    """The newest ``make pretrain`` checkpoint (the default of every ``--ckpt``), or an error saying how to get one."""
    from twostream.prerequisites import latest_checkpoint

    found = latest_checkpoint(DEFAULT_RUN_ROOT)
    if found is None:
        raise ConfigError(f"--ckpt not given and no checkpoint under {DEFAULT_RUN_ROOT}/ ({PRETRAIN_HINT}); "
                          f"pass --ckpt path/to/last.ckpt")
    return found


def resolve_checkpoint(ckpt: str | Path | None) -> Path:
    """A checkpoint file; a run directory (``runs/default`` or one ``version_N``) means its newest last.ckpt."""
    from twostream.prerequisites import latest_checkpoint

    if ckpt is None:
        return default_checkpoint()
    path = Path(ckpt)
    if path.is_dir():
        inner = path / "checkpoints" / "last.ckpt"
        found = inner if inner.is_file() else latest_checkpoint(path)
        if found is None:
            raise ConfigError(f"--ckpt {path} is a folder without checkpoints/last.ckpt or version_*/checkpoints/"
                              f"last.ckpt; pass the .ckpt file itself")
        return found
    if not path.is_file():
        raise ConfigError(f"--ckpt {path} does not exist ({PRETRAIN_HINT})")
    return path


def find_config(ckpt: Path) -> Path:
    """The ``config.yaml`` LightningCLI saved beside ``checkpoints/`` of the run that wrote ``ckpt``."""
    for folder in (ckpt.parent, ckpt.parent.parent):
        if (folder / "config.yaml").is_file():
            return folder / "config.yaml"
    raise ConfigError(f"no config.yaml beside {ckpt} or its run folder (LightningCLI writes "
                      f"<run>/version_N/config.yaml); pass --config with the YAML the run was trained with")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file: what an index records of the checkpoint it was built from."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_from_config(configs: list[str | Path], overrides: tuple[str, ...] = ()) -> tuple[nn.Module, Any]:
    """(model, datamodule) exactly as ``twostream fit --config ...`` would build them, without a trainer."""
    from twostream.cli import TwoStreamCLI

    class _Build(TwoStreamCLI):
        """Parse and instantiate model and data only: prediction runs on a trainer the caller configures."""

        @staticmethod
        def subcommands() -> dict[str, set[str]]:  # one subcommand parser, not four (a quarter of the time)
            return {"predict": TwoStreamCLI.subcommands()["predict"]}

        def instantiate_trainer(self, **kwargs):
            return None

        def _run_subcommand(self, subcommand: str) -> None:
            return None

    import lightning as L

    args = ["predict"] + [a for c in configs for a in ("--config", str(c))] + list(overrides)
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")  # we pass args on purpose
    try:
        cli = _Build(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                     args=args, save_config_callback=None, auto_configure_optimizers=False,
                     parser_kwargs={"parser_mode": "yaml"}, parser_class=_parser_class())
    except SystemExit as exit_:
        raise ConfigError(f"could not build the model from {', '.join(map(str, configs))} (the parser's message "
                          f"is above); pass --config with the run's YAML") from exit_
    return cli.model, cli.datamodule


def _parser_class():
    from twostream.config_hints import HintingArgumentParser

    return HintingArgumentParser


def load_weights(model: nn.Module, ckpt: Path, prefixes: tuple[str, ...]) -> int:
    """Copy every tensor of ``model`` whose key starts with one of ``prefixes`` from ``ckpt``; all must be there."""
    state = read_state_dict(ckpt, "--ckpt", PRETRAIN_HINT)
    own = {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}
    missing = sorted(k for k in own if k not in state)
    bad = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or bad:
        detail = f"missing {missing[0]}" if missing else f"{bad[0]}: {tuple(state[bad[0]].shape)} vs {tuple(own[bad[0]].shape)}"
        raise ConfigError(f"--ckpt {ckpt} does not fit the model of its config ({len(missing)} tensors missing, "
                          f"{len(bad)} shapes differ, e.g. {detail}); pass --config with the YAML it was trained with")
    model.load_state_dict({k: state[k] for k in own}, strict=False)
    return len(own)


def load_run(ckpt: str | Path | None, configs: list[str | Path] | None = None, *, kind: str = "two-stream") -> LoadedRun:
    """The run behind ``ckpt`` (default: the newest ``make pretrain`` one) as an eval-mode model.

    ``configs``: YAML files instead of the run's saved ``config.yaml`` (later ones override earlier
    ones, as on the ``twostream fit`` command line). ``kind``: ``"two-stream"`` (a TwoStreamEncoder:
    embedding) or ``"cross-encoder"`` (a SingleStreamModel: re-ranking); anything else is an error.
    """
    path = resolve_checkpoint(ckpt)
    configs = list(configs) if configs else [find_config(path)]
    overrides = _TRAINING_ONLY[kind]
    model, datamodule = build_from_config(configs, overrides)
    _check_kind(model, kind, path)
    prefixes = tuple(f"{m}." for m in getattr(model, "encoding_modules", ())) + ("log_temperature",)
    load_weights(model, path, prefixes if kind == "two-stream" else ("",))
    model.eval().requires_grad_(False)
    return LoadedRun(model, datamodule, path, configs[0], file_sha256(path))


# Training-only parts whose files (tokenizer, teachers, the stage-1 checkpoint) inference must not need.
_TRAINING_ONLY = {"two-stream": ("--model.init_args.heads=[]", "--model.init_args.state={}",
                                 "--model.init_args.init_from=null"),
                  "cross-encoder": ()}


def _check_kind(model: nn.Module, kind: str, ckpt: Path) -> None:
    from twostream.encoder import TwoStreamEncoder

    if kind == "two-stream" and not isinstance(model, TwoStreamEncoder):
        raise ConfigError(f"--ckpt {ckpt}: its config builds a {type(model).__name__}, not a TwoStreamEncoder; "
                          f"embedding needs a two-stream run (a cross-encoder goes to --rerank)")
    if kind == "cross-encoder":
        from twostream.methods.vldeformer import SingleStreamModel

        if not isinstance(model, SingleStreamModel):
            raise ConfigError(f"--rerank {ckpt}: its config builds a {type(model).__name__}, not a SingleStreamModel "
                              f"(experiments/pretrain/single_stream.yaml trains one)")

