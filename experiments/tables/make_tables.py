"""``make tables``: run (or reuse) the configs behind each results table and regenerate tables.md.

    python experiments/tables/make_tables.py --seeds 5 --cross-encoder-seeds 3 --jobs 2   # what `make tables` runs
    python experiments/tables/make_tables.py --seeds 5 --cross-encoder-seeds 3 --report-only  # re-render, run nothing
    python experiments/tables/make_tables.py --fast --workdir /tmp/t --out /tmp/t/tables   # CI-sized check

(a) image-text retrieval at mini scale (the embedded configs `make pretrain` runs), (b) text-to-video
on the embedded video data, (c) the COTS ablation (from `make ablate`'s results), (d) the efficiency
table (from `make bench`'s). Each (row, seed) is one ``python -m twostream fit`` subprocess whose
metrics.json is kept under ``--workdir``; finished runs are reused, so an interrupted call continues
(on another clone after ``experiments/restore_runs.py experiments/results/tables.json``).
VLDeformer's seed k decomposes the single-stream run of seed k. ``--fast`` shrinks data and epochs
and builds untrained stand-ins for the visual tokenizer and COOKIE's teachers: it checks that every
row runs end to end, its numbers mean nothing (the output says so). Cells are mean ± 95 % CI; rows
on the CLIP baseline's test split are compared with it seed by seed (paired Δ RSUM, CI, p).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))
from report import command as command_line, machine, machine_line, write_report  # noqa: E402
from claims import claims_lines  # noqa: E402  (this folder is on sys.path when run as a script)
from render import IMAGE_ROWS, embedded, plot, rsum_vs_clip, table_a, table_b  # noqa: E402
from runlib import checkpoint_override, run_fit, run_name, would_reuse  # noqa: E402

CROSS_ENCODER_ROWS = ("single_stream", "vldeformer")
FAST_DATA = ["--data.init_args.num_train=128", "--data.init_args.num_val=32", "--data.init_args.num_test=50",
             "--data.init_args.batch_size=32", "--trainer.max_epochs=1", "--trainer.limit_val_batches=0"]


def config(name: str) -> Path:
    """A config file named relative to experiments/ (``pretrain/default.yaml``)."""
    return ROOT / "experiments" / name


def last_heads(files: tuple[str, ...]) -> list[dict]:
    """The heads list a row ends up with: that of the last of its files that sets one."""
    found = [h for f in files if (h := (yaml.safe_load(config(f).read_text()).get("model") or {}).get("init_args", {}).get("heads"))]
    return found[-1]


def write_yaml(path: Path, content: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def fast_stand_ins(workdir: Path) -> dict[str, Path]:
    """Untrained tokenizer and teacher files, and head overrides that point the configs at them."""
    import torch

    from twostream.methods.cots.tokenizer import VisualTokenizer
    from twostream.towers import OpenCLIPTextTower, OpenCLIPVisionTower

    tok = workdir / "stand_ins" / "tokenizer.pt"
    tok.parent.mkdir(parents=True, exist_ok=True)
    VisualTokenizer(downsample=8, hidden=16, codebook_size=64, code_dim=8).save(tok)
    overrides = {}
    cots_heads = last_heads(IMAGE_ROWS["cots"][1])
    for head in cots_heads:
        if "tokenizer" in head.get("init_args", {}):
            head["init_args"]["tokenizer"] = str(tok)
    overrides["cots"] = write_yaml(workdir / "stand_ins" / "cots_heads.yaml", {"model": {"init_args": {"heads": cots_heads}}})
    cookie_heads = last_heads(IMAGE_ROWS["cookie"][1])
    teacher, state = workdir / "stand_ins" / "teacher.ckpt", {}
    for head in cookie_heads:
        args = head.get("init_args", {})
        if "teacher" in args:
            cls = OpenCLIPVisionTower if "Vision" in args["teacher"]["class_path"] else OpenCLIPTextTower
            prefix = "vision." if cls is OpenCLIPVisionTower else "text."
            state.update({prefix + k: v for k, v in cls(**args["teacher"]["init_args"]).state_dict().items()})
            args["teacher_checkpoint"] = str(teacher)
    torch.save({"state_dict": state}, teacher)
    overrides["cookie"] = write_yaml(workdir / "stand_ins" / "cookie_heads.yaml", {"model": {"init_args": {"heads": cookie_heads}}})
    return overrides


class Sweep:
    """The (row, seed) runs of tables (a) and (b), ``jobs`` at a time, with the report re-written after
    each finished run: an interrupted sweep leaves a table of what finished (and its reuse records, which
    ``experiments/restore_runs.py`` puts back on another clone)."""

    def __init__(self, args: argparse.Namespace, argv: list[str] | None):
        self.args, self.argv, self.start = args, argv, time.time()
        self.seeds = 1 if args.fast else args.seeds
        self.cross_seeds = min(self.seeds, args.cross_encoder_seeds or self.seeds)
        self.workdir = Path(args.workdir)
        self.threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
        self.data = [*FAST_DATA, f"--data.init_args.root={self.workdir / 'data'}"] if args.fast else []
        self.stand_ins = fast_stand_ins(self.workdir) if args.fast else {}
        self.images: dict[str, dict[int, dict]] = {key: {} for key in IMAGE_ROWS}
        self.video: dict[int, dict] = {}
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ runs
    def image_args(self, key: str, seed: int) -> tuple[list[Path], list[str]]:
        configs, extra = [config(f) for f in IMAGE_ROWS[key][1]], list(self.data)
        if key in self.stand_ins:
            configs.append(self.stand_ins[key])
        ckpt = self.ckpt_dir(seed)
        if key == "single_stream":  # a per-seed checkpoint directory, which VLDeformer's seed starts from
            configs.append(checkpoint_override(self.workdir / "overrides" / f"single_stream_seed{seed}.yaml", ckpt))
        if key == "vldeformer":
            extra.append(f"--model.init_args.init_from={ckpt / 'last.ckpt'}")
        if self.args.fast and key in ("single_stream", "vldeformer"):
            extra.append("--data.init_args.eval_images=20")
        return configs, extra

    def ckpt_dir(self, seed: int) -> Path:
        return self.workdir / "ckpt" / run_name("single_stream", seed)

    def run_image(self, key: str, seed: int, rerun: bool = False) -> None:
        configs, extra = self.image_args(key, seed)
        metrics = run_fit(configs, run_name(key, seed), seed, self.workdir, extra, rerun or self.args.rerun, self.threads)[0]
        with self.lock:
            self.images[key][seed] = metrics

    def run_cross_encoder(self, seed: int) -> None:
        """Single-stream seed k, then VLDeformer seed k decomposing it. A reused single-stream record whose
        checkpoint is gone (restored records, another clone) is trained again when VLDeformer still has to run."""
        self.run_image("single_stream", seed)
        if "vldeformer" not in self.wanted():
            return
        vl_configs, vl_extra = self.image_args("vldeformer", seed)
        if not would_reuse(vl_configs, run_name("vldeformer", seed), seed, self.workdir, vl_extra) \
                and not (self.ckpt_dir(seed) / "last.ckpt").exists():
            print(f"[rerun] {run_name('single_stream', seed)}: VLDeformer needs its checkpoint, which is gone", flush=True)
            self.run_image("single_stream", seed, rerun=True)
        self.run_image("vldeformer", seed)

    def run_video(self, seed: int) -> None:
        extra = ["--data.init_args.num_train=64", "--data.init_args.num_val=16", "--data.init_args.num_test=20",
                 "--trainer.max_epochs=1", "--trainer.limit_val_batches=0",
                 f"--data.init_args.root={self.workdir / 'video_data'}"] if self.args.fast else []
        metrics = run_fit([config("pretrain/video.yaml")], run_name("video", seed), seed, self.workdir, extra,
                          self.args.rerun, self.threads)[0]
        with self.lock:
            self.video[seed] = metrics

    def wanted(self) -> list[str]:
        if self.args.report_only:
            return []
        return list(self.args.only) if self.args.only else list(IMAGE_ROWS)

    def seeds_for(self, key: str) -> int:
        """Seeds a row is run with: the two cross-encoder rows may have fewer (--cross-encoder-seeds)."""
        return self.cross_seeds if key in CROSS_ENCODER_ROWS else self.seeds

    def tasks(self) -> list[tuple[str, object]]:
        """(label, callable) per run to start now; seed-major, so every row gets its first seeds early."""
        out = []
        for seed in range(self.seeds):
            for key in self.wanted():
                if key in CROSS_ENCODER_ROWS:
                    if seed < self.cross_seeds and (key == "single_stream" or "single_stream" not in self.wanted()):
                        out.append((f"cross-encoder seed {seed}", lambda s=seed: self.run_cross_encoder(s)))
                else:
                    out.append((run_name(key, seed), lambda k=key, s=seed: self.run_image(k, s)))
            if not (self.args.skip_video or self.args.report_only):
                out.append((run_name("video", seed), lambda s=seed: self.run_video(s)))
        return out

    def load_finished(self) -> None:
        """Rows not run now are shown with the runs an earlier call finished."""
        for seed in range(self.seeds):
            for key in IMAGE_ROWS:
                if seed < self.seeds_for(key) and key not in self.wanted() and (done := self.workdir / run_name(key, seed) / "metrics.json").exists():
                    self.images[key][seed] = json.loads(done.read_text())
            done = self.workdir / run_name("video", seed) / "metrics.json"
            if (self.args.skip_video or self.args.report_only) and done.exists():
                self.video[seed] = json.loads(done.read_text())

    def run(self) -> Path:
        self.load_finished()
        tasks = self.tasks()
        with ThreadPoolExecutor(max_workers=max(1, self.args.jobs)) as pool:
            futures = {pool.submit(fn): label for label, fn in tasks}
            for i, future in enumerate(as_completed(futures), 1):
                future.result()  # a failed run stops the sweep (its stderr is in the message)
                if i < len(futures):
                    self.write(partial=f"{i} of {len(futures)} tasks finished")
        return self.write()

    # ---------------------------------------------------------------- report
    def incomplete(self, images: dict[str, dict[int, dict]], video: dict[int, dict]) -> list[str]:
        """A line naming the rows with fewer than ``--seeds`` finished runs (none when every row has them)."""
        short = [f"{key} {len(runs)} of {self.seeds_for(key)}" for key, runs in [*images.items(), ("video", video)]
                 if len(runs) < self.seeds_for(key)]
        if not short:
            return []
        return [f"**Incomplete: seeds finished so far, of those asked for: {', '.join(short)}.** "
                "`make tables` continues it (after `experiments/restore_runs.py experiments/results/tables.json "
                "--workdir runs/tables` on another clone).", ""]

    def write(self, partial: str | None = None) -> Path:
        with self.lock:
            images = {k: dict(sorted(v.items())) for k, v in self.images.items()}
            video = dict(sorted(self.video.items()))
            wall = time.time() - self.start
            run_total = sum(r.get("run_wall_s", 0.0) for runs in [*images.values(), video] for r in runs.values())
            command, where = command_line(self.argv, __file__), machine(self.threads) if self.threads else machine()
            out = Path(self.args.out)
            lines = [f"# twostream results tables{' — FAST RUN CHECK, NOT RESULTS' if self.args.fast else ''}", "",
                     *([f"**Partial: the sweep is still running ({partial}).**", ""] if partial else []),
                     *self.incomplete(images, video),
                     f"Command: `{command}`. Mini-scale: tiny models on the embedded synthetic data, CPU; recalls in "
                     "percent, mean ± 95 % CI half-width (Student t, n−1 df) over the seeds column (\"n/a\" with one "
                     "seed). RSUM % of oracle: RSUM over the ceiling of the row's own test split (the oracle rows). "
                     "Table (a) compares each row on the CLIP baseline's test split with it seed by seed: paired Δ "
                     "RSUM with its 95 % CI, the paired t-test's two-sided p, and \"distinguishable\" when that CI "
                     "excludes 0. Papers' figures are at paper scale (their data, models and splits) and only show "
                     f"what each paper claims. This call: {wall / 60:.1f} min elapsed, {self.args.jobs} run(s) at a "
                     f"time; the runs' own wall times sum to {run_total / 60:.1f} min (reused runs included)."
                     + (f" Seeds asked for: {self.seeds} per row, {self.cross_seeds} for the single-stream and VLDeformer "
                        "rows (a seed of those costs about five CLIP-baseline runs here)." if self.cross_seeds < self.seeds
                        else ""), "",
                     f"Machine: {machine_line(where)}.", "",
                     "## (a) Image-text retrieval, mini scale", "", *table_a(images, self.args.fast, {k: self.seeds_for(k) for k in IMAGE_ROWS}), "",
                     "## (b) Text-to-video retrieval, embedded video data", "",
                     *(table_b(video) if video else ["_not run yet_"]), "",
                     "## (c) COTS ablation", "", *embedded(ROOT / "experiments/results/cots_ablation.md", "run `make ablate`"), "",
                     "## (d) Retrieval efficiency", "", *embedded(ROOT / "experiments/results/efficiency.md", "run `make bench`"), "",
                     "## (e) The papers' claims (experiments/tables/claims.py: verdict rules there)", "", *claims_lines()]
            md, _ = write_report(out, {"command": command, "machine": where, "fast": self.args.fast, "partial": partial,
                                       "wall_s": wall, "jobs": self.args.jobs, "run_wall_s_total": run_total,
                                       "runs": {**images, "video": video}, "rsum_vs_clip": rsum_vs_clip(images)}, lines)
            if any(images.values()):
                plot(out.with_suffix(".png"), {k: v for k, v in images.items() if v})
            return md


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--cross-encoder-seeds", type=int, default=None,
                   help="seeds of the single-stream and VLDeformer rows (default --seeds): they cost about 5x a CLIP run")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time; each gets cpu_count // jobs torch threads")
    p.add_argument("--workdir", default="runs/tables")
    p.add_argument("--out", default="experiments/results/tables", help="path without suffix: .md .json .png")
    p.add_argument("--fast", action="store_true", help="tiny data, 1 epoch, 1 seed, untrained stand-ins: a run check")
    p.add_argument("--only", nargs="*", default=None,
                   help=f"rows of table (a) to run now: {list(IMAGE_ROWS)}; the others show their finished runs")
    p.add_argument("--skip-video", action="store_true", help="run no video seeds now (finished ones are shown)")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: the report of the finished runs under --workdir (after restore_runs.py, say)")
    p.add_argument("--rerun", action="store_true")
    args = p.parse_args(argv)
    unknown = sorted(set(args.only or ()) - set(IMAGE_ROWS))
    if unknown:
        p.error(f"--only: unknown row(s) {unknown}; valid: {list(IMAGE_ROWS)}")
    md = Sweep(args, argv).run()
    print(md.read_text())


if __name__ == "__main__":
    main()
