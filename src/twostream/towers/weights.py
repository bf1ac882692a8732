"""Resolve pretrained weights for open_clip towers without touching the network.

open_clip's own loader downloads on a cache miss (and retries); on an offline machine that is a
hang or a wall of tracebacks. Here a pretrained tag is only ever looked up in the local caches,
and a miss says exactly what to do.
"""
from __future__ import annotations

import os
from pathlib import Path

from twostream.errors import ConfigError, WeightsNotAvailableError


def _hub_cached(repo_and_file: str) -> str | None:
    from huggingface_hub import hf_hub_download

    repo_id, filename = os.path.split(repo_and_file)
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    if filename.endswith(".bin"):
        names.insert(0, filename[: -len(".bin")] + ".safetensors")
    for name in names:
        try:
            return hf_hub_download(repo_id=repo_id, filename=name, local_files_only=True)
        except Exception:  # noqa: BLE001 - any miss means "not cached"; we report it below
            continue
    return None


def resolve_open_clip_weights(model_name: str | None, pretrained: str) -> str:
    """Return a local file path for ``pretrained`` (a file path, or an open_clip tag of ``model_name``)."""
    if os.path.isfile(pretrained):
        return pretrained
    if os.sep in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors", ".pth")):
        raise WeightsNotAvailableError(f"pretrained: weights file {pretrained!r} does not exist")
    import open_clip

    if model_name is None:
        raise ConfigError(f"pretrained: tag {pretrained!r} needs `model_name` (or give a local weights file)")
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise ConfigError(f"pretrained: {pretrained!r} is not an open_clip tag of {model_name!r}; "
                          f"valid tags: {tags or 'none'} (or give a local weights file)")
    path = _hub_cached(cfg["hf_hub"]) if cfg.get("hf_hub") else None
    if path is None and cfg.get("url"):
        cached = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])
        path = str(cached) if cached.is_file() else None
    if path is None:
        raise WeightsNotAvailableError(
            f"open_clip weights {model_name}/{pretrained} are not in the local cache and twostream does not "
            f"download at run time. On a machine with network run: python -c \"import open_clip; "
            f"open_clip.create_model('{model_name}', pretrained='{pretrained}')\" and copy the cache, "
            f"or set `pretrained:` to a local weights file.")
    return path
