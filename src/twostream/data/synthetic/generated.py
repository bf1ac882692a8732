"""Generated datasets appear atomically: written to a temporary sibling folder, renamed into place.

Why: an interrupted generation must never leave a half dataset that a later run takes for a
finished one, and two processes generating the same folder at once (parallel ablation runs, DDP
ranks) must both end up reading one complete copy.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def generate_once(final: Path, marker: str, write: Callable[[Path], None]) -> Path:
    """Return ``final``, first calling ``write(tmp_dir)`` and renaming it to ``final`` unless
    ``final / marker`` already exists (the marker is the file written last-or-once, e.g. the json)."""
    if (final / marker).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        write(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / marker).is_file():  # re-raise unless another process finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
