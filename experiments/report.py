"""How the experiment scripts write results: ``<out>.json`` + ``<out>.md``, with the machine and the command.

Every script under experiments/ that writes results (benchmarks/*.py, tables/make_tables.py,
ablations/run_ablation.py, testbed/sweep.py) records the machine with ``machine()``, the command
line with ``command()``, and writes both files with ``write_report``. The scripts put experiments/
on ``sys.path`` first, as they do for runlib.py. Importing this module does not import torch.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ("nproc", "cpu", "threads", "torch", "python", "loadavg", "date")  # what machine() always records


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _torch_version() -> str | None:
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.__version__
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def machine(threads: int | None = None, **extra) -> dict:
    """CPUs and their model, torch threads, torch and Python versions, load average and date; then ``extra``
    (library versions, the device, ...). ``threads`` defaults to torch's count when torch is imported."""
    torch = sys.modules.get("torch")
    if threads is None and torch is not None:
        threads = torch.get_num_threads()
    facts = {"nproc": os.cpu_count(), "cpu": cpu_model(), "threads": threads, "torch": _torch_version(),
             "python": platform.python_version(), "loadavg": list(os.getloadavg()),
             "date": datetime.datetime.now().isoformat(timespec="seconds")}
    return {**{k: v for k, v in facts.items() if v is not None}, **extra}


def machine_line(m: dict) -> str:
    """``machine()``'s facts in one line: ``nproc=2, <cpu>, torch X, <extra name> <value>, ..., Python Y, ...``."""
    parts = [f"nproc={m['nproc']}", m["cpu"]]
    parts += [f"torch {m['torch']}"] if m.get("torch") else []
    parts += [f"{k} {v}" for k, v in m.items() if k not in CORE]
    parts += [f"Python {m['python']}"]
    parts += [f"{m['threads']} torch thread(s)"] if "threads" in m else []
    parts += [f"load average {m['loadavg'][0]:.2f}", m["date"]]
    return ", ".join(parts)


def command(argv: list[str] | None = None, script: str | Path | None = None) -> str:
    """The command that produced a result, ready to paste: ``python <script, relative to the repo> <args>``.

    ``argv``: the arguments when ``main(argv)`` is called in-process (default ``sys.argv[1:]``);
    ``script``: the script's path (default ``sys.argv[0]``).
    """
    path = Path(script if script is not None else sys.argv[0]).resolve()
    try:
        path = path.relative_to(ROOT)
    except ValueError:
        pass
    return shlex.join(["python", str(path), *(sys.argv[1:] if argv is None else argv)])


def write_report(out: str | Path, data: dict | None, markdown: str | list[str]) -> tuple[Path, Path | None]:
    """Write ``<out>.md`` (``markdown``: text or lines; ends in exactly one newline) and, unless ``data`` is None,
    ``<out>.json`` (indent 1; values JSON has no type for, such as paths, as strings). Creates the folder.
    ``out``'s suffix, if any, is replaced, as for the scripts' other outputs (``out.with_suffix(".png")``).
    Returns the two paths (None for a JSON not written)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = markdown if isinstance(markdown, str) else "\n".join(markdown)
    md = out.with_suffix(".md")
    md.write_text(text.rstrip("\n") + "\n")
    if data is None:
        return md, None
    js = out.with_suffix(".json")
    js.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return md, js
