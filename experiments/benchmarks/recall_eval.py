"""Benchmark twostream.metrics.rank_retrieval: speed vs. the bare matmul, exactness vs. a naive
full-argsort reference, and peak memory at 100K images x 500K captions.

    python experiments/benchmarks/recall_eval.py            # full run (make bench), ~6 min on 2 cores
    python experiments/benchmarks/recall_eval.py --quick    # tiny sizes, seconds

Writes experiments/results/bench_recall.{md,json}. Timings are best of --repeats after one
warm-up, interleaved round by round so that load from other processes hits matmul and metric alike.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from twostream.metrics import rank_retrieval

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for report.py
from report import command, machine, machine_line, write_report  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
NOISE = 5.0  # caption = image + noise; at 5K images gives CLIP-on-COCO-like recalls (R@1 ~63 / ~31)


def make_data(n_images: int, caps: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L2-normalised embeddings, captions grouped by image (as COCO/Flickr loaders store them).

    Filled block by block so that generating the data never needs more memory than the
    embeddings themselves (the memory probe must measure the metric, not the generator).
    """
    gen = torch.Generator().manual_seed(seed)
    img = torch.empty(n_images, dim)
    txt = torch.empty(n_images * caps, dim)
    t2i = torch.arange(n_images).repeat_interleave(caps)
    step = 8192
    for s in range(0, n_images, step):
        e = min(s + step, n_images)
        img[s:e] = torch.nn.functional.normalize(torch.randn(e - s, dim, generator=gen), dim=1)
        noisy = img[s:e].repeat_interleave(caps, 0) + NOISE / dim**0.5 * torch.randn((e - s) * caps, dim, generator=gen)
        txt[s * caps : e * caps] = torch.nn.functional.normalize(noisy, dim=1)
    return img, txt, t2i


