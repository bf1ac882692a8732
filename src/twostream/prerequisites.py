"""The files a config needs before it can train, found from the config's own values.

A class that reads a file another command builds (a visual tokenizer, frozen teachers, a stage-1
checkpoint) says so with a class attribute naming the constructor argument and the command::

    class MaskedVisionModeling(LossHead):
        artifacts: ClassVar[dict[str, Artifact]] = {
            "tokenizer": Artifact("make tokenizer", "the VQ-VAE visual tokenizer (MVM targets)")}

``missing_prerequisites(config, overlays)`` loads the LightningCLI YAML (overlays merged on top as
``twostream fit --config A --config B`` merges them), visits every mapping with a ``class_path``,
and for each declared argument takes the value from ``init_args`` or else the constructor's default;
a non-null value naming a file that does not exist is a missing prerequisite. Comments and other
text in the YAML play no part. ``latest_checkpoint(run_root)`` is the last.ckpt of the highest
``version_<N>`` Lightning wrote (not the newest mtime). The Makefile calls::

    python -m twostream.prerequisites CONFIG [OVERLAY...]        # list what is missing (exit 2 if any)
    python -m twostream.prerequisites CONFIG [OVERLAY...] --build   # run the commands that build it
    python -m twostream.prerequisites --base BASE... --each ROW...  # every ROW on top of BASE, one by one
    python -m twostream.prerequisites --latest runs/default         # newest version_<N>/checkpoints/last.ckpt
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from twostream.config_files import (ConfigFileError, constructor_parameters, key_path, load_config, resolve_class,
                                    walk_classes)

# Imported before short class names (``class_path: InBatchContrastive``) are looked up: the modules

@dataclasses.dataclass(frozen=True)
class Artifact:
    """A file a constructor argument names: the shell command that builds it, and what it is."""

    command: str
    what: str


@dataclasses.dataclass(frozen=True)
class Missing:
    """A declared artifact whose file does not exist; ``keys``: every config key naming it."""

    path: str
    artifact: Artifact
    keys: tuple[str, ...]
    class_path: str

    @property
    def command(self) -> str:
        return self.artifact.command

    @property
    def what(self) -> str:
        return self.artifact.what


PrerequisiteError = ConfigFileError  # one-line messages; main() prints them without a traceback


def declared_artifacts(cls: type) -> dict[str, Artifact]:
    """``cls.artifacts`` (inherited ones included); {} when the class declares none."""
    artifacts = getattr(cls, "artifacts", None)
    if artifacts is None:
        return {}
    if not isinstance(artifacts, dict) or not all(
            isinstance(k, str) and hasattr(v, "command") and hasattr(v, "what") for k, v in artifacts.items()):
        raise PrerequisiteError(f"{cls.__module__}.{cls.__qualname__}.artifacts must map argument names to "
                                "twostream.prerequisites.Artifact")
    return artifacts


# --- configs --------------------------------------------------------------------------------------

def _as_path(value: Any) -> str | None:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return value if isinstance(value, str) and value.strip() else None


def artifact_uses(config: dict) -> list[tuple[str, str, Artifact, str]]:
    """(path, config key, artifact, class_path) for every declared artifact argument with a non-null value."""
    uses = []
    for key, node in walk_classes(config):
        class_path = node["class_path"]
        try:
            cls = resolve_class(class_path)
            artifacts = declared_artifacts(cls)
        except PrerequisiteError as exc:
            raise PrerequisiteError(f"{key_path(key, 'class_path')}: {exc}") from None
        if not artifacts:
            continue
        init_args = node.get("init_args") or {}
        params = constructor_parameters(cls) or {}
        for arg, artifact in artifacts.items():
            where = key_path(key_path(key, "init_args"), arg)
            if isinstance(init_args, dict) and arg in init_args:
                value = init_args[arg]
            elif arg in params and params[arg].default is not inspect.Parameter.empty:
                value, where = params[arg].default, f"{where} (the default of {class_path})"
            else:
                continue  # not set and no default: the CLI reports the missing argument itself
            path = _as_path(value)
            if path is not None:
                uses.append((path, where, artifact, class_path))
    return uses


def resolve(config: dict) -> list[Missing]:
    """The missing prerequisites of a loaded config, in config order, one entry per file."""
    missing: dict[str, Missing] = {}
    for path, key, artifact, class_path in artifact_uses(config):
        if Path(path).expanduser().exists():
            continue
        if path in missing:
            m = missing[path]
            missing[path] = dataclasses.replace(m, keys=(*m.keys, key))
        else:
            missing[path] = Missing(path, artifact, (key,), class_path)
    return list(missing.values())


def missing_prerequisites(config: str | os.PathLike, overlays: Sequence[str | os.PathLike] = ()) -> list[Missing]:
    """The files ``config`` (+ ``overlays``) names through declared artifacts that do not exist yet."""
    return resolve(load_config(config, overlays))


def build(missing: Sequence[Missing], run: Callable[[str], int] | None = None,
          say: Callable[[str], None] | None = None) -> None:
    """Run each missing artifact's command (the shell's cwd and stdout are ours), then check its file exists.

    An artifact an earlier command already built (two heads naming one teacher) is not built again.
    """
    run = run or (lambda command: subprocess.run(command, shell=True).returncode)
    say = say or (lambda line: print(line, flush=True))
    for m in missing:
        if Path(m.path).expanduser().exists():
            continue
        say(f"prerequisites: {m.path} does not exist ({m.what}): running `{m.command}`")
        code = run(m.command)
        if code != 0:
            raise PrerequisiteError(f"`{m.command}` failed (exit {code}) while building {m.path} ({m.what})")
        if not Path(m.path).expanduser().exists():
            raise PrerequisiteError(f"`{m.command}` finished but {m.path} still does not exist: it is {m.what}, "
                                    f"named by {m.keys[0]}; build it another way or point that key at the file")


# --- run checkpoints ------------------------------------------------------------------------------

_VERSION = re.compile(r"version_(\d+)")


def latest_checkpoint(run_root: str | os.PathLike) -> Path | None:
    """``<run_root>/version_<N>/checkpoints/last.ckpt`` with the highest N that has one (mtimes play no part)."""
    best: tuple[int, Path] | None = None
    root = Path(run_root)
    if not root.is_dir():
        return None
    for d in root.iterdir():
        m = _VERSION.fullmatch(d.name)
        ckpt = d / "checkpoints" / "last.ckpt"
        if m and ckpt.is_file() and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), ckpt)
    return None if best is None else best[1]


# --- command line ---------------------------------------------------------------------------------

def _report(label: str, config: dict, missing: list[Missing], out) -> None:
    uses = artifact_uses(config)
    if not missing:
        present = len({u[0] for u in uses})
        state = f"{present} prerequisite file(s), all present" if present else "no prerequisite files"
        print(f"prerequisites of {label}: {state}", file=out)
        return
    print(f"prerequisites of {label}: {len(missing)} file(s) missing", file=out)
    for m in missing:
        print(f"  {m.path}: {m.what} [{', '.join(m.keys)}]\n    build it with: {m.command}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m twostream.prerequisites",
                                description="List (or build) the files a LightningCLI config needs before training.")
    p.add_argument("configs", nargs="*", metavar="CONFIG", help="the config, then overlays merged on top in order")
    p.add_argument("--build", action="store_true", help="run the command that builds each missing file")
    p.add_argument("--each", action="store_true", help="resolve every CONFIG on its own (on top of --base)")
    p.add_argument("--base", nargs="+", default=[], metavar="FILE", help="with --each: files merged under every CONFIG")
    p.add_argument("--latest", metavar="RUN_ROOT", help="print RUN_ROOT/version_<N>/checkpoints/last.ckpt, highest N")
    p.add_argument("--command", default="make pretrain", help="with --latest: the command that writes such runs")
    args = p.parse_intermixed_args(argv)

    if args.latest is not None:
        if args.configs or args.build or args.each or args.base:
            p.error("--latest takes no configs")
        ckpt = latest_checkpoint(args.latest)
        if ckpt is None:
            print(f"prerequisites: no checkpoint {args.latest}/version_<N>/checkpoints/last.ckpt: "
                  f"run `{args.command}` first", file=sys.stderr)
            return 2
        print(ckpt)
        return 0
    if not args.configs:
        p.error("give a CONFIG (or --latest RUN_ROOT)")
    if args.base and not args.each:
        p.error("--base goes with --each (otherwise list the files in order: CONFIG OVERLAY...)")
    sets = [[*args.base, c] for c in args.configs] if args.each else [args.configs]

    missing_any = False
    try:
        for files in sets:
            label = " + ".join(str(f) for f in files)
            with warnings.catch_warnings():  # importing the classes must not bury the answer
                warnings.simplefilter("ignore")
                config = load_config(files[0], files[1:])
            missing = resolve(config)
            _report(label, config, missing, sys.stdout)
            if missing and args.build:
                sys.stdout.flush()
                build(missing)
                still = resolve(config)
                if still:  # a command built something other than what was asked for
                    raise PrerequisiteError(f"still missing after building: {', '.join(m.path for m in still)}")
                print(f"prerequisites of {label}: built", flush=True)
            missing_any |= bool(missing) and not args.build
    except PrerequisiteError as exc:
        print("prerequisites: error: " + " ".join(str(exc).splitlines()), file=sys.stderr)
        return 2
    if missing_any:
        print("prerequisites: missing files: run the command(s) above, or add --build to run them", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
