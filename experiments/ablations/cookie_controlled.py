"""COOKIE, controlled: does knowledge sharing beat a baseline given the same training compute?

    python experiments/ablations/cookie_controlled.py --seeds 5 --jobs 2 --out experiments/results/cookie_controlled

Per seed k, on the mini schedule (experiments/testbed/mini.yaml: 5 epochs = 780 steps of batch 64):
  teacher_k   the CLIP-style default model, seed k (its towers become COOKIE's frozen teachers);
  clip_5ep    = teacher_k itself: the baseline with the student's own budget;
  clip_10ep   the same model trained 10 epochs: the budget of teacher + student (1,560 steps) —
              the comparison the claim needs [choice: equal optimizer steps; a COOKIE step also runs
              two frozen teacher forwards and the shared layers, so COOKIE spends more FLOPs, not fewer];
  shared_only COOKIE's weight-sharing transformer, in-batch contrastive only (no teachers): the
              architecture's own share;
  cookie      shared transformer + cross-modal + visual and textual knowledge sharing, teachers =
              teacher_k's towers (the same seed, so rows pair by seed).
Rows pair by seed; every row is compared with clip_10ep (paired Δ RSUM, CI, p). Cross-modal recall and
the unimodal image→image / text→text recall COOKIE's abstract speaks of (i2i: images of the same scene,
t2t: captions of the same image). Runs are `python -m twostream fit` subprocesses, reused when finished.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))
from report import command as command_line, machine, machine_line, write_report  # noqa: E402
from runlib import markdown_table, plot_rsum, run_fit, run_name  # noqa: E402

PRETRAIN, MINI = ROOT / "experiments" / "pretrain", ROOT / "experiments" / "testbed" / "mini.yaml"
METRICS = ("i2t_r1", "t2i_r1", "rsum", "i2i_r1", "i2i_r5", "t2t_r1", "t2t_r5")
TITLES = {"clip_10ep": "CLIP-style, 10 epochs (= teacher + student budget)", "clip_5ep": "CLIP-style, 5 epochs (the teacher)",
          "shared_only": "COOKIE shared transformer, no knowledge sharing", "cookie": "COOKIE (shared + 3 sharing losses)"}
TEN_EPOCHS = ["--trainer.max_epochs=10", "--trainer.check_val_every_n_epoch=10"]


def teacher_heads(checkpoint: Path, schedule: Path) -> list[dict]:
    """cookie.yaml's heads with the teachers set to the schedule's towers (the mini towers: bidirectional
    text, like every mini row) and their weights read from ``checkpoint``."""
    heads = copy.deepcopy(yaml.safe_load((PRETRAIN / "cookie.yaml").read_text())["model"]["init_args"]["heads"])
    init = yaml.safe_load(schedule.read_text())["model"]["init_args"]
    towers = {"vision": init["vision"], "text": init["text"]}
    for head in heads[1:]:
        kind = "vision" if "Visual" in head["class_path"] else "text"
        tower = copy.deepcopy(towers[kind])
        tower["init_args"]["embed_dim"] = init.get("embed_dim", 128)  # the link sets it in the student, not here
        if kind == "vision":
            tower["init_args"]["config"] = {"image_size": 64, **tower["init_args"]["config"]}
        head["init_args"].update(teacher=tower, teacher_checkpoint=str(checkpoint))
    return heads


def override(path: Path, init_args: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"model": {"init_args": init_args}}, sort_keys=False))
    return path


def run_seed(seed: int, workdir: Path, schedule: Path, extra: list[str], threads: int | None) -> dict[str, dict]:
    """Every row of one seed; the teacher first (COOKIE needs its checkpoint)."""
    default = [str(PRETRAIN / "default.yaml"), str(schedule)]
    teacher, _ = run_fit(default, run_name("teacher", seed), seed, workdir, extra, False, threads)
    ckpt = workdir / run_name("teacher", seed) / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise SystemExit(f"teacher_seed{seed}: no checkpoint at {ckpt} (does default.yaml save last.ckpt?)")
    cookie = [str(PRETRAIN / "cookie.yaml"), str(schedule)]
    shared = override(workdir / "overrides" / "shared_only.yaml",
                      {"heads": [{"class_path": "twostream.contrastive.InBatchContrastive", "init_args": {"name": "cross_modal"}}]})
    full = override(workdir / "overrides" / f"cookie_seed{seed}.yaml", {"heads": teacher_heads(ckpt, schedule)})
    return {"clip_5ep": teacher,
            "clip_10ep": run_fit(default, run_name("clip_10ep", seed), seed, workdir, [*extra, *TEN_EPOCHS], False, threads)[0],
            "shared_only": run_fit([*cookie, str(shared)], run_name("shared_only", seed), seed, workdir, extra, False, threads)[0],
            "cookie": run_fit([*cookie, str(full)], run_name("cookie", seed), seed, workdir, extra, False, threads)[0]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--jobs", type=int, default=1, help="seeds at a time (each seed's runs go one after another)")
    p.add_argument("--out", required=True, help="output path without suffix (.md, .json, .png)")
    p.add_argument("--workdir", default="runs/claims/cookie")
    p.add_argument("--schedule", default=str(MINI), help="applied after each base config; its towers are the teachers'")
    args, extra = p.parse_known_args(argv)
    workdir, start = Path(args.workdir), time.time()
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        per_seed = dict(zip(range(args.seeds), pool.map(lambda s: run_seed(s, workdir, Path(args.schedule), extra, threads),
                                                          range(args.seeds))))
    rows = list(TITLES)
    results = {r: {s: per_seed[s][r] for s in per_seed} for r in rows}
    command, host = command_line(argv, __file__), (machine(threads) if threads else machine())
    lines = [f"# COOKIE, controlled (mini-scale)", "", f"Command: `{command}`", "", f"Machine: {machine_line(host)}. "
             f"Wall time {(time.time() - start) / 60:.1f} min.", "",
             f"Mean ± 95 % CI over {args.seeds} seeds, test split (1,000 images × 5,000 captions), percent. Δ RSUM: each row "
             "minus the equal-budget baseline (`clip_10ep`) with the same seed, 95 % CI and paired t-test p. I2I/T2T: "
             "unimodal recall (images of the same scene / captions of the same image as positives).", "",
             *markdown_table([TITLES[r] for r in rows], [results[r] for r in rows], METRICS, 0, "`clip_10ep`")]
    write_report(Path(args.out), {"command": command, "machine": host, "seeds": args.seeds, "titles": TITLES,
                                  "runs": results}, lines)
    plot_rsum(Path(args.out).with_suffix(".png"), [TITLES[r] for r in rows], [results[r] for r in rows],
              "RSUM (sum of I2T and T2I R@1/5/10)", baseline=0)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
