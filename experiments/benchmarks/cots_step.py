"""Benchmark the COTS training step: fused EMA, Lightning overhead, share of the momentum bookkeeping.

    python experiments/benchmarks/cots_step.py            # full run, ~5-6 min on 2 busy cores
    python experiments/benchmarks/cots_step.py --smoke    # tiny sizes, ~20 s (tests)

(a) Momentum (EMA) update over a ViT-B/16 (open_clip, random init) + BERT-base (``BertModel(BertConfig())``)
    parameter set and its deepcopy: ``twostream.methods.cots.ema_update_`` (one ``torch._foreach_lerp_``) vs the
    ALBEF-style loop ``pm.data = pm.data * m + p.data * (1 - m)`` on the same tensors, plus two rows that
    split the cost (``_foreach_mul_`` + ``_foreach_add_``; an in-place per-parameter loop). Why: the EMA
    touches every weight every step, and the ALBEF loop allocates three temporaries per tensor.
(b) The full COTS step (cots.yaml: four heads, momentum queue, adaptive filter) in ``lightning.Trainer`` vs a
    bare PyTorch loop doing the same math on a fresh, identically seeded model, fed the same pre-built
    batches, repeats interleaved in alternating order (B L, L B, ...). Why: Lightning must cost next to nothing.
    The two runs' final state dicts are compared: the bare loop seeds its masks as Trainer.fit does.
(c) Share of the bare step spent in momentum update + enqueue + filter update (what the callback does),
    at the (b) sizes and at ViT-B/16 + BERT-base-like sizes with a small batch. Why: the bookkeeping must
    stay small next to forward/backward; its share falls as the batch grows.

Everything runs with ``--threads`` torch threads (default 1); (a) is also timed at torch's default count.
"""
from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch

from twostream.callbacks import TrainingStateCallback
from twostream.encoder import TwoStreamEncoder
from twostream.methods.cots import (AdaptiveMomentumFilter, KLAlignment, MaskedLanguageModeling, MaskedVisionModeling,
                                    MomentumContrastive, MomentumQueue, ema_update_)
from twostream.methods.cots.tokenizer import VisualTokenizer
from twostream.towers import OpenCLIPTextTower, OpenCLIPVisionTower
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for report.py
from report import command, machine, write_report  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
MOMENTUM = 0.995
EMBEDDED = dict(image=64, patch=8, width=128, layers=4, head_width=32, t_width=128, t_heads=4, t_layers=4,
                context=32, embed=256, batch=64)  # experiments/pretrain/cots.yaml
VITB_BERT = dict(image=224, patch=16, width=768, layers=12, head_width=64, t_width=768, t_heads=12, t_layers=12,
                 context=32, embed=256, batch=4)  # ViT-B/16 vision, BERT-base-sized open_clip text transformer
SMOKE = dict(image=32, patch=8, width=32, layers=1, head_width=16, t_width=32, t_heads=2, t_layers=1,
             context=16, embed=32, batch=8)
SMOKE_LARGE = dict(SMOKE, patch=16, width=64, layers=2, t_width=64, t_layers=2, batch=4)
WORDS = ["red", "green", "blue", "circle", "square", "triangle", "left", "right", "top", "small", "large"]


def median_ms(times: list[float]) -> float:
    return 1000.0 * statistics.median(times)


