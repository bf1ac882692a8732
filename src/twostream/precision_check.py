"""Warn when a 16-bit precision would run emulated on this CPU, with the measured slowdown and what to use.

Why: 16-bit kernels on a CPU are fast only where the CPU has the instructions for them (oneDNN's bf16
path needs AVX512-BF16 or AMX; its fp16 path needs AVX512-FP16 or AMX-FP16); elsewhere every matmul and
convolution falls back to a slow reference path. Measured on this project's 2-core AMD EPYC (AVX512-BF16,
no fp16 instructions; docs/performance.md): autocast to fp16 made a training step 4.2x slower than fp32
on the embedded default's towers and 11.3x on a one-layer ViT-B/32 + text tower; open_clip_train's default
``--precision amp`` (fp16 autocast) on ViT-B-32 took 265-294 s per step against 6.9 s in fp32. bf16
autocast on the same CPU was 0.75-0.9x the fp32 step time (native); with oneDNN held to AVX2
(``ONEDNN_MAX_CPU_ISA=AVX2``, a CPU without bf16 instructions) it was 9.5x slower. GPU runs are not checked:
configs that train on GPUs keep ``bf16-mixed``.
"""
from __future__ import annotations

import warnings

import torch


class PrecisionWarning(UserWarning):
    """A trainer precision that this machine runs far slower than fp32."""


SLOWDOWN = {"bf16": "9.5x (one-layer ViT-B/32 + text tower, oneDNN without bf16 instructions)",
            "fp16": "4.2-11.3x (tiny to one-layer ViT-B/32 towers; open_clip_train's fp16 amp on ViT-B-32: ~40x)"}
_warned: set[tuple[str, str]] = set()


def native_support() -> dict[str, bool]:
    """Whether oneDNN has native bf16 / fp16 kernels on this CPU."""
    mkldnn = getattr(torch.ops, "mkldnn", None)

    def ask(name: str) -> bool:
        try:
            return bool(getattr(mkldnn, name)())
        except (AttributeError, RuntimeError):
            return False

    return {"bf16": ask("_is_mkldnn_bf16_supported"), "fp16": ask("_is_mkldnn_fp16_supported")}


def precision_problem(precision: str, device_type: str, support: dict[str, bool] | None = None) -> str | None:
    """The warning for ``precision`` (Lightning's string: "bf16-mixed", "16-true", ...) on ``device_type``,
    or None when it is fine there."""
    precision = str(precision)
    if device_type != "cpu":
        return None
    dtype = "bf16" if precision.startswith("bf16") else "fp16" if precision.startswith("16") else None
    if dtype is None:
        return None
    support = native_support() if support is None else support
    if support.get(dtype, False):
        return None
    other = " (or --trainer.precision=bf16-mixed: this CPU has native bf16)" if dtype == "fp16" and support.get(
        "bf16") else ""
    return (f"precision={precision} on a CPU without native {dtype} kernels (oneDNN reports none; cpu capability "
            f"{torch.backends.cpu.get_cpu_capability()}): {dtype} runs emulated, measured {SLOWDOWN[dtype]} slower "
            f"per step than fp32. Use --trainer.precision=32-true{other}.")


def warn_precision(trainer) -> str | None:
    """Warn once per (precision, device) for ``trainer``; return the message (None when fine)."""
    device = getattr(getattr(trainer.strategy, "root_device", None), "type", "cpu")
    message = precision_problem(trainer.precision, device)
    if message and (str(trainer.precision), device) not in _warned:
        _warned.add((str(trainer.precision), device))
        warnings.warn(message, PrecisionWarning, stacklevel=2)
    return message
