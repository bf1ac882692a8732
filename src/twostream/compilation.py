"""Opt-in ``torch.compile`` of the towers (``TwoStreamEncoder(compile=True)``).

Why in place (``nn.Module.compile``) and not ``torch.compile(module)``: the wrapper the latter returns
prefixes every state-dict key with ``_orig_mod.``, so checkpoints of a compiled run would not load into
an uncompiled model (or into ``init_from``); in place, the module, its keys and its copies stay as
they are and only its calls go through the compiled graph. Why only the towers: they are where the
time goes; the heads are small and vary in shape (queues, masks), which would cost recompilations.
Where compiling pays off on this project's CPU and where it does not: docs/performance.md.
"""
from __future__ import annotations

import os
import shutil

import torch
from torch import nn

from twostream.errors import ConfigError


def cpu_compiler() -> str | None:
    """The C++ compiler inductor would use on CPU (``$CXX``, else g++ / c++ / clang++), or None."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
    return next((path for path in map(shutil.which, names) if path), None)


def compile_available(device_type: str = "cpu") -> str | None:
    """None when ``torch.compile`` can run on ``device_type`` here, else why not."""
    if not hasattr(nn.Module, "compile"):
        return f"torch {torch.__version__} has no nn.Module.compile (torch >= 2.2 needed)"
    try:
        import torch._inductor  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means no inductor
        return f"torch's inductor backend does not import: {exc}"
    if device_type == "cpu" and cpu_compiler() is None:
        return "inductor needs a C++ compiler on CPU (none of $CXX, g++, c++, clang++ found)"
    return None


def compile_towers(model: nn.Module, names: tuple[str, ...]) -> None:
    """Compile ``model.<name>`` in place for each name that is a module; ConfigError when unavailable."""
    device = next(model.parameters()).device.type
    problem = compile_available(device)
    if problem:
        raise ConfigError(f"compile: true: {problem}; set compile: false")
    for name in names:
        module = getattr(model, name, None)
        if isinstance(module, nn.Module):
            module.compile()
