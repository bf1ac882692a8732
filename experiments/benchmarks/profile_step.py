"""Where a training step's time goes, in ``twostream fit`` or in ``open_clip_train``, measured the same way.

    python experiments/benchmarks/profile_step.py --side twostream [--config CONFIG] [--steps 4] [--ops]
    python experiments/benchmarks/profile_step.py --side open_clip [--steps 4] [--ops]
    ... --tiny                     # the tiny towers of vs_open_clip.py --tiny, seconds

Each run executes one trainer in this process with the same library functions wrapped by timers:
the main process waiting for the loader (``_BaseDataLoaderIter.__next__``), tokenization in the main
process (open_clip's tokenizer ``__call__``; open_clip_train tokenizes in its loader workers), the
model's forward (``TwoStreamEncoder.forward`` / open_clip ``CLIP.forward``), the loss, ``Tensor.backward``,
``Optimizer.zero_grad`` and the AdamW arithmetic (``torch.optim.adam.adam``; under Lightning the closure
with forward and backward runs inside ``Optimizer.step`` before it). "other" is the rest of the step's
wall time (trainer hooks, logging, the loss's bookkeeping). A step is the wall time between two
optimizer steps; the first ``--warmup`` are left out. ``--ops`` adds a torch.profiler table of the
operators over the timed steps (self CPU time). Prints JSON (and writes it with ``--out``).
"""
from __future__ import annotations

import argparse
import importlib
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vs_open_clip as bench  # noqa: E402  (the commands of both sides, one definition)

PHASES = ("data_wait", "tokenize", "forward", "loss", "backward", "zero_grad", "optimizer_math")


class Timers:
    """Wraps functions with wall-clock accumulators; a step boundary closes the current step's record."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self.steps: list[dict[str, float]] = []
        self.depth: dict[str, int] = defaultdict(int)
        self.last = time.perf_counter()

    def wrap(self, owner, name: str, phase: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            self.depth[phase] += 1
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.depth[phase] -= 1
                if not self.depth[phase]:  # nested calls (forward inside forward) count once
                    self.current[phase] += time.perf_counter() - t0

        setattr(owner, name, timed)

    def boundary(self, *_) -> None:
        now = time.perf_counter()
        record = {p: self.current.get(p, 0.0) for p in PHASES}
        record["step"] = now - self.last
        record["other"] = record["step"] - sum(record[p] for p in PHASES)
        self.steps.append(record)
        self.current, self.last = defaultdict(float), now


def install(timers: Timers, side: str) -> None:
    import open_clip
    from torch.utils.data import dataloader

    timers.wrap(dataloader._BaseDataLoaderIter, "__next__", "data_wait")
    timers.wrap(open_clip.tokenizer.SimpleTokenizer, "__call__", "tokenize")
    timers.wrap(torch.Tensor, "backward", "backward")
    timers.wrap(torch.optim.Optimizer, "zero_grad", "zero_grad")
    timers.wrap(importlib.import_module("torch.optim.adam"), "adam", "optimizer_math")
    if side == "twostream":
        from twostream.encoder import TwoStreamEncoder

        timers.wrap(TwoStreamEncoder, "forward", "forward")
        timers.wrap(TwoStreamEncoder, "objective", "loss")
    else:
        timers.wrap(open_clip.model.CLIP, "forward", "forward")
        timers.wrap(open_clip.loss.ClipLoss, "forward", "loss")
    importlib.import_module("torch.optim.optimizer").register_optimizer_step_post_hook(timers.boundary)


def run_side(side: str, config: str, steps: int, tiny: bool, workdir: Path) -> None:
    if side == "twostream":
        from twostream import cli

        args = bench.twostream_args(config, steps, workdir, tiny, "profile", data_root=workdir.parent / "data")
        cli.run(args[1:])  # without the program's name
    else:
        from open_clip_train import main as oc_main

        if tiny:
            bench.register_tiny_model()
        with contextlib.chdir(workdir):
            oc_main.main(bench.open_clip_args(steps, workdir, tiny, "profile"))


def summarize(timers: Timers, warmup: int) -> dict:
    timed = timers.steps[warmup:]
    keys = ("step", *PHASES, "other")
    median = {k: statistics.median(s[k] for s in timed) for k in keys}
    total = sum(s["step"] for s in timed)
    share = {k: 100.0 * sum(s[k] for s in timed) / total for k in keys if k != "step"}
    return {"timed_steps": len(timed), "median_s": median, "share_pct": share, "steps": timers.steps}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", choices=("twostream", "open_clip"), required=True)
    ap.add_argument("--config", default=str(bench.CONFIG))
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps in all")
    ap.add_argument("--warmup", type=int, default=2, help="first steps left out")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--ops", action="store_true", help="torch.profiler table of the timed steps' operators")
    ap.add_argument("--workdir", type=Path, default=bench.WORKDIR, help="data (kept) and a temporary run folder")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    timers = Timers()
    install(timers, args.side)
    prof = None
    if args.ops:
        prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                      schedule=torch.profiler.schedule(wait=args.warmup, warmup=0, active=args.steps))
        prof.start()
        importlib.import_module("torch.optim.optimizer").register_optimizer_step_post_hook(lambda *_: prof.step())
    args.workdir.mkdir(parents=True, exist_ok=True)
    sys.argv[1:] = []  # LightningCLI reads its arguments from run(args) only
    with tempfile.TemporaryDirectory(dir=args.workdir.resolve()) as tmp:
        run_side(args.side, args.config, args.steps, args.tiny, Path(tmp))
    result = {"side": args.side, "threads": torch.get_num_threads(), **summarize(timers, args.warmup)}
    if prof is not None:
        prof.stop()
        result["ops"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    text = json.dumps({k: v for k, v in result.items() if k != "ops"}, indent=1)
    print(text + ("\n" + result["ops"] if prof is not None else ""))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