# ------------------------------------------------------------------------------------ (a) EMA
def ema_tensors(smoke: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(momentum, online) tensors of ViT-B/16 + BERT-base, or tiny stand-ins with --smoke."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    if smoke:
        vision = OpenCLIPVisionTower(config=dict(image_size=32, patch_size=8, width=32, layers=1, head_width=16),
                                     embed_dim=32)
        bert = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    else:
        vision, bert = OpenCLIPVisionTower(model_name="ViT-B-16"), BertModel(BertConfig())
    online = torch.nn.ModuleList([vision, bert])
    ema = copy.deepcopy(online)
    with torch.no_grad():  # online weights that differ from the momentum copies, as after training
        for p in online.parameters():
            p.add_(torch.randn_like(p), alpha=0.01)
    return [p.data for p in ema.parameters()], [p.data for p in online.parameters()]


def albef_loop(ema: list[torch.Tensor], online: list[torch.Tensor], m: float) -> None:
    for pm, p in zip(ema, online):  # the ALBEF/BLIP `_momentum_update` pattern (.data rebinding)
        pm.data = pm.data * m + p.data * (1.0 - m)


def inplace_loop(ema: list[torch.Tensor], online: list[torch.Tensor], m: float) -> None:
    for pm, p in zip(ema, online):
        pm.mul_(m).add_(p, alpha=1.0 - m)


def foreach_mul_add(ema: list[torch.Tensor], online: list[torch.Tensor], m: float) -> None:
    torch._foreach_mul_(ema, m)
    torch._foreach_add_(ema, online, alpha=1.0 - m)


VARIANTS = {"fused `ema_update_` (_foreach_lerp_)": ema_update_, "ALBEF per-parameter loop": albef_loop,
            "extra: `_foreach_mul_` + `_foreach_add_`": foreach_mul_add,
            "extra: in-place per-parameter loop": inplace_loop}


@torch.no_grad()
def bench_ema(smoke: bool, repeats: int, thread_counts: list[int]) -> dict:
    """Max |diff| of one update vs the fused one; then per thread count one warm-up and ``repeats``
    interleaved rounds of every variant on the same tensors; median ms each."""
    ema, online = ema_tensors(smoke)
    diffs, ref = {}, None
    for name, fn in VARIANTS.items():  # one update from the same start; holds two extra copies at most
        out = [t.clone() for t in ema]
        fn(out, online, MOMENTUM)
        ref = out if ref is None else ref
        diffs[name] = max(float((x - y).abs().max()) for x, y in zip(out, ref))
    del out, ref
    runs = []
    for threads in thread_counts:
        torch.set_num_threads(threads)
        times: dict[str, list[float]] = {n: [] for n in VARIANTS}
        for r in range(repeats + 1):
            for name, fn in VARIANTS.items():
                t0 = time.perf_counter()
                fn(ema, online, MOMENTUM)
                if r:  # round 0 is the warm-up
                    times[name].append(time.perf_counter() - t0)
        ms = {n: median_ms(t) for n, t in times.items()}
        fused, albef = ms[next(iter(VARIANTS))], ms["ALBEF per-parameter loop"]
        rows = [{"variant": n, "median_ms": ms[n], "times_ms": [1e3 * x for x in t], "x_fused": ms[n] / fused,
                 "max_abs_diff_vs_fused": diffs[n]} for n, t in times.items()]
        runs.append({"threads": threads, "rows": rows, "speedup": albef / fused, "target_met": albef / fused >= 5.0})
    torch.set_num_threads(thread_counts[0])
    what = "tiny stand-in" if smoke else "open_clip ViT-B-16 vision tower + BertModel(BertConfig())"
    n = sum(t.numel() for t in online)
    return {"what": what, "tensors": len(online), "parameters": n, "mib_per_copy": n * 4 / 2**20, "runs": runs,
            "repeats": repeats}


# ------------------------------------------------------------------------------------ (b, c) COTS step
class _BareEncoder(TwoStreamEncoder):
    """Without a trainer ``global_step`` reads the loop's counter, so masks are seeded as in Trainer.fit."""

    steps_done = 0

    @property
    def global_step(self) -> int:
        return self.steps_done


def build_model(s: dict, tokenizer: str, total_steps: int, cls: type = TwoStreamEncoder) -> TwoStreamEncoder:
    """The COTS encoder of cots.yaml at sizes ``s``, seeded so every call builds the same model."""
    torch.manual_seed(0)
    vision = OpenCLIPVisionTower(config=dict(image_size=s["image"], patch_size=s["patch"], width=s["width"],
                                             layers=s["layers"], head_width=s["head_width"]), embed_dim=s["embed"])
    text = OpenCLIPTextTower(config=dict(context_length=s["context"], width=s["t_width"], heads=s["t_heads"],
                                         layers=s["t_layers"], vocab_size=49409, no_causal_mask=True),
                             embed_dim=s["embed"])
    heads = [MomentumContrastive(), MaskedLanguageModeling(weight=1.0, mask_prob=0.15),
             MaskedVisionModeling(tokenizer=tokenizer, weight=1.0, mask_ratio=0.4, masking="block"),
             KLAlignment(weight=1.0, direction="i2t_t2i", stop_grad_target=True)]
    return cls(vision, text, heads=heads, embed_dim=s["embed"], temperature=0.07, lr=1e-3, weight_decay=0.1,
               warmup_steps=100, total_steps=total_steps, state={"momentum": MomentumQueue(queue_size=2048, momentum=MOMENTUM),
                                                        "filter": AdaptiveMomentumFilter(k=2.0, momentum=0.99, warmup_steps=300)})


def make_batches(s: dict, n: int) -> list[dict]:
    """In-memory batches as the datamodule yields them: images, caption strings, image ids."""
    g, b = torch.Generator().manual_seed(1), s["batch"]
    return [{"image": torch.randn(b, 3, s["image"], s["image"], generator=g),
             "caption": ["a " + " ".join(WORDS[w] for w in row)
                         for row in torch.randint(len(WORDS), (b, 4), generator=g).tolist()],
             "image_index": torch.arange(i * b, (i + 1) * b)} for i in range(n)]


def bare_run(s: dict, tokenizer: str, batches: list[dict]) -> tuple[dict[str, list[float]], TwoStreamEncoder]:
    """training_step + optimizer/scheduler step + TrainingStateCallback.flush by hand; seconds per part."""
    model = build_model(s, tokenizer, total_steps=len(batches), cls=_BareEncoder).train()
    cfg = model.configure_optimizers()
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    queue, filt = model.state["momentum"], model.state["filter"]
    min_log_t = float(torch.tensor(model.hparams.min_temperature).log())
    t: dict[str, list[float]] = {"step": [], "keys": [], "ema": [], "enqueue_filter": []}
    for i, raw in enumerate(batches):
        t0 = time.perf_counter()
        batch = model.on_before_batch_transfer(dict(raw), 0)
        out = model(batch)
        model.steps_done = i
        out.generator = model.step_generator(i)
        k0 = time.perf_counter()
        carry = model.annotate(out, batch)
        k1 = time.perf_counter()
        loss, _ = model.objective(out, batch)
        loss.backward()
        opt.step()
        opt.zero_grad()
        sched.step()
        with torch.no_grad():
            model.log_temperature.clamp_(min=min_log_t)  # TwoStreamEncoder.optimizer_step
            e0 = time.perf_counter()
            queue.momentum_update(model, MOMENTUM)
            e1 = time.perf_counter()
            filt.update_statistics(carry["similarity"])
            keep = carry["pair_weight"].bool()
            queue.enqueue(carry["image_key"][keep], carry["text_key"][keep], carry["ids"][keep])
        t1 = time.perf_counter()
        for key, value in (("step", t1 - t0), ("keys", k1 - k0), ("ema", e1 - e0), ("enqueue_filter", t1 - e1)):
            t[key].append(value)
    return t, model


class _EndTimes(L.Callback):
    """Wall-clock time at the end of every training batch (listed after TrainingStateCallback: after its flush)."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, *args) -> None:
        self.ends.append(time.perf_counter())


def lightning_run(s: dict, tokenizer: str, batches: list[dict]) -> tuple[list[float], TwoStreamEncoder]:
    """Seconds per step in Trainer.fit: step i >= 1 is end(i) - end(i-1) (fetch + tokenize + step + flush)."""
    model, timer = build_model(s, tokenizer, total_steps=len(batches)), _EndTimes()
    trainer = L.Trainer(max_steps=len(batches), accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[TrainingStateCallback(), timer])
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    return [b - a for a, b in zip(timer.ends, timer.ends[1:])], model


def share(t: dict[str, list[float]], warmup: int) -> dict:
    """Per-part totals over the timed steps as a percentage of the total step time."""
    pct = {k: 100 * sum(v[warmup:]) / sum(t["step"][warmup:]) for k, v in t.items()}
    return {"median_step_ms": median_ms(t["step"][warmup:]), "ema_pct": pct["ema"],
            "enqueue_filter_pct": pct["enqueue_filter"], "target_pct": pct["ema"] + pct["enqueue_filter"],
            "momentum_keys_forward_pct": pct["keys"], "timed_steps": len(t["step"]) - warmup}


def bench_step(s: dict, tokenizer: str, steps: int, warmup: int, repeats: int) -> dict:
    batches = make_batches(s, warmup + steps)
    sps: dict[str, list[float]] = {"bare": [], "lightning": []}
    bare_times, diff = [], 0.0
    for r in range(repeats):  # order alternates (B L, L B, B L ...) so a drifting load favours neither path
        if r % 2:
            lt, light = lightning_run(s, tokenizer, batches)
        bt, bare = bare_run(s, tokenizer, batches)
        if not r % 2:
            lt, light = lightning_run(s, tokenizer, batches)
        bare_times.append(bt)
        sps["bare"].append(s["batch"] * steps / sum(bt["step"][warmup:]))
        sps["lightning"].append(s["batch"] * steps / sum(lt[warmup - 1:]))  # the same steps warmup.. as bare
        other = light.state_dict()
        diff = max([diff] + [float((v.double() - other[k].double()).abs().max()) for k, v in bare.state_dict().items()])
        print(f"  repeat {r}: bare {sps['bare'][-1]:.1f} samples/s, lightning {sps['lightning'][-1]:.1f}", flush=True)
    ratios = [lt / b for lt, b in zip(sps["lightning"], sps["bare"])]
    pooled = {k: [x for bt in bare_times for x in bt[k][warmup:]] for k in bare_times[0]}
    return {"sizes": s, "steps": steps, "warmup": warmup, "repeats": repeats, "samples_per_s": sps, "ratios": ratios,
            "median_bare": statistics.median(sps["bare"]), "median_lightning": statistics.median(sps["lightning"]),
            "median_ratio": statistics.median(ratios), "target_met": statistics.median(ratios) >= 0.97,
            "max_abs_state_diff": diff, "share": share(pooled, 0)}


# ------------------------------------------------------------------------------------ report
def sizes_str(s: dict) -> str:
    return (f"{s['image']} px, patch {s['patch']}, vision width {s['width']} x {s['layers']} layers, text width "
            f"{s['t_width']} x {s['t_layers']} layers, embed {s['embed']}, batch {s['batch']}")


def met(ok: bool) -> str:
    return "met" if ok else "not met"


def markdown(r: dict) -> str:
    m, a, b, c = r["machine"], r["ema"], r["step"], r["share_large"]
    load = m["loadavg"][0]
    busy = (f" (load average {load:.1f} on {m['nproc']} CPUs: other processes were running throughout)"
            if load > 3 else "")
    out = ["# COTS step benchmark", "", f"Command: `{r['command']}`", "",
           f"Machine: {m['nproc']} CPUs ({m['cpu']}), torch {m['torch']}, lightning {m['lightning']}, Python "
           f"{m['python']}, {m['date']}; {m['threads']} torch thread(s) unless a row says otherwise.", "",
           f"Timings on a shared machine are noisy{busy}; ratios were measured side by side in one run, "
           "rounds interleaved, which is what makes them comparable.", ""]
    if r["config"]["smoke"]:
        out += ["**--smoke: tiny stand-ins for every size below; the numbers only show that the script runs.**", ""]
    out += [f"## (a) Momentum (EMA) update, {a['what']}: {a['parameters'] / 1e6:.1f} M parameters in "
            f"{a['tensors']} tensors ({a['mib_per_copy']:.0f} MiB per copy), median of {a['repeats']} after warm-up",
            "", "| torch threads | variant | median ms / update | x fused time | max abs diff vs fused |",
            "|---|---|---|---|---|"]
    out += [f"| {run['threads']} | {row['variant']} | {row['median_ms']:.4g} | {row['x_fused']:.2f} | "
            f"{row['max_abs_diff_vs_fused']:.2e} |" for run in a["runs"] for row in run["rows"]]
    out += [""] + [f"Fused vs ALBEF loop, {run['threads']} thread(s): **{run['speedup']:.2f}x** (target >= 5x: "
                   f"**{met(run['target_met'])}**)." for run in a["runs"]]
    out += ["", "With more threads than free cores, each parallel op can wait a scheduler time slice for a "
            "descheduled worker thread: compare the thread counts above.", "",
            f"## (b) COTS training step, Lightning vs bare PyTorch ({sizes_str(b['sizes'])})", "",
            f"{b['steps']} timed steps after {b['warmup']} warm-up steps, {b['repeats']} repeats in alternating order "
            "(bare then Lightning, Lightning then bare, ...; per-repeat ratios from each pair), a fresh "
            "identically seeded model each run, the same pre-built batches. Same math: the two runs' final state "
            f"dicts (weights, momentum towers, queues, filter) differ by at most **{b['max_abs_state_diff']:.3g}**.",
            "",
            "| path | median samples/s | per repeat |", "|---|---|---|"]
    for path in ("bare", "lightning"):
        out.append(f"| {'bare PyTorch loop' if path == 'bare' else 'lightning.Trainer'} | {b['median_' + path]:.1f} | "
                   + ", ".join(f"{x:.1f}" for x in b["samples_per_s"][path]) + " |")
    out += [f"| ratio lightning / bare (target >= 0.97) | **{b['median_ratio']:.3f}** ({met(b['target_met'])}) | "
            + ", ".join(f"{x:.3f}" for x in b["ratios"]) + " |", "",
            "## (c) Share of the bare step in momentum update + enqueue + filter update", "",
            "| sizes | median step ms | EMA % | enqueue + filter % | **total % (target <= 3)** | "
            "momentum-key forward % (not in target) |", "|---|---|---|---|---|---|"]
    for name, sh in ((f"{sizes_str(b['sizes'])} ({b['repeats']} x {b['steps']} steps)", b["share"]),
                     (f"{sizes_str(c['sizes'])} ({c['timed_steps']} step(s) after 1 warm-up)", c)):
        out.append(f"| {name} | {sh['median_step_ms']:.0f} | {sh['ema_pct']:.2f} | {sh['enqueue_filter_pct']:.2f} | "
                   f"**{sh['target_pct']:.2f}** ({met(sh['target_pct'] <= 3)}) | "
                   f"{sh['momentum_keys_forward_pct']:.1f} |")
    out += ["", "The share depends on model and batch size: the EMA costs the same per step whatever the batch, "
            "while forward and backward grow with it, so small batches raise the share. Large sizes (without "
            "--smoke): the ViT-B/16 vision tower; the text tower is an open_clip transformer of BERT-base size "
            "(width 768, 12 layers, 12 heads, 49,409-token vocabulary), context 32. The filter stays in its "
            "300-step warm-up here (keeps every pair); queue size 2048 as in cots.yaml.", ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per run in (b)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed first steps per run in (b), >= 1")
    ap.add_argument("--repeats", type=int, default=4, help="interleaved repeats in (b); even = balanced order")
    ap.add_argument("--ema-repeats", type=int, default=5, help="timed rounds in (a), after one warm-up round")
    ap.add_argument("--large-steps", type=int, default=2, help="timed steps at ViT-B/BERT-base sizes in (c)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads; (a) is also timed at torch's default")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes and stand-ins, ~20 s")
    ap.add_argument("--out", type=Path, default=None,
                    help="output stem (.md, .json); default experiments/results/bench_cots (--smoke: a temp dir)")
    args = ap.parse_args()
    if args.smoke:
        args.steps, args.warmup, args.repeats, args.large_steps = min(args.steps, 3), 1, min(args.repeats, 2), 1
    args.out = args.out or (Path(tempfile.gettempdir()) / "bench_cots_smoke" if args.smoke else RESULTS / "bench_cots")
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    default_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    result = {"command": command(), "machine": machine(lightning=L.__version__),
              "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    print(f"machine {result['machine']}\n(a) EMA update", flush=True)
    result["ema"] = bench_ema(args.smoke, args.ema_repeats, list(dict.fromkeys([args.threads, default_threads])))
    small, large = (SMOKE, SMOKE_LARGE) if args.smoke else (EMBEDDED, VITB_BERT)
    with tempfile.TemporaryDirectory() as tmp:
        tok = {p: str(Path(tmp) / f"tok{p}.pt") for p in {small["patch"], large["patch"]}}
        for patch, path in tok.items():  # untrained: MVM costs the same, whatever the codes mean
            VisualTokenizer(downsample=patch).save(path)
        print(f"(b) COTS step, {sizes_str(small)}", flush=True)
        result["step"] = bench_step(small, tok[small["patch"]], args.steps, args.warmup, args.repeats)
        print(f"(c) share at {sizes_str(large)}", flush=True)
        times, _ = bare_run(large, tok[large["patch"]], make_batches(large, 1 + args.large_steps))
        result["share_large"] = {"sizes": large, **share(times, 1)}
    md = markdown(result)
    write_report(args.out, result, md)
    print(md + f"\nwrote {args.out}.md and .json")


if __name__ == "__main__":
    main()
