"""``--ckpt_path last`` and ``--ckpt_path <run folder>``: resume a run in place, or say which runs exist.

Why: Lightning resolves ``ckpt_path="last"`` inside the *new* run's checkpoint folder. A fresh
``twostream fit`` gets a new ``version_<N+1>`` folder, finds nothing there, warns and trains from
scratch with exit status 0, the one outcome a user who asked to resume never wants. Here, before
anything is built, the CLI turns the request into (checkpoint file, run folder) and points the
logger at that folder (``save_dir/name/version``), so the resumed run writes its logs, checkpoints
and config where the interrupted one did (what torchrun's and Lightning's restarts do: the
restarted job continues the same run).

- ``last``: the highest ``version_<N>`` of the config's logger (``save_dir/name``) that holds a
  complete checkpoint (a newer one without any is named in a note);
- a run folder (``runs/default/version_3``) or a logger-name folder (``runs/default``: its newest
  run with a checkpoint);
- a checkpoint *file* keeps Lightning's meaning: its state, in a new run folder.

The checkpoint of a run is its newest ``checkpoints/*.ckpt``; files that are not
a complete torch zip archive (a 0-byte file from a killed non-atomic save) are passed over.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from twostream.errors import ConfigError

_VERSION = re.compile(r"^version_(\d+)$")


@dataclass
class Resume:
    checkpoint: Path
    run_dir: Path
    note: str = ""

    @property
    def logger_fields(self) -> dict[str, str]:
        """TensorBoard/CSV logger arguments that make the logger write into :attr:`run_dir`."""
        return {"save_dir": str(self.run_dir.parent.parent), "name": self.run_dir.parent.name,
                "version": self.run_dir.name}


def is_sharded_checkpoint(path: Path) -> bool:
    """A ``torch.distributed.checkpoint`` folder (FSDP2's ``last.ckpt/``): its ``.metadata`` is written last."""
    return path.is_dir() and (path / ".metadata").is_file()


def is_complete(path: Path) -> bool:
    """A whole torch checkpoint (zip archive, or a sharded folder), not a truncated or empty file."""
    try:
        return is_sharded_checkpoint(path) or (path.is_file() and path.stat().st_size > 0 and zipfile.is_zipfile(path))
    except OSError:
        return False


def run_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint to resume ``run_dir`` from: its newest complete ``*.ckpt`` (``last.ckpt`` on a tie).
    Newest, not ``last.ckpt`` first: a config without ``save_last`` leaves an interruption's
    ``last.ckpt`` behind once the resumed run has written newer (best) checkpoints."""
    folder = run_dir / "checkpoints"
    found = [p for p in folder.glob("*.ckpt") if is_complete(p)] if folder.is_dir() else []
    return max(found, key=lambda p: (p.stat().st_mtime, p.name == "last.ckpt")) if found else None


def versions(name_dir: Path) -> list[Path]:
    """``version_<N>`` folders of a logger-name folder, highest N first."""
    found = [p for p in name_dir.iterdir() if p.is_dir() and _VERSION.match(p.name)] if name_dir.is_dir() else []
    return sorted(found, key=lambda p: int(_VERSION.match(p.name).group(1)), reverse=True)


def _describe(run_dir: Path) -> str:
    ckpt = run_checkpoint(run_dir)
    return f"{run_dir.name} ({ckpt.name})" if ckpt else f"{run_dir.name} (no checkpoint)"


def existing_runs(save_dir: Path, limit: int = 12) -> str:
    """``default: version_1 (last.ckpt), version_0 (no checkpoint); cots: ...`` for an error message."""
    names = sorted(p for p in save_dir.iterdir() if p.is_dir() and versions(p)) if save_dir.is_dir() else []
    if not names:
        return f"no runs under {save_dir}"
    rows = [f"{p.name}: " + ", ".join(_describe(v) for v in versions(p)[:4]) for p in names[:limit]]
    return f"runs under {save_dir}: " + "; ".join(rows)


def newest_run(name_dir: Path) -> Resume:
    """The highest version of ``name_dir`` with a checkpoint; a ConfigError listing the runs if none."""
    runs = versions(name_dir)
    skipped = []
    for run_dir in runs:
        ckpt = run_checkpoint(run_dir)
        if ckpt is not None:
            note = f"newer run(s) without a checkpoint: {', '.join(skipped)}" if skipped else ""
            return Resume(ckpt, run_dir, note)
        skipped.append(run_dir.name)
    what = f"{name_dir} has runs but none with a checkpoint ({', '.join(skipped)})" if runs else f"no runs in {name_dir}"
    raise ConfigError(f"--ckpt_path: nothing to resume: {what}; {existing_runs(name_dir.parent)}. Start a new run "
                      f"without --ckpt_path, or give a run folder or checkpoint file")


def resolve(ckpt_path: str, save_dir: str | None, name: str | None) -> Resume | None:
    """What to resume for ``ckpt_path`` (None: a file or Lightning keyword, left to Lightning)."""
    if ckpt_path == "last":
        if save_dir is None or name is None:
            raise ConfigError("--ckpt_path last needs a logger with save_dir and name (trainer.logger) to find "
                              "the run; give the run folder or checkpoint file instead")
        return newest_run(Path(save_dir) / name)
    path = Path(ckpt_path)
    if "://" in ckpt_path:
        return None  # remote: Lightning's (fsspec) business
    if not path.is_dir() or is_sharded_checkpoint(path):
        if not path.exists() and ckpt_path not in ("best", "hpc", "registry"):
            parent = path.parent if path.suffix else path
            raise ConfigError(f"--ckpt_path {ckpt_path}: no such file or folder; "
                              f"{existing_runs(parent.parent if parent.name == 'checkpoints' else parent)}")
        if path.is_file() and not is_complete(path):
            raise ConfigError(f"--ckpt_path {ckpt_path}: not a complete checkpoint ({path.stat().st_size:,} bytes; "
                              f"a save was interrupted?); resume from the run folder {path.parent.parent} to use its "
                              f"newest complete checkpoint")
        return None
    if _VERSION.match(path.name) or (path / "checkpoints").is_dir():
        ckpt = run_checkpoint(path)
        if ckpt is None:
            raise ConfigError(f"--ckpt_path {ckpt_path}: this run has no complete checkpoint; "
                              f"{existing_runs(path.parent.parent)}")
        return Resume(ckpt, path)
    return newest_run(path)
