"""``make tables``: run (or reuse) the configs behind each results table and regenerate tables.md.

    python experiments/tables/make_tables.py --seeds 5            # what `make tables` runs
    python experiments/tables/make_tables.py --fast --workdir /tmp/t --out /tmp/t/tables   # CI-sized check

(a) image-text retrieval at mini scale (the embedded configs `make pretrain` runs), (b) text-to-video
on the embedded video data, (c) the COTS ablation (from `make ablate`'s results), (d) the efficiency
table (from `make bench`'s). Each (row, seed) is one ``python -m twostream fit`` subprocess whose
metrics.json is kept under ``--workdir``; finished runs are reused, so an interrupted call continues.
VLDeformer's seed k decomposes the single-stream run of seed k. ``--fast`` shrinks data and epochs
and builds untrained stand-ins for the visual tokenizer and COOKIE's teachers: it checks that every
row runs end to end, its numbers mean nothing (the output says so). Cells are mean ± 95 % CI; rows
on the CLIP baseline's test split are compared with it seed by seed (paired Δ RSUM, CI, p).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))
from report import command as command_line, machine, machine_line, write_report  # noqa: E402
from claims import claims_lines  # noqa: E402  (this folder is on sys.path when run as a script)
from runlib import (by_seed, checkpoint_override, ci_cell, paired_cells, paired_difference, paired_headers, plot_rsum,  # noqa: E402
                    run_fit, run_name, verdict)

IMAGE_ROWS = {  # key: (title, config, test split note)
    "clip": ("CLIP-style baseline (in-batch contrastive)", "default.yaml", "1,000 × 5,000"),
    "cots": ("COTS (momentum queues + MLM + MVM + KL + AMF)", "cots.yaml", "1,000 × 5,000"),
    "cookie": ("COOKIE (shared transformer + 3 knowledge-sharing losses)", "cookie.yaml", "1,000 × 5,000"),
    "single_stream": ("Single-stream cross-encoder (ITM, every pair scored)", "single_stream.yaml", "first 100 × 500"),
    "vldeformer": ("VLDeformer (single-stream decomposed, hard negatives)", "vldeformer.yaml", "first 100 × 500"),
}
PAPER = {  # what the papers report (paper scale: their data, models and splits, not these)
    "cots": "Flickr30K 1K: I2T R@1 90.6, T2I R@1 78.3 [3rd-party aggregator, variant unknown]",
    "cookie": "unimodal gains from cross-modal sharing: image retrieval +5.7 %, text matching +3.9 % [paper]",
    "vldeformer": "< 0.6 % average recall drop vs. its single-stream model, 1000+× faster [paper]",
    "single_stream": "-", "clip": "-",
}
RECALLS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")
FAST_DATA = ["--data.init_args.num_train=128", "--data.init_args.num_val=32", "--data.init_args.num_test=50",
             "--data.init_args.batch_size=32", "--trainer.max_epochs=1", "--trainer.limit_val_batches=0"]


def config(name: str) -> Path:
    return ROOT / "experiments" / "pretrain" / name


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
    cots_heads = yaml.safe_load(config("cots.yaml").read_text())["model"]["init_args"]["heads"]
    for head in cots_heads:
        if "tokenizer" in head.get("init_args", {}):
            head["init_args"]["tokenizer"] = str(tok)
    overrides["cots"] = write_yaml(workdir / "stand_ins" / "cots_heads.yaml", {"model": {"init_args": {"heads": cots_heads}}})
    cookie_heads = yaml.safe_load(config("cookie.yaml").read_text())["model"]["init_args"]["heads"]
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


def image_runs(seeds: int, workdir: Path, fast: bool, rerun: bool, only: list[str] | None) -> dict[str, dict[int, dict]]:
    """Row key -> seed -> metrics (keyed by seed: rows skipped by --only may miss some seeds, pairing must not shift)."""
    data = [*FAST_DATA, f"--data.init_args.root={workdir / 'data'}"] if fast else []
    stand_ins = fast_stand_ins(workdir) if fast else {}
    results: dict[str, dict[int, dict]] = {}
    for key, (_, cfg, _) in IMAGE_ROWS.items():
        results[key] = {}
        for seed in range(seeds):
            if only and key not in only:  # not run now, but shown when an earlier call finished it
                done = workdir / run_name(key, seed) / "metrics.json"
                if done.exists():
                    results[key][seed] = json.loads(done.read_text())
                continue
            configs, extra = [config(cfg)], list(data)
            if key in stand_ins:
                configs.append(stand_ins[key])
            ckpt = workdir / "ckpt" / run_name("single_stream", seed)
            if key == "single_stream":  # a per-seed checkpoint directory, which VLDeformer's seed starts from
                configs.append(checkpoint_override(workdir / "overrides" / f"single_stream_seed{seed}.yaml", ckpt))
            if key == "vldeformer":
                extra.append(f"--model.init_args.init_from={ckpt / 'last.ckpt'}")
            if fast and key in ("single_stream", "vldeformer"):
                extra.append("--data.init_args.eval_images=20")
            results[key][seed] = run_fit(configs, run_name(key, seed), seed, workdir, extra, rerun)[0]
    return results


def video_runs(seeds: int, workdir: Path, fast: bool, rerun: bool) -> dict[int, dict]:
    extra = ["--data.init_args.num_train=64", "--data.init_args.num_val=16", "--data.init_args.num_test=20",
             "--trainer.max_epochs=1", "--trainer.limit_val_batches=0", f"--data.init_args.root={workdir / 'video_data'}"] if fast else []
    return {s: run_fit([config("video.yaml")], run_name("video", s), s, workdir, extra, rerun)[0] for s in range(seeds)}


def mean_ci_cell(runs: dict[int, dict], key: str) -> str:
    """One table cell: the metric's mean ± 95 % CI over the row's seeds ("-" when no run has it)."""
    return ci_cell(by_seed(runs, key).values())


def same_split_as_clip(key: str) -> bool:
    """RSUM depends on the gallery size: only rows scored on the CLIP baseline's test split compare with it."""
    return IMAGE_ROWS[key][2] == IMAGE_ROWS["clip"][2]


