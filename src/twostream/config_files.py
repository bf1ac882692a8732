"""Reading LightningCLI config files outside the CLI: YAML, overlays merged as the CLI merges them,
and ``class_path`` resolution (full import paths and LightningCLI's short names).

Used where the project must understand a config without instantiating it (the prerequisites a
config needs, in :mod:`twostream.prerequisites`). Errors are :class:`ConfigFileError` with a
one-line message naming the file and key.
"""
from __future__ import annotations

import importlib
import inspect
import os
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# it imports are the ones LightningCLI finds short names in.
SHORT_NAME_MODULE = "twostream.cli"
_CLASS_KEYS = ("class_path", "init_args", "dict_kwargs", "__path__")


class ConfigFileError(Exception):
    """A config that cannot be read or resolved (one-line message)."""


_CLASSES: dict[str, type] = {}  # class_path -> class, resolved once per process


def _import_dotted(path: str) -> type:
    parts = path.split(".")
    errors = []  # prefixes that are no module
    for cut in range(len(parts) - 1, 0, -1):  # longest importable module prefix, then attributes
        module_name = ".".join(parts[:cut])
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                errors.append(exc)
                continue  # this prefix is no module: try a shorter one
            raise  # the module exists but imports something missing
        for i, attr in enumerate(parts[cut:]):
            try:
                obj = getattr(obj, attr)
            except AttributeError:
                if i == 0 and errors and cut < len(parts) - 1:  # a.b.c.Class, a.b.c no module: not "a.b has no c"
                    raise ConfigFileError(f"no module named {'.'.join(parts[:cut + 1])!r}") from None
                raise ConfigFileError(f"{'.'.join(parts[:cut + i])!r} has no attribute {attr!r}") from None
        return obj
    raise ConfigFileError(f"no module named {parts[0]!r}" if errors else f"not an import path: {path!r}")


def _find_short_name(name: str) -> type:
    try:
        importlib.import_module(SHORT_NAME_MODULE)
    except Exception as exc:  # noqa: BLE001  (any import failure: report it in one line)
        raise ConfigFileError(f"short class name {name!r}: importing {SHORT_NAME_MODULE} (where short names are "
                                f"looked up) failed: {type(exc).__name__}: {exc}") from None
    found: dict[int, type] = {}
    for module in list(sys.modules.values()):
        obj = getattr(module, "__dict__", {}).get(name)  # the module's own namespace: no lazy __getattr__ imports
        if inspect.isclass(obj) and obj.__name__ == name:
            found[id(obj)] = obj
    candidates = list(found.values())
    top = SHORT_NAME_MODULE.split(".")[0]
    own = [c for c in candidates if c.__module__.split(".")[0] == top]
    candidates = own or candidates
    if not candidates:
        raise ConfigFileError(f"no class named {name!r} among the modules {SHORT_NAME_MODULE} imports "
                                "(give its full import path)")
    if len(candidates) > 1:
        paths = sorted(f"{c.__module__}.{c.__qualname__}" for c in candidates)
        raise ConfigFileError(f"several classes named {name!r}: {', '.join(paths)} (give the full import path)")
    return candidates[0]


def resolve_class(class_path: str) -> type:
    """The class a ``class_path`` names: a full import path, or a short name as LightningCLI allows."""
    if not isinstance(class_path, str) or not class_path.strip():
        raise ConfigFileError(f"class_path must be a non-empty string, got {class_path!r}")
    if class_path not in _CLASSES:
        try:
            cls = _import_dotted(class_path) if "." in class_path else _find_short_name(class_path)
        except ConfigFileError as exc:
            raise ConfigFileError(f"cannot resolve class_path {class_path!r}: {exc}") from None
        except Exception as exc:  # noqa: BLE001  (the module itself failed to import)
            raise ConfigFileError(f"cannot import class_path {class_path!r}: {type(exc).__name__}: {exc}") from None
        if not inspect.isclass(cls):
            raise ConfigFileError(f"class_path {class_path!r} is not a class ({type(cls).__name__})")
        _CLASSES[class_path] = cls
    return _CLASSES[class_path]


def constructor_parameters(cls: type) -> dict[str, inspect.Parameter] | None:
    """Constructor parameters by name; None when the signature is unknown or takes **kwargs."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return {n: p for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def load_yaml(path: str | os.PathLike) -> dict:
    """One config file as a mapping (an empty file is {})."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigFileError(f"config file {str(p)!r} not found" if not p.exists() else f"{str(p)!r} is not a file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigFileError(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{p}: expected a mapping of config keys at the top, got {type(data).__name__}")
    return data


def key_path(parent: str, child: str | int) -> str:
    if isinstance(child, int):
        return f"{parent}[{child}]"
    return f"{parent}.{child}" if parent else str(child)


def walk_classes(node: Any, key: str = "") -> Iterable[tuple[str, dict]]:
    """(key, mapping) for every mapping with a class_path, in document order, outer before inner."""
    if isinstance(node, dict):
        if "class_path" in node:
            yield key, node
        for k, v in node.items():
            if k != "class_path":
                yield from walk_classes(v, key_path(key, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk_classes(v, key_path(key, i))


def check_classes(config: dict, source: str) -> None:
    """Import every class_path of one file now, so an error names that file and the key."""
    for key, node in walk_classes(config):
        try:
            resolve_class(node["class_path"])
        except ConfigFileError as exc:
            raise ConfigFileError(f"{source}: {key_path(key, 'class_path')}: {exc}") from None


def _same_class(a: Any, b: Any) -> bool:
    if a == b:
        return True
    try:
        return resolve_class(a) is resolve_class(b)
    except ConfigFileError:
        return False


def merge(base: Any, over: Any) -> Any:
    """``over`` applied on top of ``base`` as jsonargparse merges successive ``--config`` files.

    Mappings merge key by key; lists and other values are replaced. A mapping that names a different
    ``class_path`` keeps only the earlier init_args the new class accepts (jsonargparse's rule).
    """
    if not isinstance(base, dict) or not isinstance(over, dict):
        return over
    merged = dict(base)
    if "class_path" in over and "class_path" in base and not _same_class(base["class_path"], over["class_path"]):
        params = constructor_parameters(resolve_class(over["class_path"]))
        kept = base.get("init_args") or {}
        if params is not None and isinstance(kept, dict):
            kept = {k: v for k, v in kept.items() if k in params}
        merged = {"class_path": over["class_path"], "init_args": kept}
    for k, v in over.items():
        merged[k] = merge(merged[k], v) if k in merged else v
    return merged


def load_config(config: str | os.PathLike, overlays: Sequence[str | os.PathLike] = ()) -> dict:
    """``config`` with ``overlays`` merged on top in order (what ``twostream fit --config ...`` sees)."""
    merged: dict = {}
    for path in [config, *overlays]:
        data = load_yaml(path)
        check_classes(data, str(path))
        merged = merge(merged, data)
    return merged


# --- resolving ------------------------------------------------------------------------------------
