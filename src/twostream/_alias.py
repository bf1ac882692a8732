"""Old import paths kept for one release: each resolves a name lazily and warns where it moved."""
from __future__ import annotations

import importlib
import warnings


def lazy_aliases(old_module: str, moved: dict[str, str]):
    """A module ``__getattr__`` for ``old_module``: name -> new module (FutureWarning on use, so
    users of old configs see it; DeprecationWarning is hidden by default)."""

    def __getattr__(name: str):
        if name not in moved:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        warnings.warn(f"{old_module}.{name} moved to {moved[name]}.{name}; the old path goes in the next release",
                      FutureWarning, stacklevel=2)
        return getattr(importlib.import_module(moved[name]), name)

    return __getattr__
