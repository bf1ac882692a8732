"""VLDeformer, controlled: how much of a cross-encoder's recall survives its decomposition into two encoders?

    python experiments/ablations/vldeformer_controlled.py --seeds 3 --out experiments/results/vldeformer_controlled

Per seed k, every model = single_stream.yaml / vldeformer.yaml + experiments/testbed/vl_mini.yaml (width 64
x 4 layers, conv stem; 624 stage-1 steps, 468 decomposition steps, batch 64):
  stage1           the single-stream cross-encoder: ITM + ITC (vl_mini_stage1.yaml); tested by scoring every
                   pair of the first 100 test images (500 captions): N·M passes, so not on all 1,000
  stage1_two_stream  stage1's weights used as two encoders with no decomposition training (what ITC alone
                   gave the unimodal passes: the decomposition's starting point)
  decomposed       VLDeformer from stage1's checkpoint with both hard-negative kinds; tested on all 1,000
                   test images, its embeddings saved (the shortlist below; its first-100 recall is computed
                   from them, the same pairs as stage1's)
  no_caption_neg, no_image_neg, no_hard_neg   the same decomposition without caption / image / both kinds
  rerank{K}        stage1 on all 1,000 images by k-test re-ranking: each query's top K of decomposed's
                   ranking scored by the cross-encoder (K = --rerank_k; the rest keep decomposed's order)
Drop = decomposed minus stage 1 on the same split and seed (paired Δ RSUM, CI, p): on the 100-image subset
(both score every pair) and on the 1,000 split (stage 1 through re-ranking). The stage-1 plateau: the mean of
its last five logged ITM losses against the BCE of the 1:2 negative prior it starts by learning (0.637).
Runs are `python -m twostream fit|test` subprocesses, reused when finished with the same configs; `--report_only`
re-renders the report from the JSON it wrote (after a change to the report, or once runs/ is gone).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))
from report import command as command_line, machine, machine_line, write_report  # noqa: E402
from runlib import (by_seed, checkpoint_override, markdown_table, paired_cells, plot_rsum, run_fit, run_name,  # noqa: E402
                    seeds_of)
from stats import paired_difference  # noqa: E402
from testbed.curves import read_curves  # noqa: E402

PRETRAIN = ROOT / "experiments" / "pretrain"
VL_MINI = ROOT / "experiments" / "testbed" / "vl_mini.yaml"
STAGE1 = ROOT / "experiments" / "testbed" / "vl_mini_stage1.yaml"
PRIOR_BCE = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))  # 0.637: predicting "match" with p = 1/3 always
RECALLS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")
DECOMPOSITIONS = {  # row -> (caption_negatives, image_negatives); stage1_two_stream is tested, not trained
    "stage1_two_stream": (True, True), "decomposed": (True, True), "no_hard_neg": (False, False),
    "no_caption_neg": (False, True), "no_image_neg": (True, False)}
TITLES = {"stage1": "single-stream cross-encoder (stage 1)",
          "stage1_two_stream": "stage 1's weights as two encoders, before decomposition", "decomposed": "VLDeformer, both hard negatives",
          "no_caption_neg": "VLDeformer, no caption negatives", "no_image_neg": "VLDeformer, no image negatives",
          "no_hard_neg": "VLDeformer, no hard negatives (in-batch only)"}
FULL_SPLIT = "--data.init_args.eval_images=null"


def heads_override(path: Path, captions: bool, images: bool) -> Path:
    """vldeformer.yaml's heads with the two hard-negative toggles set."""
    heads = copy.deepcopy(yaml.safe_load((PRETRAIN / "vldeformer.yaml").read_text())["model"]["init_args"]["heads"])
    heads[0]["init_args"].update(caption_negatives=captions, image_negatives=images)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"model": {"init_args": {"heads": heads}}}, sort_keys=False))
    return path


def plateau(run_dir: Path) -> dict[str, float]:
    """Stage 1's last logged ITM loss and accuracy (mean of the last five logs: they are per-step and noisy)."""
    curves = read_curves(run_dir, ("train/itm_loss", "train/itm_acc"))
    last = {tag.split("/")[1]: sum(p[2] for p in pts[-5:]) / len(pts[-5:]) for tag, pts in curves.items() if pts}
    return {"final_itm_loss": last.get("itm_loss", float("nan")), "final_itm_acc": last.get("itm_acc", float("nan"))}


def subset_recall(embeddings: Path, images: int) -> dict[str, float]:
    """Recall of saved two-stream embeddings on the first ``images`` images and their captions: the pairs
    stage 1 scores in full."""
    import torch

    from twostream.metrics.score_ranking import recall_from_scores

    blob = torch.load(embeddings, map_location="cpu", weights_only=True)
    keep = blob["text_to_image"] < images
    scores = blob["image_emb"][:images].float() @ blob["text_emb"][keep].float().T
    return recall_from_scores(scores, blob["text_to_image"][keep])


