"""Initialising a model from an earlier run's checkpoint (pre-train → fine-tune)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from twostream.errors import ConfigError

TRANSFERRED = ("vision.", "text.", "shared.", "image_proj.", "text_proj.", "log_temperature")


FINETUNE_HINT = "for `make finetune`, run `make pretrain` first; it writes runs/default/version_*/checkpoints/last.ckpt"


def read_state_dict(path: str | Path, what: str = "init_from:", missing_hint: str = FINETUNE_HINT) -> dict[str, torch.Tensor]:
    """The weights of a Lightning ``.ckpt`` (its ``state_dict``), a plain state-dict file, or a
    ``.safetensors`` file, as one flat dict (a DDP ``module.`` prefix dropped). The one reader of
    weights in the project; pickles load with ``weights_only=True`` (tensors and plain containers
    only: a checkpoint cannot run code). Errors name the setting (``what``) and, for a missing file,
    what writes it (``missing_hint``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist ({missing_hint})")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        blob = load_file(str(path))
    else:
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - not a torch file, or one holding arbitrary objects
            raise ConfigError(f"{what} {path} is not a checkpoint torch can load safely ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:200]})") from err
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{what} {path} holds neither a Lightning checkpoint nor a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _source_key(key: str, source: dict[str, torch.Tensor]) -> str | None:
    """The checkpoint key for a model key; a video tower's frame tower takes an image tower's weights."""
    if key in source:
        return key
    plain = key.replace("vision.frame_tower.", "vision.", 1)
    return plain if plain in source else None


def load_encoder_weights(model: nn.Module, path: str | Path) -> dict[str, int]:
    """Copy towers, projections and temperature from ``path``; heads and momentum state start fresh.

    Shape mismatches are errors (a silently skipped tower would make a fine-tuning result
    meaningless); keys missing from the checkpoint are reported and left at their init.
    """
    source = read_state_dict(path)
    own = {k: v for k, v in model.state_dict().items() if k.startswith(TRANSFERRED)}
    loaded, missing, mismatched = {}, [], []
    for key, value in own.items():
        src = _source_key(key, source)
        if src is None:
            missing.append(key)
        elif source[src].shape != value.shape:
            mismatched.append(f"{key}: checkpoint {tuple(source[src].shape)} vs model {tuple(value.shape)}")
        else:
            loaded[key] = source[src]
    if mismatched:
        raise ConfigError(f"init_from: {path} does not fit this model ({len(mismatched)} shapes differ, e.g. "
                          f"{mismatched[0]}); use the same tower configs as the run that wrote it")
    if not loaded:
        raise ConfigError(f"init_from: {path} has none of this model's tower weights")
    model.load_state_dict(loaded, strict=False)
    print(f"init_from: {len(loaded)} tensors from {path}" + (f"; {len(missing)} not in it (kept at init, e.g. "
                                                               f"{missing[0]})" if missing else ""))
    return {"loaded": len(loaded), "missing": len(missing)}


def load_prefixed(module: nn.Module, source: str | Path | dict[str, torch.Tensor], prefix: str, *, what: str,
                  target: str, hint: str, missing_hint: str = FINETUNE_HINT, exclude: tuple[str, ...] = ()) -> int:
    """Copy the ``prefix``-ed tensors (except keys starting with one of ``exclude``) of a checkpoint
    (a path, or a state dict already read) into ``module``, prefix stripped. Every key of ``module``
    must be there with its shape: a frozen teacher, a decomposed transformer or a pretrained tower
    that silently kept random weights would make the run meaningless. Errors start with ``what``
    and the source and end with ``hint``; returns the number of tensors loaded."""
    name = "the weights" if isinstance(source, dict) else str(source)
    state = source if isinstance(source, dict) else read_state_dict(source, what, missing_hint)
    picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and not k.startswith(exclude)}
    if not picked:
        raise ConfigError(f"{what} {name} has no {prefix}* tensors (keys start with "
                          f"{sorted({k.split('.')[0] for k in state})}); {hint}")
    own = module.state_dict()
    missing = sorted(set(own) - set(picked))
    bad = [f"{k}: checkpoint {tuple(picked[k].shape)} vs {target} {tuple(v.shape)}"
           for k, v in own.items() if k in picked and picked[k].shape != v.shape]
    if missing or bad:
        detail = bad[0] if bad else f"missing {missing[0]}"
        raise ConfigError(f"{what} {name} does not fit the {target} ({len(missing)} missing, {len(bad)} shapes "
                          f"differ, e.g. {detail}); {hint}")
    module.load_state_dict({k: picked[k] for k in own})
    return len(own)
