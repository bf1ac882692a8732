"""Turn jsonargparse's validation errors into ones that list what *is* valid.

jsonargparse says "Option 'embedd_dim' is not accepted" or "Expected a dot import path string:
NoSuchHead"; a user then has to read source to find the right name. The CLI's parser appends
hints built from the classes themselves, so the lists never go stale.
"""
from __future__ import annotations

import importlib
import inspect
import re

from lightning.pytorch.cli import LightningArgumentParser

_UNKNOWN_OPTION = re.compile(r"class_path '([\w.]+)':\s*\n\s*Option '(\w+)' is not accepted")
_UNKNOWN_CLASS = (re.compile(r"Expected a dot import path string: (\S+)"),
                  re.compile(r"Import path (\S+) does not"),
                  re.compile(r"class_path '([\w.]+)' .*(?:not found|does not)"))


def _import(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def init_args(path: str) -> list[str]:
    """Constructor argument names of the class at ``path``."""
    params = inspect.signature(_import(path).__init__).parameters.values()
    return [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _subclasses(base: type) -> list[str]:
    found, stack = set(), list(base.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.startswith("twostream"):
            found.add(cls.__name__)
    return sorted(found)


def known_classes() -> dict[str, list[str]]:
    """Configurable classes by role (short names work as ``class_path`` in configs)."""
    import lightning as L

    import twostream.cli  # noqa: F401  (imports every configurable module, so subclasses are registered)
    from twostream import towers
    from twostream.heads import LossHead, TrainingState

    return {"objectives (heads)": _subclasses(LossHead), "training state": _subclasses(TrainingState),
            "towers": [n for n in towers.__all__ if n != "TowerOutput"],
            "models": _subclasses(L.LightningModule),
            "datamodules": _subclasses(L.LightningDataModule)}


def hints(message: str) -> str:
    lines = []
    for path, option in _UNKNOWN_OPTION.findall(message):
        try:
            lines.append(f"hint: {option!r} is not an argument of {path}; valid: {', '.join(init_args(path))}")
        except (ImportError, AttributeError, ValueError):
            continue
    unknown = [m for rx in _UNKNOWN_CLASS for m in rx.findall(message) if "." not in m or not m.startswith("twostream")]
    if unknown:
        lines.append(f"hint: unknown class {', '.join(sorted(set(unknown)))}; valid names:")
        lines += [f"  {role}: {', '.join(names)}" for role, names in known_classes().items()]
    return ("\n" + "\n".join(lines)) if lines else ""


class HintingArgumentParser(LightningArgumentParser):
    """LightningArgumentParser whose errors end with the valid choices."""

    def error(self, message: str, ex: Exception | None = None):
        if "hint:" not in message:  # nested parsers re-raise the same message: add hints once
            message += hints(message)
        return super().error(message, ex)
