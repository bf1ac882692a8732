"""Training speed of ``twostream fit`` vs open_clip's own trainer on the same model, and of the embedded default.

    python experiments/benchmarks/vs_open_clip.py               # ViT-B-32, batch 16, 3 rounds: ~15 min on 2 quiet cores
    python experiments/benchmarks/vs_open_clip.py --tiny        # tiny towers, 2 steps: the script runs (~1 min)

(a) open_clip's ViT-B-32 (random init), plain CLIP loss, 224 px, batch 16, fp32, one loader worker, trained by
    ``twostream fit --config experiments/benchmarks/configs/vit_b32_clip.yaml`` (A) and by
    ``python -m open_clip_train.main --dataset-type synthetic --model ViT-B-32 --batch-size 16 --device cpu
    --precision fp32 --workers 1`` (B), each a fresh process for ``--steps`` optimizer steps, rounds interleaved
    in alternating order (A B, B A, A B, ...) so that a drifting load hits both sides alike.
(b) The embedded default (experiments/pretrain/default.yaml, ``--default-steps`` steps, no validation) with this
    project's speed settings (C, "after") and with them set back to the old behaviour (D, "before":
    ``BEFORE`` below), in the same rounds.

Both sides are timed the same way: a step is the wall time between the ends of two consecutive optimizer steps
(data wait, tokenization, logging included): open_clip_train's ``Batch (t)`` with ``--log-every-n-steps 1``,
twostream's ``StepTimer`` callback (``step_times.json``). The first ``--warmup`` steps of each run are left out;
a run's speed is batch x timed steps / their total time (samples/s). The ratio A / B is taken per round; the
report gives its median and range. Writes experiments/results/bench_vs_open_clip.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for report.py
from report import command, machine, machine_line, write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "experiments" / "benchmarks" / "configs" / "vit_b32_clip.yaml"
DEFAULT = ROOT / "experiments" / "pretrain" / "default.yaml"
RESULTS = ROOT / "experiments" / "results"
WORKDIR = ROOT / "runs" / "bench_vs_open_clip"
BATCH = 16
TINY_NAME = "twostream-bench-tiny"
TINY = {"embed_dim": 64, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
#: the old behaviour of every speed setting this benchmark's "before" switches back (docs/performance.md)
BEFORE = ["--model.init_args.optimizer_impl=for-loop", "--cpu_malloc_tuning=false"]
STEP_LINE = re.compile(r"Batch \(t\): ([0-9.]+)")
ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def register_tiny_model(directory: Path | None = None) -> str:
    """Register the tiny towers with open_clip under ``TINY_NAME`` (a JSON file in ``directory``)."""
    import open_clip

    path = Path(directory or tempfile.mkdtemp()) / f"{TINY_NAME}.json"
    path.write_text(json.dumps(TINY))
    open_clip.add_model_config(path)
    return str(path)


def _num_train(steps: int) -> int:
    return max(512, steps * BATCH)  # one epoch covers every step; 512 keeps the data (its hash) the same


def twostream_args(config: str | Path, steps: int, workdir: Path, tiny: bool, name: str,
                   data_root: Path | None = None) -> list[str]:
    """``twostream fit`` for the ViT-B-32 config (``--tiny``: the towers shrunk to ``TINY``), logs in ``workdir``,
    data in ``data_root`` (default ``workdir/data``)."""
    args = ["twostream", "fit", "--config", str(config), f"--trainer.max_steps={steps}",
            f"--trainer.logger.init_args.save_dir={workdir}", f"--trainer.logger.init_args.name={name}",
            f"--data.init_args.root={data_root or workdir / 'data'}", f"--data.init_args.num_train={_num_train(steps)}"]
    if tiny:
        vision = {k: v for k, v in TINY["vision_cfg"].items() if k != "image_size"}
        text = {k: v for k, v in TINY["text_cfg"].items() if k in ("width", "heads", "layers")}
        args += [f"--model.init_args.vision.init_args.config={json.dumps(vision)}",
                 f"--model.init_args.text.init_args.config={json.dumps(text)}",
                 f"--model.init_args.embed_dim={TINY['embed_dim']}",
                 f"--data.init_args.image_size={TINY['vision_cfg']['image_size']}"]
    return args


def open_clip_args(steps: int, workdir: Path, tiny: bool, name: str) -> list[str]:
    """open_clip_train's arguments for ``steps`` steps of batch 16 on its synthetic data, no checkpoint, no
    wandb (``--logs none``: its text log goes to ``./none/<name>/out.log`` and stdout)."""
    return ["--dataset-type", "synthetic", "--model", TINY_NAME if tiny else "ViT-B-32", "--batch-size", str(BATCH),
            "--device", "cpu", "--precision", "fp32", "--workers", "1", "--train-num-samples", str(steps * BATCH),
            "--epochs", "1", "--log-every-n-steps", "1", "--logs", "none", "--name", name, "--seed", "0",
            "--zeroshot-frequency", "0", "--warmup", "100"]


def default_args(steps: int, workdir: Path, name: str, before: bool, tiny: bool) -> list[str]:
    args = ["twostream", "fit", "--config", str(DEFAULT), f"--trainer.max_steps={steps}",
            "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0", "--test_after_fit=false",
            "--trainer.enable_progress_bar=false", "--trainer.callbacks+=twostream.callbacks.StepTimer",
            f"--trainer.logger.init_args.save_dir={workdir}", f"--trainer.logger.init_args.name={name}"]
    if tiny:  # a small data set (generated in seconds); the model and batch are the default's
        args += [f"--data.init_args.root={workdir / 'data'}", "--data.init_args.num_train=1024",
                 "--data.init_args.num_val=16", "--data.init_args.num_test=16"]
    return args + (BEFORE if before else [])


def _run(cmd: list[str], cwd: Path, log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **ENV})
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}; its output: {log}\n{log.read_text()[-3000:]}")
    return time.perf_counter() - t0


def _speed(step_s: list[float], warmup: int, batch: int) -> dict:
    timed = step_s[warmup:]
    if not timed:
        raise RuntimeError(f"no steps left after {warmup} warm-up steps: raise --steps")
    return {"step_s": step_s, "median_step_s": statistics.median(timed), "samples_per_s": batch * len(timed) / sum(timed),
            "steps_per_s": len(timed) / sum(timed)}


def run_twostream(args: list[str], workdir: Path, name: str, warmup: int, batch: int) -> dict:
    wall = _run([sys.executable, "-m", "twostream", *args[1:]], ROOT, workdir / f"{name}.log")
    found = sorted((workdir / name).glob("version_*/step_times.json"), key=lambda p: p.stat().st_mtime)
    return {**_speed(json.loads(found[-1].read_text())["step_s"], warmup, batch), "wall_s": wall}


def run_open_clip(args: list[str], workdir: Path, name: str, warmup: int, tiny: bool) -> dict:
    if tiny:
        code = (f"import open_clip, sys; open_clip.add_model_config({register_tiny_model(workdir)!r}); "
                "from open_clip_train.main import main; main(sys.argv[1:])")
        cmd = [sys.executable, "-c", code, *args]
    else:
        cmd = [sys.executable, "-m", "open_clip_train.main", *args]
    log = workdir / f"{name}.log"
    wall = _run(cmd, workdir, log)
    steps = [float(m.group(1)) for m in STEP_LINE.finditer(log.read_text())]
    return {**_speed(steps, warmup, BATCH), "wall_s": wall}


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def bench(args: argparse.Namespace) -> dict:
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    rounds = []
    for r in range(args.rounds):
        runs: dict[str, dict] = {}
        order = ["twostream", "open_clip"] if r % 2 == 0 else ["open_clip", "twostream"]
        for side in order:
            name = f"r{r}_{side}"
            print(f"round {r}: {side}", flush=True)
            if side == "twostream":
                runs[side] = run_twostream(twostream_args(args.config, args.steps, workdir, args.tiny, name), workdir,
                                           name, args.warmup, BATCH)
            else:
                runs[side] = run_open_clip(open_clip_args(args.steps, workdir, args.tiny, name), workdir, name,
                                           args.warmup, args.tiny)
        if args.default_steps:
            for when in (["after", "before"] if r % 2 == 0 else ["before", "after"]):
                name = f"r{r}_default_{when}"
                print(f"round {r}: default ({when})", flush=True)
                runs[f"default_{when}"] = run_twostream(
                    default_args(args.default_steps, workdir, name, when == "before", args.tiny), workdir, name,
                    args.warmup, 128)
        runs["ratio"] = runs["twostream"]["samples_per_s"] / runs["open_clip"]["samples_per_s"]
        if args.default_steps:
            runs["default_ratio"] = runs["default_after"]["steps_per_s"] / runs["default_before"]["steps_per_s"]
        rounds.append(runs)
        print(f"round {r}: twostream / open_clip = {runs['ratio']:.3f}", flush=True)
    summary = {"ratio": _spread([r["ratio"] for r in rounds])}
    for key in ("twostream", "open_clip", "default_after", "default_before"):
        if key in rounds[0]:
            summary[key] = _spread([r[key]["samples_per_s" if "default" not in key else "steps_per_s"] for r in rounds])
    if args.default_steps:
        summary["default_ratio"] = _spread([r["default_ratio"] for r in rounds])
    return {"rounds": rounds, "summary": summary}


def markdown(result: dict) -> list[str]:
    c, s, rounds = result["config"], result["summary"], result["rounds"]
    model = "tiny towers (--tiny: only shows the script runs)" if c["tiny"] else "open_clip ViT-B-32"
    load = result["machine"]["loadavg"]
    out = ["# Training speed: twostream fit vs open_clip_train", "", f"Command: `{result['command']}`", "",
           f"Machine: {machine_line(result['machine'])}; load average before / after: {load[0]:.2f} / "
           f"{result['load_after'][0]:.2f}.", "",
           f"Model: {model}, plain CLIP loss, batch {BATCH}, fp32, one loader worker, {c['steps']} steps per run, "
           f"the first {c['warmup']} left out, {c['rounds']} rounds in alternating order (A B, B A, ...). Step = wall "
           "time between the ends of consecutive optimizer steps (data included).", "",
           "| round | twostream fit samples/s | open_clip_train samples/s | ratio | twostream median step s | "
           "open_clip median step s |", "|---|---:|---:|---:|---:|---:|"]
    for i, r in enumerate(rounds):
        a, b = r["twostream"], r["open_clip"]
        out.append(f"| {i} | {a['samples_per_s']:.3f} | {b['samples_per_s']:.3f} | {r['ratio']:.3f} | "
                   f"{a['median_step_s']:.3f} | {b['median_step_s']:.3f} |")
    rt = s["ratio"]
    out += [f"| **median (range)** | {s['twostream']['median']:.3f} | {s['open_clip']['median']:.3f} | "
            f"**{rt['median']:.3f}** ({rt['min']:.3f}-{rt['max']:.3f}) | | |", "",
            f"twostream fit / open_clip_train throughput: **{rt['median']:.3f}x** (median over rounds; target "
            f">= 1.05: {'met' if rt['median'] >= 1.05 else 'not met'}).", ""]
    if "default_ratio" in s:
        out += [f"## The embedded default (experiments/pretrain/default.yaml, batch 128, {c['default_steps']} steps)", "",
                f"\"before\" = the same code with `{' '.join(BEFORE)}` (the old behaviour).", "",
                "| round | before steps/s | after steps/s | after / before |", "|---|---:|---:|---:|"]
        out += [f"| {i} | {r['default_before']['steps_per_s']:.3f} | {r['default_after']['steps_per_s']:.3f} | "
                f"{r['default_ratio']:.3f} |" for i, r in enumerate(rounds)]
        d = s["default_ratio"]
        out += [f"| **median (range)** | {s['default_before']['median']:.3f} | {s['default_after']['median']:.3f} | "
                f"**{d['median']:.3f}** ({d['min']:.3f}-{d['max']:.3f}) |", ""]
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps per run (ViT-B-32 side)")
    ap.add_argument("--warmup", type=int, default=2, help="first steps of each run left out")
    ap.add_argument("--default-steps", type=int, default=40, help="steps of each default run; 0: skip (b)")
    ap.add_argument("--config", type=Path, default=CONFIG)
    ap.add_argument("--tiny", action="store_true", help="tiny towers on both sides, 2 rounds x 3 steps")
    ap.add_argument("--workdir", type=Path, default=None, help="run folders and logs (default runs/bench_vs_open_clip)")
    ap.add_argument("--out", type=Path, default=None, help="output stem (default experiments/results/bench_vs_open_clip"
                                                           "; --tiny: <workdir>/bench_vs_open_clip_tiny)")
    args = ap.parse_args(argv)
    if args.tiny:
        args.rounds, args.steps, args.warmup = min(args.rounds, 2), min(args.steps, 3), 1
        args.default_steps = min(args.default_steps, 3)
    args.workdir = args.workdir or WORKDIR
    args.out = args.out or (args.workdir / "bench_vs_open_clip_tiny" if args.tiny else RESULTS / "bench_vs_open_clip")
    import torch  # only for machine(): the runs are subprocesses

    result = {"command": command(argv), "machine": machine(threads=torch.get_num_threads()),
              "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "before_overrides": BEFORE}
    result.update(bench(args))
    result["load_after"] = list(os.getloadavg())
    md = markdown(result)
    write_report(args.out, result, md)
    print("\n".join(md) + f"\nwrote {args.out}.md and .json")
    return result


if __name__ == "__main__":
    main()
