"""Numbers in a config that cannot be right, rejected before anything is built, naming the key.

Why: a temperature of 1e-30 or a learning rate of 1e30 is accepted by every constructor and shows
up minutes later as a NaN loss; a negative loss weight silently trains *against* an objective; a
mask probability of 1.5 masks everything. The rules go by argument name, so they hold for every
class a config can name (heads, states, towers, datamodules, callbacks) without each constructor
repeating them; relations between two arguments of one class (temperature vs min_temperature) are
checked against the class's own default when the config leaves one out.
"""
from __future__ import annotations

import inspect
import math
import re
from collections.abc import Iterator
from typing import Any

from twostream.errors import ConfigError

#: (name pattern, test, what is expected); a name matches at most the first rule that fits
RULES: list[tuple[re.Pattern, Any, str]] = [
    (re.compile(r"^(min_)?temperature$"), lambda v: v > 0, "a positive number"),
    (re.compile(r"^(lr|weight|weight_decay|\w+_weight)$"), lambda v: v >= 0, "a number >= 0"),
    (re.compile(r"^(\w+_)?(prob|fraction)$|^(mask_ratio|min_lr_ratio|dropout|(final_)?momentum)$"),
     lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
]


def _numbers(node: Any, key: str = "") -> Iterator[tuple[str, str, float, dict]]:
    """(key path, argument name, value, the mapping holding it) for every number in the config."""
    if isinstance(node, dict):
        for k, v in node.items():
            path = f"{key}.{k}" if key else str(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                yield path, str(k), float(v), node
            else:
                yield from _numbers(v, path)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _numbers(v, f"{key}[{i}]")


def _class_default(holder: dict, parent: dict | None, name: str) -> float | None:
    """The default of argument ``name`` of the class whose init_args ``holder`` is."""
    if parent is None or not isinstance(parent.get("class_path"), str):
        return None
    try:
        from twostream.config_files import resolve_class

        param = inspect.signature(resolve_class(parent["class_path"])).parameters.get(name)
    except Exception:  # noqa: BLE001 - an unresolvable class is reported by the parser, not here
        return None
    return param.default if param is not None and isinstance(param.default, (int, float)) else None


def _parents(node: Any) -> Iterator[tuple[dict, dict]]:
    """(init_args mapping, the mapping with its class_path) pairs."""
    if isinstance(node, dict):
        if isinstance(node.get("init_args"), dict):
            yield node["init_args"], node
        for v in node.values():
            yield from _parents(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            yield from _parents(v)


def problems(config: dict) -> list[str]:
    """Every out-of-range number (``key: value: expected ...``) in a LightningCLI config mapping."""
    found = []
    for path, name, value, _ in _numbers(config):
        for pattern, test, expected in RULES:
            if pattern.match(name):
                if not math.isfinite(value) or not test(value):
                    found.append(f"{path}: {value:g} is not {expected}")
                break
    owner = {id(args): parent for args, parent in _parents(config)}
    for path, name, value, holder in _numbers(config):
        parent = owner.get(id(holder))
        learned = holder.get("learn_temperature", _class_default(holder, parent, "learn_temperature"))
        if name == "temperature" and value > 0 and learned is not False:  # a fixed temperature is never clamped
            low = holder.get("min_temperature", _class_default(holder, parent, "min_temperature"))
            if isinstance(low, (int, float)) and value < low:
                found.append(f"{path}: {value:g} is below min_temperature={low:g} (the clamp applied after every "
                             f"step); raise temperature or lower min_temperature")
    return found


def check_config(config: dict, sections: tuple[str, ...] = ("model", "data", "trainer")) -> None:
    """Raise :class:`ConfigError` listing every problem in ``sections`` of ``config``."""
    found = problems({k: config[k] for k in sections if k in config})
    if found:
        raise ConfigError("invalid values in the config:\n  " + "\n  ".join(found))
