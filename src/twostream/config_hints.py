"""Turn jsonargparse's validation errors into ones that list what *is* valid.

jsonargparse says "Option 'embedd_dim' is not accepted" or "Expected a dot import path string:
NoSuchHead"; a user then has to read source to find the right name. The CLI's parser appends
hints built from the classes themselves, so the lists never go stale.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import re

from lightning.pytorch.cli import LightningArgumentParser

_UNKNOWN_OPTION = re.compile(r"class_path '([\w.]+)':\s*\n\s*Option '(\w+)' is not accepted")
_UNKNOWN_CLASS = (re.compile(r"Expected a dot import path string: (\S+)"),
                  re.compile(r"Import path (\S+) does not"),
                  re.compile(r"class_path '([\w.]+)' .*(?:not found|does not)"),
                  # a dotted path whose module exists but lacks the name, or whose module does not exist
                  re.compile(r"class_path '([\w.]+)':\s*\n\s*(?:module '[\w.]+' has no attribute|No module named)"))


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
        if cls.__module__.startswith("twostream") and not cls.__name__.startswith("_"):
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
    unknown = sorted({m for rx in _UNKNOWN_CLASS for m in rx.findall(message)} - _importable(message))
    if unknown:
        classes = known_classes()
        lines.append(f"hint: unknown class {', '.join(unknown)}{_close_matches(unknown, classes)}; valid names:")
        lines += [f"  {role}: {', '.join(names)}" for role, names in classes.items()]
    return ("\n" + "\n".join(lines)) if lines else ""


def _importable(message: str) -> set[str]:
    """Dotted paths in ``message`` that do import (their error is about something else)."""
    found = set()
    for path in re.findall(r"class_path '(twostream\.[\w.]+)'", message):
        try:
            _import(path)
            found.add(path)
        except Exception:  # noqa: BLE001 - not importable: a candidate for the hint
            continue
    return found


def _close_matches(unknown: list[str], classes: dict[str, list[str]]) -> str:
    """`` (did you mean twostream.contrastive.InBatchContrastive?)`` for near-miss names."""
    names = sorted({n for group in classes.values() for n in group})
    guesses = []
    for path in unknown:
        for name in difflib.get_close_matches(path.rpartition(".")[2], names, n=1, cutoff=0.8):
            guesses.append(_full_path(name) or name)
    return f" (did you mean {', '.join(guesses)}?)" if guesses else ""


def _full_path(name: str) -> str | None:
    """The import path of a configurable class given its short name."""
    try:
        from twostream.config_files import resolve_class

        cls = resolve_class(name)
    except Exception:  # noqa: BLE001
        return None
    return f"{cls.__module__}.{cls.__qualname__}"


class HintingArgumentParser(LightningArgumentParser):
    """LightningArgumentParser whose errors end with the valid choices.

    Only the parser that prints the error (``exit_on_error``) adds hints, after jsonargparse has
    nested every inner message, so the hint is the last thing printed, not buried mid-output."""

    def error(self, message: str, ex: Exception | None = None):
        if self.exit_on_error and "hint:" not in message:
            message += hints(message)
        return super().error(message, ex)
