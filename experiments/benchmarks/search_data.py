"""Galleries and queries for experiments/benchmarks/search.py.

``random``: unit vectors drawn uniformly on the sphere, queries likewise: nothing for an approximate
index to exploit (every distance concentrates near the same value), the worst case.
``structured``: what a trained model's embeddings look like, at sizes no real gallery here has. The
default model embeds the 10,000 training images and 5,000 test captions (`twostream embed`); at 10K the
gallery *is* those image embeddings, above that it is Gaussian draws with their mean and covariance
(normalised), and the queries are the real caption embeddings throughout.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):  # in blocks: never a float64 copy of the whole gallery
        block = rng.standard_normal((min(100_000, n - s), dim), dtype=np.float32)
        out[s:s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def real_embeddings(ckpt: str, work: Path) -> tuple[np.ndarray, np.ndarray]:
    """(training-image embeddings [10000, d], test-caption embeddings [5000, d]) of ``ckpt``, embedded once
    with `twostream embed` into ``work`` (re-used while the checkpoint is the same)."""
    from twostream.retrieval import embed
    from twostream.retrieval.model import file_sha256
    from twostream.retrieval.shards import iter_shards

    work = Path(work) / file_sha256(ckpt)[:12]
    out = []
    for split, modality in (("train", "image"), ("test", "text")):
        folder = work / f"{split}_{modality}"
        embed(folder, ckpt, split=split, modality=modality, progress=False)
        out.append(np.concatenate([np.asarray(s.embeddings, np.float32) for s in iter_shards(folder)]))
    return out[0], out[1]


def like(real: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` normalised Gaussian draws with the mean and covariance of ``real``."""
    rng = np.random.default_rng(seed)
    mean, cov = real.mean(0), np.cov(real, rowvar=False)
    values, vectors = np.linalg.eigh(cov)
    root = (vectors * np.sqrt(np.clip(values, 0, None))).astype(np.float32)
    out = np.empty((n, real.shape[1]), np.float32)
    for s in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - s), real.shape[1]), dtype=np.float32) @ root.T + mean
        out[s:s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def gallery_and_queries(kind: str, n: int, dim: int, queries: int, real: tuple | None) -> tuple[np.ndarray, np.ndarray]:
    if kind == "random":
        return unit_vectors(n, dim, seed=n), unit_vectors(queries, dim, seed=1)
    images, captions = real
    gallery = images[:n] if n <= len(images) else like(images, n, seed=n)
    return gallery, captions[:queries]