def naive_reference(img: torch.Tensor, txt: torch.Tensor, t2i: torch.Tensor, ks: tuple[int, ...]) -> dict:
    """Full score matrix, full stable descending argsort in both directions."""
    scores = img @ txt.T
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    i2t = (t2i[order] == torch.arange(img.shape[0]).unsqueeze(1)).int().argmax(1)  # first positive
    del order
    order = torch.argsort(scores.T, dim=1, descending=True, stable=True)
    t2i_ranks = (order == t2i.unsqueeze(1)).int().argmax(1)
    out: dict = {}
    for name, ranks in (("i2t", i2t), ("t2i", t2i_ranks)):
        n = ranks.numel()
        for k in ks:
            out[f"{name}_r{k}"] = 100.0 * int((ranks < k).sum()) / n
        srt = ranks.sort().values
        out[f"{name}_medr"] = float((int(srt[(n - 1) // 2]) + int(srt[n // 2])) // 2 + 1)
        out[f"{name}_meanr"] = int(ranks.sum()) / n + 1.0
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks)
    out["i2t_ranks"], out["t2i_ranks"] = i2t, t2i_ranks
    return out


def best_times(fns: dict, repeats: int) -> tuple[dict[str, float], dict]:
    """One warm-up each, then ``repeats`` interleaved rounds: best time and last result of each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    last: dict = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            last[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}, last


def peak_rss_gib() -> float:
    """This process's peak RSS. Linux: VmHWM, because ru_maxrss survives exec and so would
    report the (large) parent's peak in the child; elsewhere fall back to ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB -> GiB
    except OSError:
        pass
    scale = 2**30 if sys.platform == "darwin" else 2**20  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def blocked_matmul(img: torch.Tensor, txt: torch.Tensor, block: torch.Tensor) -> None:
    """The same scores written into one preallocated block: the metric's compute floor."""
    for a in range(0, img.shape[0], block.shape[0]):
        b = min(a + block.shape[0], img.shape[0])
        torch.mm(img[a:b], txt.T, out=block[: b - a])


def mem_child(n: int, caps: int, dim: int, chunk_bytes: int) -> None:
    """Run in a fresh process: print peak RSS before and after rank_retrieval as JSON."""
    img, txt, t2i = make_data(n, caps, dim, seed=1)
    before = peak_rss_gib()
    t0 = time.perf_counter()
    res = rank_retrieval(img, txt, t2i, chunk_bytes=chunk_bytes)
    seconds = time.perf_counter() - t0
    peak = peak_rss_gib()
    emb = (img.numel() + txt.numel()) * 4 / 2**30
    print(json.dumps({"n_images": n, "n_captions": n * caps, "peak_rss_gib": peak, "rss_before_gib": before,
                      "embeddings_gib": emb, "seconds": seconds, "i2t_r1": res["i2t_r1"]}))


def measure_memory(sizes: list[int], caps: int, dim: int, chunk_bytes: int) -> list[dict]:
    """One fresh subprocess per size, so ru_maxrss is this problem's peak alone."""
    points = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--mem-child", f"{n},{caps},{dim},{chunk_bytes}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        points.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"  memory probe {points[-1]}", flush=True)
    return points


def extrapolate(points: list[dict], target_items: int) -> float:
    """Least-squares line peak = a + b * (N + M); valid because, once a score block is full
    (chunk rows < N), memory = fixed (interpreter, torch, block, scratch) + per-item terms."""
    xs = [p["n_images"] + p["n_captions"] for p in points]
    ys = [p["peak_rss_gib"] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my + b * (target_items - mx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test), results not written unless --out")
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--caps", type=int, default=5, help="captions per image")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk-bytes", type=int, default=256 * 2**20)
    ap.add_argument("--mem-images", type=int, default=100_000, help="memory target: images (x --caps captions)")
    ap.add_argument("--mem-probe-images", default="12500,25000,50000",
                    help="smaller sizes measured for extrapolation (comma list)")
    ap.add_argument("--mem-full", action=argparse.BooleanOptionalAction, default=True,
                    help="also measure the full --mem-images size (~3 min on 2 CPU cores); "
                         "--no-mem-full reports the extrapolation from the probes only")
    ap.add_argument("--out", type=Path, default=None, help="output stem (default experiments/results/bench_recall)")
    ap.add_argument("--mem-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mem_child:
        mem_child(*(int(v) for v in args.mem_child.split(",")))
        return
    if args.quick:
        args.images, args.dim, args.mem_images, args.mem_probe_images = 300, 64, 4000, "500,1000,2000"
        args.chunk_bytes = min(args.chunk_bytes, 2**20)
    out_stem = args.out or (None if args.quick else RESULTS / "bench_recall")
    run(args, out_stem)


def run(args: argparse.Namespace, out_stem: Path | None) -> None:
    ks = (1, 5, 10)
    img, txt, t2i = make_data(args.images, args.caps, args.dim, args.seed)
    print(f"timing N={img.shape[0]} M={txt.shape[0]} D={args.dim} threads={torch.get_num_threads()}", flush=True)
    metric = lambda: rank_retrieval(img, txt, t2i, ks=ks, chunk_bytes=args.chunk_bytes)  # noqa: E731
    block = torch.empty(max(1, min(img.shape[0], args.chunk_bytes // (txt.shape[0] * 4))), txt.shape[0])
    fns = {"matmul": lambda: img @ txt.T, "metric": metric, "blocked": lambda: blocked_matmul(img, txt, block)}
    t, _ = best_times(fns, args.repeats)
    t_naive, last = best_times({"naive": lambda: naive_reference(img, txt, t2i, ks)}, args.repeats)
    t["naive"], ref = t_naive["naive"], last["naive"]
    got = rank_retrieval(img, txt, t2i, ks=ks, chunk_bytes=args.chunk_bytes, return_ranks=True)
    ranks_identical = all(torch.equal(got.pop(k), ref.pop(k)) for k in ("i2t_ranks", "t2i_ranks"))

    probe = [int(v) for v in args.mem_probe_images.split(",")]
    print(f"memory probes at {probe} images, target {args.mem_images}", flush=True)
    points = measure_memory(probe, args.caps, args.dim, args.chunk_bytes)
    target_items = args.mem_images * (1 + args.caps)
    extrapolated = extrapolate(points, target_items)
    full = measure_memory([args.mem_images], args.caps, args.dim, args.chunk_bytes)[0] if args.mem_full else None

    result = {
        "matmul_s": t["matmul"], "metric_s": t["metric"], "naive_s": t["naive"],
        "ratio_metric_over_matmul": t["metric"] / t["matmul"], "identical": got == ref,
        "ranks_identical": ranks_identical, "blocked_matmul_s": t["blocked"],
        "peak_mem_gb": full["peak_rss_gib"] if full else extrapolated,
        "peak_mem_method": "measured at full size" if full else "extrapolated from smaller sizes",
        "peak_mem_extrapolated_gb": extrapolated, "peak_mem_full_run": full, "peak_mem_probes": points,
        "mem_problem": f"{args.mem_images} images x {args.mem_images * args.caps} captions, D={args.dim}",
        "recalls": got, "config": {k: v for k, v in vars(args).items() if k not in ("mem_child", "out")},
        "machine": machine(), "command": command(),
    }
    print(json.dumps({k: result[k] for k in ("matmul_s", "metric_s", "naive_s", "ratio_metric_over_matmul",
                                             "identical", "peak_mem_gb")}, indent=1))
    if out_stem is not None:
        write_report(out_stem, result, markdown(result))
        print(f"wrote {out_stem}.md and .json")


def markdown(r: dict) -> str:
    """Human-readable table of the same numbers as the JSON."""
    c, m = r["config"], r["machine"]
    full = r["peak_mem_full_run"]
    probes = ", ".join(f"{p['n_images']}x{p['n_captions']}: {p['peak_rss_gib']:.2f}" for p in r["peak_mem_probes"])
    rows = [
        ("command", f"`{r['command']}`"),
        ("machine", machine_line(m)),
        ("timing data", f"N={c['images']} images, M={c['images'] * c['caps']} captions, D={c['dim']}, "
                        f"L2-normalised, seed {c['seed']}, best of {c['repeats']} after warm-up"),
        ("(a) matmul `image_emb @ text_emb.T`", f"{r['matmul_s']:.4g} s"),
        ("(b) rank_retrieval (chunk_bytes=" + str(c["chunk_bytes"]) + ")", f"{r['metric_s']:.4g} s"),
        ("(a') same matmul into one reused block of chunk_bytes (no allocation)", f"{r['blocked_matmul_s']:.4g} s"),
        ("(c) naive full argsort, both directions", f"{r['naive_s']:.4g} s"),
        ("metric_s / matmul_s (target <= 1.5)", f"**{r['ratio_metric_over_matmul']:.2f}**"),
        ("recalls identical to naive (all keys) / ranks identical", f"**{r['identical']}** / {r['ranks_identical']}"),
        ("R@1,5,10 i2t / t2i", " / ".join(", ".join(f"{r['recalls'][f'{d}_r{k}']:.2f}" for k in (1, 5, 10))
                                       for d in ("i2t", "t2i"))),
        (f"peak memory, {r['mem_problem']} (target <= 2 GB)", f"**{r['peak_mem_gb']:.2f} GiB** ({r['peak_mem_method']})"),
        ("memory probes (peak RSS GiB, fresh process each)", probes),
        ("linear extrapolation to full size", f"{r['peak_mem_extrapolated_gb']:.2f} GiB"),
    ]
    if full:
        rows.append(("full-size run", f"{full['peak_rss_gib']:.2f} GiB peak RSS ({full['rss_before_gib']:.2f} before the "
                                      f"call, of which embeddings {full['embeddings_gib']:.2f}), {full['seconds']:.0f} s"))
    lines = ["# rank_retrieval benchmark", "", "| item | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "(a) allocates its N x M output on every call; (a') and the metric reuse one buffer, which is",
              "why the metric can come close to (a). Peak memory is the whole process's peak RSS (Linux",
              "`VmHWM`, fresh process): Python, torch, the embeddings, one score block and the comparison",
              "scratch. The extrapolation is a straight line through the probes and is rough (the score block",
              "grows with M once it is held at its 128-row minimum); the full-size run is the real number.",
              "Captions are grouped by image; a shuffled caption order adds one sorted copy of `text_emb`",
              "(M x D x 4 bytes, +0.48 GiB at 500K x 256).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
