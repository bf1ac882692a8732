"""How many of a contrastive query's negatives are true of it, per negative-set size (synthetic data).

    python experiments/diagnostics/queue_false_negatives.py --out experiments/results/queue_false_negatives

Why: the tuning sweep found the COTS queue row best at 128-512 queued keys and collapsing at 8,192,
while at CC3M scale a bigger queue helps. The embedded data is ambiguous by construction (a caption
such as "a red circle at the top" is true of many scenes), and the generator knows every scene, so
the false negatives a queue brings can be counted instead of guessed. For a caption true of m_j of
the N training images, a negative drawn uniformly from the other images is a false negative with
probability p_j = (m_j - 1) / (N - 1); with n negatives their number is X_j ~ Binomial(n, p_j)
[choice: with replacement; the queue samples without, which differs by < n/N in the variance].
A model that scores every image a caption is true of alike (the best it can do without memorising
pixels) cannot push its InfoNCE loss below E[ln(1 + X_j)] nor its top-1 hit rate above
E[1 / (1 + X_j)]: the floor and ceiling the table reports next to chance (ln(n + 1), 1 / (n + 1)).
The other thing a queue's size sets is how old its keys are: the oldest was written queue / batch
optimizer steps ago, a share of the run that at CC3M scale is tiny and here is not; and once an epoch
turns over, a query's own image (encoded last epoch) sits in a queue of Q slots with probability
about Q / N (counted as a positive by the id queue, but encoded by an older momentum tower).
"""
from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report import command, machine, machine_line, write_report  # noqa: E402

DEFAULT_QUEUES = (0, 128, 256, 512, 2048, 8192)


def binomial_expectations(n: int, p: float) -> tuple[float, float, float]:
    """(E[X], E[ln(1 + X)], E[1 / (1 + X)]) of X ~ Binomial(n, p), summed over the pmf until it is spent."""
    if p <= 0.0:
        return 0.0, 0.0, 1.0
    if p >= 1.0:
        return float(n), math.log1p(n), 1.0 / (1 + n)
    log_floor, hit, mass = 0.0, 0.0, 0.0
    log_pmf = n * math.log1p(-p)  # k = 0
    for k in range(n + 1):
        pmf = math.exp(log_pmf)
        mass += pmf
        log_floor += pmf * math.log1p(k)
        hit += pmf / (1 + k)
        if k == n or mass >= 1.0 - 1e-12:
            break
        log_pmf += math.log(n - k) - math.log(k + 1) + math.log(p) - math.log1p(-p)
    return n * p, log_floor, hit


def false_negative_rows(true_images: list[list[int]], num_images: int, batch: int, steps: int,
                        queues: tuple[int, ...] = DEFAULT_QUEUES) -> list[dict]:
    """One row per queue size: negatives = the batch's other pairs + the queue, averaged over captions."""
    counts = Counter(len(t) for t in true_images)  # captions grouped by m: the expectations depend on m only
    total = sum(counts.values())
    rows = []
    for queue in queues:
        n = batch - 1 + queue
        sums = [0.0, 0.0, 0.0]
        for m, c in counts.items():
            for i, v in enumerate(binomial_expectations(n, (m - 1) / max(1, num_images - 1))):
                sums[i] += c * v
        mean, floor, hit = (s / total for s in sums)
        rows.append({"queue": queue, "negatives": n, "oldest_key_steps": queue / batch,
                     "span_of_run": queue / batch / steps, "own_image_queued": min(1.0, queue / num_images), "false_negatives": mean, "loss_floor": floor,
                     "chance_loss": math.log(n + 1), "top1_ceiling": hit, "chance_top1": 1.0 / (n + 1)})
    return rows


def markdown(rows: list[dict], stats: dict, head: str) -> list[str]:
    lines = [head, "", f"Training split: {stats['images']:,} images, {stats['captions']:,} captions; a caption is true of "
             f"{stats['mean_m']:.2f} images on average (median {stats['median_m']}), its own included. Batch {stats['batch']}.", "",
             "| queue | negatives | false negatives among them | InfoNCE floor | chance loss | top-1 ceiling | chance top-1 "
             "| oldest key (steps) | share of the run | own image queued, epoch start |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['queue']:,} | {r['negatives']:,} | {r['false_negatives']:.2f} | {r['loss_floor']:.3f} | "
                     f"{r['chance_loss']:.3f} | {100 * r['top1_ceiling']:.1f} % | {100 * r['chance_top1']:.2f} % | "
                     f"{r['oldest_key_steps']:.0f} | {100 * r['span_of_run']:.1f} % | {100 * r['own_image_queued']:.0f} % |")
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="data/generated/synthetic_shapes")
    p.add_argument("--num-train", type=int, default=10000)
    p.add_argument("--batch", type=int, default=64, help="the mini schedule's batch (experiments/testbed/mini.yaml)")
    p.add_argument("--steps", type=int, default=780, help="optimizer steps of the run (the mini schedule's 780)")
    p.add_argument("--queues", type=int, nargs="+", default=list(DEFAULT_QUEUES))
    p.add_argument("--out", default="experiments/results/queue_false_negatives")
    args = p.parse_args(argv)
    from twostream.data import SyntheticShapesDataModule

    dm = SyntheticShapesDataModule(root=args.root, num_train=args.num_train, num_val=500, num_test=1000, image_size=64)
    truth = dm.true_images("train")
    sizes = sorted(len(t) for t in truth)
    stats = {"images": dm.get_split("train").num_images, "captions": len(truth), "batch": args.batch,
             "mean_m": sum(sizes) / len(sizes), "median_m": sizes[len(sizes) // 2]}
    rows = false_negative_rows(truth, stats["images"], args.batch, args.steps, tuple(args.queues))
    cmd = command(argv, __file__)
    head = (f"# False negatives a negative queue brings on the embedded synthetic data\n\nCommand: `{cmd}`\n\n"
            f"Machine: {machine_line(machine())}. Exact expectations from the generator's truth table (no training).")
    md, _ = write_report(args.out, {"command": cmd, "stats": stats, "rows": rows}, markdown(rows, stats, head))
    print(md.read_text())


if __name__ == "__main__":
    main()