def rsum_vs_clip(results: dict[str, dict[int, dict]]) -> dict[str, dict]:
    """Paired RSUM difference to the CLIP baseline (JSON-ready) for every other row on its test split."""
    return {k: paired_difference(by_seed(results.get("clip", {}), "rsum"), by_seed(runs, "rsum")).as_dict()
            for k, runs in results.items() if k != "clip" and same_split_as_clip(k)}


def vs_clip(results: dict[str, dict[int, dict]], key: str) -> list[str]:
    """Paired Δ RSUM, p and verdict cells of one table (a) row against the CLIP baseline."""
    if key == "clip":
        return paired_cells(None, 0)
    if not same_split_as_clip(key):
        return ["-", "-", "not compared (other test split)"]
    runs = results.get(key, {})
    return paired_cells(paired_difference(by_seed(results.get("clip", {}), "rsum"), by_seed(runs, "rsum")), len(runs))


def vldeformer_sentence(results: dict[str, dict[int, dict]]) -> list[str]:
    """VLDeformer against the single-stream model each of its seeds decomposes: the paper's claim, paired by seed."""
    ss, vl = (by_seed(results[k], "rsum") for k in ("single_stream", "vldeformer"))
    ss_mean, vl_mean = (sum(v.values()) / len(v) for v in (ss, vl))
    diff = paired_difference(ss, vl)
    delta, p, _ = paired_cells(diff, diff.n)
    return ["", f"VLDeformer vs. the single-stream model it decomposes, same 100-image test subset: mean RSUM "
            f"{vl_mean:.2f} vs {ss_mean:.2f}, i.e. **{(vl_mean - ss_mean) / 6:+.2f} points of average recall** "
            f"({100 * (vl_mean - ss_mean) / max(ss_mean, 1e-9):+.1f} % relative). Paper: < 0.6 % drop. "
            f"Paired by seed ({diff.n} seed(s) both ran): Δ RSUM {delta} (95 % CI), p {p}: {verdict(diff)}."]


def table_a(results: dict[str, dict[int, dict]], fast: bool) -> list[str]:
    paired = paired_headers("CLIP-style baseline")
    lines = ["| model | seeds | test images × captions | " + " | ".join(k.replace("_", " ").upper() for k in RECALLS)
             + " | I2I R@1 | T2T R@1 | " + " | ".join(paired) + " | papers report (paper scale) |",
             "|---|---:|---|" + "---:|" * (len(RECALLS) + 4) + "---|---|"]
    for key, (title, cfg, split) in IMAGE_ROWS.items():
        runs = results.get(key, {})
        if not runs:
            lines.append(f"| {title} | 0 | not run yet: `make tables` runs `experiments/pretrain/{cfg}` "
                         + "| - " * (len(RECALLS) + 2 + len(paired)) + f"| {PAPER[key]} |")
            continue
        split = "tiny (fast)" if fast else split
        cells = [mean_ci_cell(runs, k) for k in (*RECALLS, "i2i_r1", "t2t_r1")]
        first = next(iter(runs.values()))
        if "i2i_num_queries" in first:  # few scenes repeat: say how many queries I2I had
            cells[-2] += f" (n={int(first['i2i_num_queries'])})"
        cells += vs_clip(results, key)
        lines.append(f"| {title} | {len(runs)} | {split} | " + " | ".join(cells) + f" | {PAPER[key]} |")
    if results.get("single_stream") and results.get("vldeformer"):
        lines += vldeformer_sentence(results)
    return lines