def decompose(seed: int, row: str, workdir: Path, ckpt: Path, extra: list[str], threads: int | None, out: dict) -> None:
    """One decomposition of stage 1's checkpoint, tested on all 1,000 images; ``out[row + "_subset"]``: its first 100."""
    captions, images = DECOMPOSITIONS[row]
    cfg = [str(PRETRAIN / "vldeformer.yaml"), str(VL_MINI),
           str(heads_override(workdir / "overrides" / f"{row}.yaml", captions, images))]
    name = run_name(row, seed)
    args = [*extra, f"--model.init_args.init_from={ckpt / 'last.ckpt'}", FULL_SPLIT]
    subcommand = "test" if row == "stage1_two_stream" else "fit"  # test: the stage-1 weights init_from loaded
    out[row] = run_fit(cfg, name, seed, workdir, args, False, threads, subcommand=subcommand)[0]
    out[f"{row}_subset"] = subset_recall(workdir / name / "test_embeddings.pt", 100)


def run_seed(seed: int, workdir: Path, ks: list[int], k_seeds: dict[int, int], toggle_seeds: int, extra: list[str],
             threads: int | None) -> dict[str, dict]:
    """Every run of one seed, in dependency order; returns row -> metrics (``*_subset`` rows: first 100 images)."""
    ckpt = workdir / "ckpt" / run_name("stage1", seed)
    stage1_cfg = [str(PRETRAIN / "single_stream.yaml"), str(VL_MINI), str(STAGE1),
                  str(checkpoint_override(workdir / "overrides" / f"{run_name('stage1', seed)}.yaml", ckpt))]
    out = {"stage1_subset": run_fit(stage1_cfg, run_name("stage1", seed), seed, workdir, extra, False, threads)[0]}
    out["stage1_subset"].update(plateau(workdir / run_name("stage1", seed)))
    decompose(seed, "stage1_two_stream", workdir, ckpt, extra, threads, out)
    decompose(seed, "decomposed", workdir, ckpt, extra, threads, out)
    shortlist = workdir / run_name("decomposed", seed) / "test_embeddings.pt"
    for k in ks:
        if seed >= k_seeds.get(k, math.inf):
            continue
        args = [*extra, f"--ckpt_path={ckpt / 'last.ckpt'}", FULL_SPLIT, "--model.init_args.eval_mode=rerank",
                f"--model.init_args.rerank_k={k}", f"--model.init_args.shortlist={shortlist}"]
        out[f"rerank{k}"] = run_fit(stage1_cfg, run_name(f"rerank{k}", seed), seed, workdir, args, False, threads,
                                    subcommand="test")[0]
    for row in list(DECOMPOSITIONS)[2:] if seed < toggle_seeds else []:  # last: the main comparison comes first
        decompose(seed, row, workdir, ckpt, extra, threads, out)
    return out


def training_lines(results: dict[str, dict[int, dict]]) -> list[str]:
    """What decomposition training adds to its starting point (stage 1's weights used as two encoders), per split."""
    lines = []
    for split, suffix in (("100-image subset", "_subset"), ("1,000 images", "")):
        start, end = results.get(f"stage1_two_stream{suffix}"), results.get(f"decomposed{suffix}")
        if start and end:
            diff = paired_difference(by_seed(start, "rsum"), by_seed(end, "rsum"))
            delta, p, verdict = paired_cells(diff, len(end))
            lines.append(f"Decomposition training vs its starting point (`decomposed` − `stage1_two_stream`, same seed), "
                         f"{split}: Δ RSUM {delta}, p {p}, {verdict}.")
    return lines + [""] if lines else []


