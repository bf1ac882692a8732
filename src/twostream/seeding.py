"""Every seed the project derives, in one place.

Why one module: exact resume and DDP correctness both hang on how seeds are mixed. A random draw
must depend only on *what* it is for (run seed, optimizer step, batch, rank, sample key, epoch),
never on how much global RNG something else consumed, and draws made per batch must differ
between ranks (else every rank would mask the same positions and sample the same negatives).
Each function below is one kind of draw; the formulas are fixed (changing one changes every run's
numbers), the multipliers are primes so different parts cannot cancel.
"""
from __future__ import annotations

import hashlib
import os
import random

import torch

_MAX = 2**63 - 1


def run_seed() -> int:
    """The run's seed: what ``seed_everything`` (LightningCLI's ``seed_everything:``) set, else 0."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def step_seed(step: int, batch_idx: int, rank: int, seed: int | None = None) -> int:
    """Seed of one training batch: (run seed, optimizer step, batch index, rank), rank always in."""
    seed = run_seed() if seed is None else seed
    return (((seed * 1_000_003 + int(step)) * 100_003 + int(batch_idx)) * 1_009 + int(rank)) % _MAX


def step_generator(step: int, batch_idx: int, rank: int, seed: int | None = None) -> torch.Generator:
    """A CPU generator for one training batch's masks and negatives (drawn on the CPU, then moved:
    the draw is identical on every device type)."""
    return torch.Generator().manual_seed(step_seed(step, batch_idx, rank, seed))


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of one epoch's shuffle (the same on every rank: the sampler then shards the order)."""
    return int(seed) * 100_003 + int(epoch)


def sample_rng(seed: int, key: int, attempt: int = 0) -> random.Random:
    """Per-sample choices (which caption, which frames) from (seed, sample key); ``attempt`` > 0
    when a sample is re-drawn (e.g. after an unreadable video). Keys are global sample ids, so
    these draws need no rank: two ranks never hold the same key in one epoch."""
    return random.Random(int(seed) * 1_000_003 + int(key) if attempt == 0 else f"{seed}/{key}/{attempt}")


def per_sample_step_seed(step: int, seed: int | None = None) -> int:
    """Seed of per-sample draws made at an optimizer step (e.g. near-miss captions), to be combined
    with each sample's global key (:func:`stable_seed`): independent of batch composition and rank."""
    seed = run_seed() if seed is None else seed
    return int(seed) * 1_000_003 + int(step)


def stable_seed(namespace: str, *parts: int) -> int:
    """A 64-bit seed from a namespace and integers, stable across processes and Python versions
    (``hash()`` of a str is salted per process)."""
    text = "/".join([namespace, *(str(int(p)) for p in parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