def table_b(runs: dict[int, dict]) -> list[str]:
    keys = ("t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr", "i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr")
    head = "| model | seeds | T2V R@1 | T2V R@5 | T2V R@10 | T2V MedR | V2T R@1 | V2T R@5 | V2T R@10 | V2T MedR | papers report |"
    return [head, "|---|---:|" + "---:|" * len(keys) + "---|",
            f"| video.yaml (4 frames, ViT frames + temporal transformer) | {len(runs)} | "
            + " | ".join(mean_ci_cell(runs, k) for k in keys)
            + " | COTS: state of the art on MSR-VTT [paper; figure not known here] |"]


def embedded(path: Path, missing: str) -> list[str]:
    """The table lines of an existing results file (from its first table row on)."""
    if not path.exists():
        return [f"_Not generated yet: {missing}._"]
    lines = path.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))
    return [f"From `{path.relative_to(ROOT)}` (see that file for its command and machine):", "", *lines[start:]]


def plot(path: Path, results: dict[str, dict[int, dict]]) -> None:
    keys = list(results)
    plot_rsum(path, [IMAGE_ROWS[k][0].split(" (")[0] + f"\n({IMAGE_ROWS[k][2]})" for k in keys], [results[k] for k in keys],
              "RSUM on the synthetic test split; the two lower rows use a 100-image subset",
              baseline=keys.index("clip") if "clip" in keys else None,
              comparable=[same_split_as_clip(k) for k in keys])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--workdir", default="runs/tables")
    p.add_argument("--out", default="experiments/results/tables", help="path without suffix: .md .json .png")
    p.add_argument("--fast", action="store_true", help="tiny data, 1 epoch, 1 seed, untrained stand-ins: a run check")
    p.add_argument("--only", nargs="*", default=None,
                   help=f"rows of table (a) to run now: {list(IMAGE_ROWS)}; the others show their finished runs")
    p.add_argument("--skip-video", action="store_true", help="run no video seeds now (finished ones are shown)")
    p.add_argument("--rerun", action="store_true")
    args = p.parse_args(argv)
    seeds, workdir, start = (1 if args.fast else args.seeds), Path(args.workdir), time.time()
    images = image_runs(seeds, workdir, args.fast, args.rerun, args.only)
    video = ({s: json.loads(f.read_text()) for s in range(seeds) if (f := workdir / run_name("video", s) / "metrics.json").exists()}
             if args.skip_video else video_runs(seeds, workdir, args.fast, args.rerun))
    wall = time.time() - start
    run_total = sum(r.get("run_wall_s", 0.0) for runs in [*images.values(), video] for r in runs.values())
    command, where = command_line(argv, __file__), machine()
    out = Path(args.out)
    lines = [f"# twostream results tables{' — FAST RUN CHECK, NOT RESULTS' if args.fast else ''}", "",
             f"Command: `{command}`. Mini-scale: tiny models on the embedded synthetic data, CPU; recalls in percent, "
             f"mean ± 95 % CI half-width (Student t, n−1 df) over the seeds column (\"n/a\" with one seed). Table (a) "
             f"compares each row on the CLIP baseline's test split with it seed by seed: paired Δ RSUM with its 95 % CI, "
             f"the paired t-test's two-sided p, and \"distinguishable\" when that CI excludes 0. Papers' figures are at "
             f"paper scale (their data, models and splits) and only show what each paper claims. This call: {wall / 60:.1f} min "
             f"elapsed; the runs' own wall times sum to {run_total / 60:.1f} min (reused runs included).", "",
             f"Machine: {machine_line(where)}.", "",
             "## (a) Image-text retrieval, mini scale", "", *table_a(images, args.fast), "",
             "## (b) Text-to-video retrieval, embedded video data", "", *(table_b(video) if video else ["_skipped_"]), "",
             "## (c) COTS ablation", "", *embedded(ROOT / "experiments/results/cots_ablation.md", "run `make ablate`"), "",
             "## (d) Retrieval efficiency", "", *embedded(ROOT / "experiments/results/efficiency.md", "run `make bench`"), "",
             "## (e) The papers' claims (experiments/tables/claims.py: verdict rules there)", "", *claims_lines()]
    md, _ = write_report(out, {"command": command, "machine": where, "fast": args.fast, "wall_s": wall,
                               "image_text": images, "video": video, "rsum_vs_clip": rsum_vs_clip(images)}, lines)
    if any(images.values()):
        plot(out.with_suffix(".png"), {k: v for k, v in images.items() if v})
    print(md.read_text())


if __name__ == "__main__":
    main()
