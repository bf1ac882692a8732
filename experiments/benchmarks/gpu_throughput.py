"""Throughput of one full COTS training step on one GPU, bf16 autocast: samples/s, step time, peak memory, MFU.

    python experiments/benchmarks/gpu_throughput.py                          # ViT-B/16 + BERT-base, batch 32 64 128
    python experiments/benchmarks/gpu_throughput.py --batch-size 64 --steps 50 --warmup 10
    python experiments/benchmarks/gpu_throughput.py --tiny --device cpu --steps 2 --warmup 1   # tests, seconds

Model (per batch-size setting, freshly built and seeded): vision = open_clip ViT-B/16 at 224 px (random init);
text = ``HFTextTower`` with ``config: {model_type: bert}`` at BERT-base sizes (hidden 768, 12 layers, 12 heads,
FFN 3072, vocabulary 30,522; random init) whose tokenizer is a throw-away local ``BertTokenizer`` over a
synthetic 30,522-entry vocabulary (the tower only needs its special ids; captions are never tokenized: each
row is [CLS] + random ids + [SEP], ``--context`` tokens, all real); embed dim 256; momentum towers + queue
(``--queue-size``, pre-filled with random keys so every step pays the full queue cost); heads as in
experiments/pretrain/cots.yaml: MomentumContrastive, MLM (15 %), MVM (40 % block masking; an untrained
frozen VisualTokenizer with the tower's 14x14 grid: its cost does not depend on its weights), KLAlignment;
the adaptive filter with ``warmup_steps=0`` so its keep rule is live. Images are random tensors already on
the device (no data loading, no host-to-device copy of images).

One step = forward (online towers, momentum keys, filter, four heads incl. the MLM/MVM re-encodes) and
loss in bf16 autocast (fp32 weights), backward, AdamW + LR schedule, temperature clamp, then what
TrainingStateCallback does: EMA of the momentum towers, filter statistics, enqueue. The first step of each
setting runs under ``torch.utils.flop_counter.FlopCounterMode`` (counting, untimed), then ``--warmup``
untimed steps, then ``--steps`` timed ones, each ended by ``torch.cuda.synchronize()``.

FLOPs are *counted*, not estimated: FlopCounterMode records every matmul / conv / attention op the step
dispatches, forward and backward separately (forward includes the no-grad momentum-tower and tokenizer
forwards, which have no backward). Element-wise work (norms, softmax, optimizer, EMA) is not counted.
MFU = counted FLOPs per step / step time / peak dense bf16 FLOP/s of the GPU.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for report.py
from report import command, cpu_model, machine, write_report  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
PEAK_BF16_TFLOPS = [("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0)]  # dense, no sparsity
FULL = dict(image=224, patch=16, width=768, layers=12, head_width=64, hidden=768, t_layers=12, t_heads=12,
            ffn=3072, vocab=30522, embed=256)  # open_clip ViT-B/16 vision; BERT-base text
TINY = dict(image=32, patch=8, width=32, layers=1, head_width=16, hidden=32, t_layers=1, t_heads=2, ffn=64,
            vocab=512, embed=32)
MOMENTUM = 0.995


def peak_tflops(device_name: str, override: float | None) -> tuple[float | None, str]:
    if override:
        return override, "--peak-tflops"
    for key, tflops in PEAK_BF16_TFLOPS:
        if all(part in device_name for part in key.split()):
            return tflops, f"table: {key}"
    return None, "unknown device: give --peak-tflops"


def bert_tokenizer_dir(vocab: int, root: str) -> str:
    """A local BertTokenizer over a synthetic vocabulary of ``vocab`` entries (special tokens 0-4)."""
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(vocab - 5)]
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(root)
    return root


def build_model(s: dict, context: int, queue_size: int, tmp: str, device: torch.device):
    from twostream.encoder import TwoStreamEncoder
    from twostream.methods.cots import (AdaptiveMomentumFilter, KLAlignment, MaskedLanguageModeling,
                                        MaskedVisionModeling, MomentumContrastive, MomentumQueue)
    from twostream.methods.cots.tokenizer import VisualTokenizer
    from twostream.towers import HFTextTower, OpenCLIPVisionTower

    torch.manual_seed(0)
    tok = f"{tmp}/vqvae_{s['patch']}.pt"
    tiny = dict(hidden=16, codebook_size=32, code_dim=8) if s is TINY else {}
    VisualTokenizer(downsample=s["patch"], **tiny).save(tok)
    vision = OpenCLIPVisionTower(config=dict(image_size=s["image"], patch_size=s["patch"], width=s["width"],
                                             layers=s["layers"], head_width=s["head_width"]), embed_dim=s["embed"])
    text = HFTextTower(config=dict(model_type="bert", vocab_size=s["vocab"], hidden_size=s["hidden"],
                                   num_hidden_layers=s["t_layers"], num_attention_heads=s["t_heads"],
                                   intermediate_size=s["ffn"], max_position_embeddings=max(512, context)),
                       tokenizer=bert_tokenizer_dir(s["vocab"], f"{tmp}/bert_tok"), max_length=context)
    heads = [MomentumContrastive(), MaskedLanguageModeling(weight=1.0, mask_prob=0.15),
             MaskedVisionModeling(tokenizer=tok, weight=1.0, mask_ratio=0.4, masking="block"),
             KLAlignment(weight=1.0, direction="i2t_t2i", stop_grad_target=True)]
    model = TwoStreamEncoder(vision, text, heads=heads, embed_dim=s["embed"], temperature=0.07, lr=1e-3,
                             weight_decay=0.1, warmup_steps=100, total_steps=10_000,
                             state={"momentum": MomentumQueue(queue_size=queue_size, momentum=MOMENTUM),
                                    "filter": AdaptiveMomentumFilter(k=2.0, momentum=0.99, warmup_steps=0)})
    model = model.to(device).train()
    q = model.state["momentum"]
    with torch.no_grad():  # a full queue: every step pays for queue_size negatives, as in steady state
        q.image_queue.copy_(torch.nn.functional.normalize(torch.randn_like(q.image_queue), dim=-1))
        q.text_queue.copy_(torch.nn.functional.normalize(torch.randn_like(q.text_queue), dim=-1))
        q.filled.fill_(queue_size)
    return model


def make_batch(s: dict, batch: int, context: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, s["vocab"], (batch, context), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
    return {"image": torch.randn(batch, 3, s["image"], s["image"], generator=g).to(device),
            "input_ids": ids.to(device), "attention_mask": torch.ones(batch, context, dtype=torch.bool, device=device),
            "image_index": torch.arange(batch, device=device)}


def flop_counter() -> "torch.utils.flop_counter.FlopCounterMode":
    """FlopCounterMode that also counts the CPU flash-attention kernels (the CUDA ones are built in)."""
    from torch.utils import flop_counter as fc

    aten, extra = torch.ops.aten, {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        extra[aten._scaled_dot_product_flash_attention_for_cpu] = fc.sdpa_flop.__wrapped__  # unwrapped: shape-wrapped again
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        extra[aten._scaled_dot_product_flash_attention_for_cpu_backward] = fc.sdpa_backward_flop.__wrapped__
    return fc.FlopCounterMode(display=False, custom_mapping=extra)


class Stepper:
    """The bare COTS step (as experiments/benchmarks/cots_step.py's bare loop), in bf16 autocast."""

    def __init__(self, model, device: torch.device):
        self.model, self.device, self.i = model, device, 0
        cfg = model.configure_optimizers()
        self.opt, self.sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
        self.min_log_t = float(torch.tensor(model.hparams.min_temperature).log())

    def __call__(self, batch: dict, count: bool = False) -> tuple[int, int]:
        m = self.model
        fwd, bwd = (flop_counter(), flop_counter()) if count else (contextlib.nullcontext(), contextlib.nullcontext())
        batch = dict(batch, image_index=batch["image_index"] + self.i * len(batch["image_index"]))
        with fwd, torch.autocast(self.device.type, dtype=torch.bfloat16):
            out = m(batch)
            out.generator = m.step_generator(self.i)
            carry = m.annotate(out, batch)
            loss, _ = m.objective(out, batch)
        with bwd:
            loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.sched.step()
        with torch.no_grad():
            m.log_temperature.clamp_(min=self.min_log_t)
            for state in m.state.values():  # what TrainingStateCallback does after the optimizer step
                state.update(carry, self.i, 10_000)
        self.i += 1
        return (fwd.get_total_flops(), bwd.get_total_flops()) if count else (0, 0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_setting(s: dict, batch: int, args, device: torch.device, peak: float | None, tmp: str) -> dict:
    row: dict = {"batch_size": batch, "queue_size": max(args.queue_size, batch)}
    model = None
    try:
        model = build_model(s, args.context, row["queue_size"], tmp, device)
        row["parameters_trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        step, data = Stepper(model, device), make_batch(s, batch, args.context, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        fwd, bwd = step(data, count=True)
        for _ in range(args.warmup):
            step(data)
        sync(device)
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            step(data)
            sync(device)
            times.append(time.perf_counter() - t0)
        total = sum(times)
        row.update(status="ok", step_ms_median=1e3 * statistics.median(times), step_ms_mean=1e3 * total / len(times),
                   samples_per_s=batch * len(times) / total, flops_forward=fwd, flops_backward=bwd,
                   flops_per_step=fwd + bwd, achieved_tflops=(fwd + bwd) * len(times) / total / 1e12,
                   peak_memory_gib=torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None)
        row["mfu"] = row["achieved_tflops"] / peak if peak else None
    except torch.cuda.OutOfMemoryError:
        row["status"] = "OOM"
    finally:
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def fmt(x, spec: str, none: str = "n/a") -> str:
    return none if x is None else format(x, spec)


def markdown(r: dict) -> str:
    m, c = r["machine"], r["config"]
    sizes = ("tiny stand-ins (--tiny): the numbers only show that the script runs" if c["tiny"] else
             "open_clip ViT-B/16 at 224 px + BERT-base (HFTextTower, model_type bert: 768 x 12 layers, 12 heads)")
    out = ["# COTS training step throughput (bf16 autocast)", "", f"Command: `{r['command']}`", "",
           f"Device: **{m['device_name']}** ({m['device']}), torch {m['torch']} (CUDA {m['cuda']}), Python "
           f"{m['python']}, host CPU {m['cpu']}, {m['date']}.", "",
           f"Model: {sizes}; embed {r['sizes']['embed']}, context {c['context']} tokens, momentum towers + queue, "
           "heads MomentumContrastive + MLM + MVM + KLAlignment, adaptive filter live. Random images on the device, "
           "random token ids (no data loading).", "",
           f"Each setting: 1 FLOP-counting step, {c['warmup']} warm-up step(s), {c['steps']} timed step(s) (each ended by "
           "a device synchronize). A step = forward + loss + backward + AdamW + EMA + filter + enqueue.", "",
           f"Peak dense bf16: {fmt(r['peak_tflops'], '.0f')} TFLOP/s ({r['peak_source']}).", "",
           "| batch | samples/s | step ms (median) | step ms (mean) | peak memory GiB | TFLOP/step fwd | "
           "TFLOP/step bwd | TFLOP/step total | achieved TFLOP/s | MFU |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in r["results"]:
        if row["status"] != "ok":
            out.append(f"| {row['batch_size']} | {row['status']} |" + " |" * 8)
            continue
        out.append(f"| {row['batch_size']} | {row['samples_per_s']:.1f} | {row['step_ms_median']:.1f} | "
                   f"{row['step_ms_mean']:.1f} | {fmt(row['peak_memory_gib'], '.2f')} | {row['flops_forward'] / 1e12:.4g} | "
                   f"{row['flops_backward'] / 1e12:.4g} | {row['flops_per_step'] / 1e12:.4g} | "
                   f"{row['achieved_tflops']:.4g} | {fmt(row['mfu'] and 100 * row['mfu'], '.1f')}{'' if row['mfu'] is None else ' %'} |")
    out += ["", "FLOPs: counted with `torch.utils.flop_counter.FlopCounterMode` over one whole step, forward and "
            "backward separately (forward includes the no-grad momentum-tower and visual-tokenizer forwards); "
            "matmul, conv and attention ops only (element-wise work, optimizer and EMA are not counted). "
            "MFU = counted FLOPs per step / mean step time / peak dense bf16 FLOP/s. Peak memory: "
            "`torch.cuda.max_memory_allocated` from model build on (fp32 weights, momentum copies, AdamW state, "
            "activations).", ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, nargs="+", default=[32, 64, 128], help="one setting per value")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps per setting after the FLOP-counting one")
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu (tests; bf16 autocast on CPU)")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (tests)")
    ap.add_argument("--context", type=int, default=None, help="text tokens per caption (default 32; --tiny 16)")
    ap.add_argument("--queue-size", type=int, default=2048, help="momentum queue (cots.yaml: 2048); >= batch")
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak dense bf16 TFLOP/s, overrides the table")
    ap.add_argument("--out", type=Path, default=RESULTS / "gpu", help="output stem: <out>.md and <out>.json")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"error: --device {args.device} requested but no CUDA device is available (torch {torch.__version__}, "
              f"built with CUDA {torch.version.cuda}); run on a GPU machine, or pass --device cpu", file=sys.stderr)
        sys.exit(2)
    if args.steps < 1 or args.warmup < 0:
        ap.error("--steps must be >= 1 and --warmup >= 0")
    args.context = args.context or (16 if args.tiny else 32)
    warnings.filterwarnings("ignore")
    import logging
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # any fp32 matmul left outside autocast may use TF32
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU: {cpu_model()}"
    peak, source = peak_tflops(name if device.type == "cuda" else "", args.peak_tflops)
    s = TINY if args.tiny else FULL
    result = {"command": command(), "sizes": s, "peak_tflops": peak,
              "peak_source": source if device.type == "cuda" or peak else "CPU: no peak (give --peak-tflops)",
              "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "machine": machine(device=str(device), device_name=name, cuda=torch.version.cuda), "results": []}
    print(f"device {name}; peak {peak} TFLOP/s ({source})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batch_size:
            row = run_setting(s, batch, args, device, peak, tmp)
            result["results"].append(row)
            print(f"  batch {batch}: " + (f"{row['samples_per_s']:.1f} samples/s, {row['step_ms_median']:.1f} ms/step, "
                                          f"{row['flops_per_step'] / 1e9:.2f} GFLOP/step" if row["status"] == "ok"
                                          else row["status"]), flush=True)
    md = markdown(result)
    write_report(args.out, result, md)
    print(md + f"\nwrote {args.out}.md and .json")


if __name__ == "__main__":
    main()