def report_lines(results: dict[str, dict[int, dict]], ks: list[int], seeds: int) -> list[str]:
    subset = [r for r in ("stage1_subset", *(f"{r}_subset" for r in DECOMPOSITIONS)) if results.get(r)]
    full = [r for r in (*(f"rerank{k}" for k in ks), *DECOMPOSITIONS) if results.get(r)]
    label = lambda row: (f"{TITLES['stage1']}, k-test re-ranking k = {row[6:]} of VLDeformer's shortlist"
                         if row.startswith("rerank") else TITLES[row.removesuffix("_subset")])
    stage1 = results["stage1_subset"]
    left = sum(r["final_itm_loss"] < PRIOR_BCE - 0.1 for r in stage1.values())
    plateau_cells = ", ".join(f"seed {s}: {r['final_itm_loss']:.3f} (acc {r['final_itm_acc']:.2f})" for s, r in sorted(stage1.items()))
    lines = ["## Stage 1: did the cross-encoder leave its matching plateau?", "",
             f"Final ITM loss (mean of the last five logs) against the 1:2 prior's BCE {PRIOR_BCE:.3f}: {plateau_cells}. "
             f"**{left} of {len(stage1)} seeds** ended more than 0.1 below the prior.", "",
             "## First 100 test images × 500 captions (every pair scored by both)", "",
             "Chance RSUM ≈ 32 on this subset. Δ RSUM: each row minus the stage-1 model of the same seed.", "",
             *markdown_table([label(r) for r in subset], [results[r] for r in subset], RECALLS, 0, "stage 1"), ""]
    if full:
        base = 0 if full[0].startswith("rerank") else None
        lines += ["## All 1,000 test images × 5,000 captions", "",
                  "Chance RSUM ≈ 3.2. Stage 1 is scored through k-test re-ranking of the decomposed model's "
                  "ranking (its R@K for K > k is the shortlist's); Δ RSUM: each row minus the first row, same seed.", "",
                  *markdown_table([label(r) for r in full], [results[r] for r in full], RECALLS, base,
                                  label(full[0]) if base is not None else None), ""]
    lines += training_lines(results)
    for row in ("stage1_two_stream", "decomposed"):
        runs = results.get(f"{row}_subset", {})
        paired = [s for s in sorted(stage1) if s in runs]
        if paired:
            title = TITLES[row][0].upper() + TITLES[row][1:]
            kept = ", ".join(f"{100 * runs[s]['rsum'] / stage1[s]['rsum']:.1f} %" for s in paired)
            lines += [f"{title}: {kept} of the cross-encoder's RSUM on the "
                      f"100-image subset (seeds {', '.join(map(str, paired))}); target ≥ 90 %, paper ≥ 99.4 % "
                      "(< 0.6 % average-recall drop).", ""]
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=1, help="seeds at a time (each seed's runs go one after another)")
    p.add_argument("--rerank_k", type=int, nargs="*", default=[16, 128], help="k of the k-test re-ranking rows")
    p.add_argument("--rerank_seeds", type=int, nargs="*", default=None,
                   help="seeds per k (same order as --rerank_k; k = 128 costs ~8x k = 16); default: every seed")
    p.add_argument("--toggle_seeds", type=int, default=None, help="seeds with the hard-negative toggle rows (default: all)")
    p.add_argument("--out", required=True, help="output path without suffix (.md, .json, .png)")
    p.add_argument("--workdir", default="runs/claims/vldeformer")
    p.add_argument("--report_only", action="store_true", help="re-render the report from --out's .json; runs nothing")
    args, extra = p.parse_known_args(argv)
    if args.report_only:
        return rerender(Path(args.out), argv)
    if args.rerank_seeds is not None and len(args.rerank_seeds) != len(args.rerank_k):
        p.error(f"--rerank_seeds gives {len(args.rerank_seeds)} counts for {len(args.rerank_k)} values of --rerank_k")
    k_seeds = dict(zip(args.rerank_k, args.rerank_seeds or [args.seeds] * len(args.rerank_k)))
    toggles = args.seeds if args.toggle_seeds is None else args.toggle_seeds
    workdir, start = Path(args.workdir), time.time()
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        per_seed = dict(zip(range(args.seeds), pool.map(
            lambda s: run_seed(s, workdir, args.rerank_k, k_seeds, toggles, extra, threads), range(args.seeds))))
    rows = sorted({r for runs in per_seed.values() for r in runs})
    results = {r: {s: per_seed[s][r] for s in per_seed if r in per_seed[s]} for r in rows}
    command, host = command_line(argv, __file__), (machine(threads) if threads else machine())
    render(Path(args.out), {"command": command, "machine": host, "seeds": args.seeds, "titles": TITLES,
                            "prior_bce": PRIOR_BCE, "wall_min": round((time.time() - start) / 60, 1), "runs": results})


def render(out: Path, data: dict, note: str = "") -> None:
    """The report (.md, .json, .png) from the collected results: ``data`` is what the JSON holds."""
    results, wall = data["runs"], data.get("wall_min")
    ks = sorted(int(r[6:]) for r in results if r.startswith("rerank"))
    lines = ["# VLDeformer, controlled (mini-scale)", "", f"Command: `{data['command']}`{note}", "",
             f"Machine: {machine_line(data['machine'])}."
             + (f" Wall time {wall:.1f} min (finished runs reused)." if wall is not None else ""), "",
             f"Mean ± 95 % CI over {data['seeds']} seeds, test split, percent; paired by seed (the decomposition of "
             "seed k starts from stage 1 of seed k).", "", *report_lines(results, ks, data["seeds"])]
    write_report(out, data, lines)
    subset = [r for r in ("stage1_subset", *(f"{r}_subset" for r in DECOMPOSITIONS)) if results.get(r)]
    plot_rsum(out.with_suffix(".png"), [TITLES[r.removesuffix("_subset")] for r in subset],
              [results[r] for r in subset], "RSUM, first 100 test images (chance ≈ 32)", baseline=0)
    print("\n".join(lines))


def rerender(out: Path, argv: list[str] | None) -> None:
    """--report_only: the report again from ``out``.json, without the runs (they may be gone: runs/ is scratch)."""
    path = out.with_suffix(".json")
    if not path.exists():
        raise SystemExit(f"--report_only: {path} does not exist; run the experiment first (same --out)")
    data = json.loads(path.read_text())
    data["runs"] = {row: seeds_of(runs) for row, runs in data["runs"].items()}
    render(out, data, f" (report re-rendered from its JSON: `{command_line(argv, __file__)}`)")


if __name__ == "__main__":
    main()
