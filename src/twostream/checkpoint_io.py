"""Atomic checkpoint files: a kill at any moment leaves the previous checkpoint loadable.

Why not Lightning's default: ``TorchCheckpointIO`` writes through an fsspec transaction, which on a
local disk stages the file in ``TMPDIR`` and then *moves* it. When ``TMPDIR`` is another filesystem
the move is a copy into the already-truncated target, so a kill during it leaves a 0-byte
``last.ckpt`` (issue 14). Here the temporary file is created beside the target (same directory,
hence same filesystem), flushed and fsync'ed, then ``os.replace``d over the target, and the
directory is fsync'ed so the rename itself survives a power cut. ``os.replace`` is atomic on POSIX:
readers see the old file or the new one, never a mixture.

Remote paths (``s3://`` ...) keep Lightning's behaviour (object stores publish whole objects).

Fault injection, for the test suite only: ``TWOSTREAM_FAULT_SAVE=<n>:<point>`` makes the ``n``-th
save of this process end the process with ``os._exit(137)`` (what SIGKILL leaves behind) at
``point``: ``write`` (half the bytes written), ``fsync`` (all written, not yet synced) or
``replace`` (synced, not yet renamed).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

FAULT_ENV = "TWOSTREAM_FAULT_SAVE"
TEMP_SUFFIX = ".partial"  # temporary files are ".<name>.<random>.partial": never "*.ckpt"


def _is_local(path: str | os.PathLike) -> bool:
    return type(get_filesystem(str(path))).__name__ == "LocalFileSystem"


class _Fault:
    """Where (if anywhere) this save should die, from :data:`FAULT_ENV`; counts saves per process."""

    saves = 0

    def __init__(self) -> None:
        _Fault.saves += 1
        spec = os.environ.get(FAULT_ENV, "")
        number, _, self.point = spec.partition(":")
        self.armed = bool(spec) and int(number) == _Fault.saves

    def at(self, point: str) -> None:
        if self.armed and point == self.point:
            os._exit(137)


class _HalfThenDie:
    """A file wrapper that dies once half of ``total`` bytes went through (``write`` fault point)."""

    def __init__(self, file, total: int) -> None:
        self.file, self.limit, self.written = file, total // 2, 0

    def write(self, data) -> int:
        if self.written + len(data) > self.limit:
            self.file.write(bytes(memoryview(data)[: max(self.limit - self.written, 0)]))
            self.file.flush()
            os._exit(137)
        self.written += len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through a temporary file beside ``path``, fsync, ``os.replace``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fault = _Fault()
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            if fault.armed and fault.point == "write":
                import io

                buffer = io.BytesIO()
                torch.save(obj, buffer)
                torch.save(obj, _HalfThenDie(file, buffer.tell()))
            else:
                torch.save(obj, file)
            file.flush()
            fault.at("fsync")
            os.fsync(file.fileno())
        fault.at("replace")
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    remove_stale_partials(target)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open directories; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_partials(target: Path) -> None:
    """Temporary files a killed earlier save of ``target`` left behind (never another save's live one:
    saves of one target are serialised by the trainer)."""
    for stale in target.parent.glob(f".{target.name}.*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with atomic local writes (see the module docstring).

    The CLI installs it on every strategy that uses a ``TorchCheckpointIO``; pass it yourself as
    ``trainer.plugins`` when using the Trainer directly.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)
