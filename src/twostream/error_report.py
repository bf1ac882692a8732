"""How the CLI ends on an error: one short message and exit status 2 for what the user can fix,
the full traceback for what is our bug.

Why: a missing annotation file, a mistyped class or a dataset that is 40 % broken is the user's to
fix, and a 25-frame traceback above the one useful line hides it; an internal error, on the other
hand, needs its traceback to be fixed. User errors are

- the project's own kinds: :class:`~twostream.errors.ConfigError`,
  :class:`~twostream.errors.WeightsNotAvailableError`, :class:`~twostream.config_files.ConfigFileError`,
  :class:`~twostream.data.health.DataQualityError`;
- ``ValueError`` / ``OSError`` (``FileNotFoundError`` ...) raised by the data readers and
  datamodules themselves (code under ``twostream/data/``), also from inside a DataLoader worker
  (torch re-raises those with the worker's traceback in the message).

:class:`~twostream.errors.NonFiniteLossError` (a diverged run) is reported the same way with exit
status 3. ``TWOSTREAM_TRACEBACK=1`` prints the traceback of every error.
"""
from __future__ import annotations

import os
import re
import sys
import traceback

from twostream.errors import ConfigError, NonFiniteLossError, WeightsNotAvailableError

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
TRACEBACK_ENV = "TWOSTREAM_TRACEBACK"
_DATA_CODE = f"{os.sep}twostream{os.sep}data{os.sep}"
_WORKER = re.compile(r"^Caught (\w+) in DataLoader worker process \d+\.\nOriginal Traceback", re.S)


def _user_types() -> tuple[type, ...]:
    from twostream.config_files import ConfigFileError
    from twostream.data.health import DataQualityError

    return ConfigError, WeightsNotAvailableError, ConfigFileError, DataQualityError


def _worker_origin(exc: BaseException) -> tuple[str, str] | None:
    """(original traceback text, original message) of an exception re-raised from a DataLoader worker."""
    text = str(exc.args[0]) if exc.args else ""
    if not _WORKER.match(text):
        return None
    last = text.rstrip().splitlines()[-1]
    return text, re.sub(r"^[\w.]+(Error|Exception): ", "", last)


def _raised_in_data_code(exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and _DATA_CODE in frames[-1].filename


def exit_status(exc: BaseException) -> int | None:
    """2 (user error) or 3 (diverged) for an error to report in one message; None: show the traceback."""
    if isinstance(exc, NonFiniteLossError):
        return EXIT_DIVERGED
    if isinstance(exc, _user_types()):
        return EXIT_USER_ERROR
    if isinstance(exc, (ValueError, OSError)):
        worker = _worker_origin(exc)
        if worker is not None:
            lines = [ln for ln in worker[0].splitlines() if ln.strip().startswith("File ")]
            return EXIT_USER_ERROR if lines and _DATA_CODE in lines[-1] else None
        if _raised_in_data_code(exc):
            return EXIT_USER_ERROR
    return None


def user_error(exc: BaseException) -> BaseException | None:
    """The user error behind ``exc``: itself, or the cause it wraps (jsonargparse re-raises a
    constructor's ConfigError as "Does not validate against any of the Union subtypes" ``from`` it)."""
    seen = 0
    while exc is not None and seen < 10:
        if exit_status(exc) is not None:
            return exc
        exc, seen = exc.__cause__, seen + 1
    return None


def message(exc: BaseException) -> str:
    worker = _worker_origin(exc)
    return worker[1] if worker is not None else (str(exc) or type(exc).__name__)


def report(exc: BaseException) -> int | None:
    """Print ``exc`` as a one-message error and return the exit status, or None: not a user error
    (the caller re-raises it, so Python prints the traceback). ``TWOSTREAM_TRACEBACK=1``: the
    traceback first, same exit status."""
    found = user_error(exc)
    if found is None:
        return None
    status, exc = exit_status(found), found
    sys.stderr.flush()
    if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
        traceback.print_exception(exc)
    kind = "training diverged" if status == EXIT_DIVERGED else "error"
    hint = "" if os.environ.get(TRACEBACK_ENV, "") not in ("", "0") else f"\n(set {TRACEBACK_ENV}=1 to see the traceback)"
    print(f"twostream: {kind}: {message(exc)}{hint}", file=sys.stderr)
    return status
