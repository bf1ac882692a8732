"""The CLI's fault handling in one place: what it checks before building, what it adds to every
trainer, and how a run that did not finish ends (message, resume command, exit status).

Exit statuses of ``twostream fit|validate|test``:

====  =====================================================================================
0     finished
1     internal error (Python traceback)
2     configuration or data error (one message; ``TWOSTREAM_TRACEBACK=1`` adds the traceback)
3     training diverged: a NaN/Inf loss or gradient (:class:`~twostream.callbacks.NonFiniteGuard`)
130   SIGINT (Ctrl-C): a checkpoint was saved if training had started, the resume command printed
143   SIGTERM: the same
====  =====================================================================================

Why every trainer gets the callbacks instead of each config listing them: a config that forgot
one would lose a run to a pre-emption or checkpoint NaN weights, and the shipped configs are a
dozen; a config that does list one (to set its arguments) keeps its own.
"""
from __future__ import annotations

import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from twostream.callbacks.interruption import Interruption
from twostream.callbacks.nonfinite import NonFiniteGuard
from twostream.checkpoint_io import AtomicCheckpointIO
from twostream.config_checks import check_config
from twostream.resume import resolve


# ------------------------------------------------------------------------------ before building
def _logger_args(config: Any) -> Any | None:
    """The init_args namespace of the trainer's (first) logger, when it has save_dir and name."""
    logger = config.trainer.get("logger") if hasattr(config.trainer, "get") else None
    if isinstance(logger, list):
        logger = logger[0] if logger else None
    args = getattr(logger, "init_args", None)
    return args if args is not None and "save_dir" in args and "name" in args else None


def prepare(subcommand: str, config: Any) -> str:
    """Reject impossible numbers; turn ``--ckpt_path last`` / a run folder into a checkpoint file and,
    for ``fit``, point the logger at that run so it resumes in place. Returns a note for the user."""
    check_config(config.as_dict())
    ckpt = config.get("ckpt_path")
    if not ckpt:
        return ""
    logger = _logger_args(config)
    found = resolve(str(ckpt), logger.save_dir if logger else None, logger.name if logger else None)
    if found is None:
        return ""
    config.ckpt_path = str(found.checkpoint)
    where = f"resuming {found.run_dir} from {found.checkpoint.name}"
    if subcommand == "fit" and logger is not None:
        for key, value in found.logger_fields.items():
            setattr(logger, key, value)
        where += " (logs and checkpoints continue in that folder)"
    return where + (f"; {found.note}" if found.note else "")


# ------------------------------------------------------------------------------ every trainer
def install(trainer: Any, max_nonfinite_steps: int) -> None:
    """Add the fault callbacks (unless configured) and atomic checkpoint writes to ``trainer``."""
    if not any(isinstance(cb, NonFiniteGuard) for cb in trainer.callbacks):
        trainer.callbacks.append(NonFiniteGuard(max_nonfinite_steps=max_nonfinite_steps))
    if not any(isinstance(cb, Interruption) for cb in trainer.callbacks):
        trainer.callbacks.append(Interruption())
    try:
        plain = type(trainer.strategy.checkpoint_io) is TorchCheckpointIO
    except (AttributeError, NotImplementedError):
        plain = False  # strategies that write checkpoints their own way (sharded) keep it
    if plain:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()


def interruption(trainer: Any) -> Interruption | None:
    return next((cb for cb in trainer.callbacks if isinstance(cb, Interruption)), None)


def finished_despite_signal(trainer: Any) -> SIGTERMException | None:
    """A signal that arrived after the last training step: fit ended normally, the test is skipped."""
    cb = interruption(trainer)
    if cb is None or cb.signum is None:
        return None
    exc = SIGTERMException(128 + cb.signum)
    exc.signum, exc.checkpoint, exc.stopped_at = cb.signum, None, None
    return exc


# ------------------------------------------------------------------------------ ending
def resume_command(args: list[str], target: str) -> str:
    """The command line that was run, with ``--ckpt_path target`` instead of any earlier one."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--ckpt_path":
            skip = True
            continue
        if not arg.startswith("--ckpt_path="):
            kept.append(arg)
    return shlex.join(["twostream", *kept, "--ckpt_path", target])


def _resume_target(checkpoint: str) -> str:
    """The run folder for a checkpoint in ``<run>/checkpoints/`` (resumes in place), else the file."""
    path = Path(checkpoint)
    return str(path.parent.parent) if path.parent.name == "checkpoints" else checkpoint


def _is_rank_zero() -> bool:
    return int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0"))) == 0 and os.environ.get(
        "NODE_RANK", "0") == "0"


def interrupted(exc: SIGTERMException, args: list[str]) -> int:
    """Say what was saved and how to resume; the exit status (128 + signal)."""
    signum = int(getattr(exc, "signum", signal.SIGTERM))
    name = signal.Signals(signum).name
    checkpoint, where = getattr(exc, "checkpoint", None), getattr(exc, "stopped_at", None)
    if _is_rank_zero():
        if checkpoint and where:
            print(f"\ntwostream: {name}: training stopped after step {where['step']} (epoch {where['epoch']}, "
                  f"batch {where['batch']} of {where['batches']}); checkpoint: {checkpoint}\nresume with:\n  "
                  f"{resume_command(args, _resume_target(checkpoint))}", file=sys.stderr)
        elif hasattr(exc, "signum"):
            print(f"\ntwostream: {name} after the last training step: training is complete (its checkpoints are "
                  f"written); the test after fit was skipped", file=sys.stderr)
        else:
            print(f"\ntwostream: {name}: stopped outside training; nothing to save", file=sys.stderr)
    return 128 + signum


def run_to_exit_status(run: Any, args: list[str]) -> None:
    """``run()`` (the CLI on the command line ``args``), ending the process with the exit status of
    the table above."""
    try:
        run()
    except SIGTERMException as exc:
        sys.exit(interrupted(exc, args))
    except KeyboardInterrupt:
        print("\ntwostream: interrupted (Ctrl-C) before training started; nothing to save", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except SystemExit as exc:
        if exc.code == 1 and Interruption.aborted:  # Lightning's exit after a KeyboardInterrupt
            print("twostream: aborted (Ctrl-C) without saving", file=sys.stderr)
            sys.exit(128 + signal.SIGINT)
        raise
    except Exception as exc:  # noqa: BLE001 - sorted into user errors (one message) and ours (re-raised)
        from twostream.error_report import report

        status = report(exc)
        if status is None:
            raise
        sys.exit(status)
