"""Exact cross-modal retrieval ranks, computed in chunks.

Why chunks: a 100K-image x 500K-caption evaluation has a 200 GB score matrix; a full argsort
of it is out of the question. Ranks only need *counts* ("how many negatives score above the
best positive"), so each block of image rows is scored by one matmul, compared against the
positive scores and reduced to counts, then discarded. Both directions come from the same
block, so the matmul is done once.

Definitions (scores are dot products; pass L2-normalised embeddings for cosine similarity):

* image->text (i2t): query image ``i``; its positives are all captions ``j`` with
  ``text_to_image[j] == i``. Rank = number of negative captions ranked above its *best*
  positive, so "hit at K" means any of its captions is in the top K. Images with no caption
  have no positive: they are left out of the i2t statistics (their rank is reported as -1),
  but they still compete as negatives in text->image.
* text->image (t2i): query caption ``j``; its single positive is image ``text_to_image[j]``.

Tie rule (deterministic): when a negative and a positive have the same score, the candidate
belonging to the lower-indexed image ranks first (for i2t the candidates are captions, and a
caption "belongs" to its image). This equals a stable descending sort over candidates listed
in image order, which is what a naive ``argsort(descending=True, stable=True)`` does when
captions are stored grouped by image.

Positive scores are computed once, ``p[j] = dot(image_emb[text_to_image[j]], text_emb[j])``
(by small block-diagonal matmuls, so they round like the matmul that scores the negatives),
and written into the positive entries of every score block before comparing, so a positive
never beats itself through float rounding and both directions and all chunkings agree.

Folds (COCO 1K): :func:`rank_folds` ranks each of ``num_folds`` contiguous, equal image folds
(with the captions of those images) on its own and averages every statistic over the folds.

Scores are computed in float32 (float64 if an input is float64; half inputs are upcast).
Counts are accumulated in float32 buffers (fast on CPU), which is exact for N, M < 2**24.
Memory: the embeddings, one caption-sorted copy of ``text_emb`` (skipped when captions are
already grouped by image), one score block of at most ``chunk_bytes`` (at least one row; on
CPU capped near 16 MiB when that still leaves >= 128 rows, because the comparisons then
re-read it from cache), a small comparison scratch buffer and O(N + M) index/count vectors.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

_EXACT_LIMIT = 2**24  # float32 represents every integer count below this exactly
_CPU_SCRATCH_BYTES = 2 * 2**20  # comparison scratch stays in L2 cache on CPU
_CPU_BLOCK_BYTES = 16 * 2**20  # on CPU, score blocks this small are re-read from cache...
_CPU_MIN_BLOCK_ROWS = 128  # ...as long as the matmul keeps enough rows to stay compute-bound
_GPU_SCRATCH_BYTES = 64 * 2**20  # on GPU, fewer and larger kernels matter more
_POSITIVE_BLOCK = 256  # images per block-diagonal matmul for the positive scores


def rank_retrieval(
    image_emb: Tensor,
    text_emb: Tensor,
    text_to_image: Tensor,
    ks: tuple[int, ...] = (1, 5, 10),
    chunk_bytes: int = 256 * 2**20,
    return_ranks: bool = False,
) -> dict:
    """Recall@K (percent), rsum, median and mean rank (1-based) in both directions.

    Returns python floats under ``i2t_r{k}``, ``t2i_r{k}`` (for each k), ``rsum``,
    ``i2t_medr``, ``i2t_meanr``, ``t2i_medr``, ``t2i_meanr``. With ``return_ranks=True`` it
    also returns the 0-based rank tensors ``i2t_ranks`` [N] (-1 for images without captions)
    and ``t2i_ranks`` [M] (in the caller's caption order). ``chunk_bytes`` is an upper bound on
    the score block (rows * M * element size). Runs on the embeddings' device.
    """
    ks = _validate(image_emb, text_emb, text_to_image, ks, chunk_bytes)
    dtype = torch.float64 if torch.float64 in (image_emb.dtype, text_emb.dtype) else torch.float32
    image_emb, text_emb = image_emb.to(dtype), text_emb.to(dtype)
    text_to_image = text_to_image.to(device=image_emb.device, dtype=torch.long)

    i2t, t2i = _ranks(image_emb, text_emb, text_to_image, chunk_bytes)
    out: dict = _summarise("i2t", i2t[i2t >= 0], ks)
    out.update(_summarise("t2i", t2i, ks))
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks)
    if return_ranks:
        out["i2t_ranks"], out["t2i_ranks"] = i2t, t2i
    return out


def rank_folds(image_emb: Tensor, text_emb: Tensor, text_to_image: Tensor, num_folds: int, **kwargs: Any) -> dict:
    """:func:`rank_retrieval` within each of ``num_folds`` contiguous equal image folds; the mean
    of every output over folds (all outputs are per-fold statistics, so a plain mean is the protocol)."""
    n = image_emb.shape[0]
    if num_folds == 1:
        return rank_retrieval(image_emb, text_emb, text_to_image, **kwargs)
    if kwargs.get("return_ranks"):
        raise ValueError("return_ranks is not supported with num_folds > 1 (ranks are per fold)")
    if n % num_folds:
        raise ValueError(f"num_folds={num_folds} needs the number of images to be a multiple of it, got {n}")
    size = n // num_folds
    results = []
    for k in range(num_folds):
        in_fold = (text_to_image >= k * size) & (text_to_image < (k + 1) * size)
        if not bool(in_fold.any()):
            raise ValueError(f"fold {k} (images {k * size}..{(k + 1) * size - 1}) has no captions")
        results.append(rank_retrieval(image_emb[k * size : (k + 1) * size], text_emb[in_fold],
                                      text_to_image[in_fold] - k * size, **kwargs))
    return {key: sum(r[key] for r in results) / num_folds for key in results[0]}


def check_ks(ks) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be a non-empty sequence of positive integers, got {ks}")
    return ks


def check_integer_ids(name: str, ids: Tensor) -> None:
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {ids.dtype}")


def check_text_to_image(text_to_image: Tensor, m: int, n: int, rows: str) -> None:
    """[M] integer image indices in [0, N): what every ranker of N images x M captions needs."""
    if text_to_image.shape != (m,):
        raise ValueError(f"text_to_image must have shape [M]=[{m}] (one image index per caption), got {tuple(text_to_image.shape)}")
    check_integer_ids("text_to_image", text_to_image)
    lo, hi = int(text_to_image.min()), int(text_to_image.max())
    if lo < 0 or hi >= n:
        raise ValueError(f"text_to_image values must lie in [0, N)=[0, {n}) ({rows}), got min {lo} max {hi}")


def _validate(image_emb: Tensor, text_emb: Tensor, text_to_image: Tensor, ks, chunk_bytes: int) -> tuple[int, ...]:
    """Fail early with messages naming the argument and what was expected."""
    if image_emb.ndim != 2 or image_emb.shape[0] == 0:
        raise ValueError(f"image_emb must have shape [N, D] with N >= 1, got {tuple(image_emb.shape)}")
    n, d = image_emb.shape
    if text_emb.ndim != 2 or text_emb.shape[0] == 0 or text_emb.shape[1] != d:
        raise ValueError(f"text_emb must have shape [M, D] with M >= 1 and D={d} (as image_emb), got {tuple(text_emb.shape)}")
    m = text_emb.shape[0]
    check_text_to_image(text_to_image, m, n, "rows of image_emb")
    if image_emb.device != text_emb.device:
        raise ValueError(f"image_emb and text_emb must be on the same device, got {image_emb.device} and {text_emb.device}")
    for name, emb in (("image_emb", image_emb), ("text_emb", text_emb)):
        if not emb.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {emb.dtype}")
        # a finite sum implies finite entries; only a non-finite sum needs the full check
        if not bool(torch.isfinite(emb.sum())) and not bool(torch.isfinite(emb).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
    if n >= _EXACT_LIMIT or m >= _EXACT_LIMIT:
        raise ValueError(f"N and M must be below {_EXACT_LIMIT} for exact float32 counting, got N={n}, M={m}")
    ks = check_ks(ks)
    if int(chunk_bytes) < 1:
        raise ValueError(f"chunk_bytes must be a positive number of bytes, got {chunk_bytes}")
    return ks


def _ranks(image_emb: Tensor, text_emb: Tensor, text_to_image: Tensor, chunk_bytes: int) -> tuple[Tensor, Tensor]:
    """0-based ranks: i2t [N] (-1 where an image has no caption), t2i [M] in input order."""
    n, m = image_emb.shape[0], text_emb.shape[0]
    order = None
    if m > 1 and bool((text_to_image[1:] < text_to_image[:-1]).any()):
        order = torch.argsort(text_to_image, stable=True)  # group captions by image, keep their order
        text_emb, text_to_image = text_emb[order], text_to_image[order]
    bounds = torch.searchsorted(text_to_image, torch.arange(n + 1, device=text_emb.device)).tolist()
    p = _positive_scores(image_emb, text_emb, text_to_image, bounds, chunk_bytes)
    has_caption = torch.bincount(text_to_image, minlength=n) > 0
    best = torch.full((n,), float("inf"), dtype=p.dtype, device=p.device)  # +inf: no caption, counts 0
    best.scatter_reduce_(0, text_to_image, p, reduce="amax", include_self=False)

    i2t_cnt, t2i_cnt = _count_all(image_emb, text_emb, text_to_image, p, best, bounds, chunk_bytes)
    i2t = torch.where(has_caption, i2t_cnt.long(), -1)
    t2i = t2i_cnt.long()
    if order is not None:
        t2i = torch.empty_like(t2i).index_copy_(0, order, t2i)
    return i2t, t2i


def _positive_scores(image_emb: Tensor, text_emb: Tensor, g: Tensor, bounds: list[int], chunk_bytes: int) -> Tensor:
    """p[j] = <image g[j], caption j>, taken from small block-diagonal matmuls.

    Why matmul rather than a row-wise dot: the negatives come from a matmul, and with the same
    kernel the positives then carry the same rounding as every other entry (here: bitwise equal
    to ``image_emb @ text_emb.T``), so results match a naive full-matrix evaluation.
    """
    n = image_emb.shape[0]
    p = torch.empty(text_emb.shape[0], dtype=text_emb.dtype, device=text_emb.device)
    a = 0
    while a < n:
        b = min(n, a + _POSITIVE_BLOCK)
        while b > a + 1 and (b - a) * (bounds[b] - bounds[a]) * p.element_size() > chunk_bytes:
            b = a + (b - a) // 2  # many captions per image: keep the block within chunk_bytes
        lo, hi = bounds[a], bounds[b]
        if hi > lo:
            block = image_emb[a:b] @ text_emb[lo:hi].T
            p[lo:hi] = block[g[lo:hi] - a, torch.arange(hi - lo, device=p.device)]
        a = b
    return p


def _count_all(image_emb, text_emb, g, p, best, bounds, chunk_bytes) -> tuple[Tensor, Tensor]:
    """Score image-row blocks with one matmul each and reduce them to rank counts."""
    n, m = image_emb.shape[0], text_emb.shape[0]
    dev, dt = image_emb.device, image_emb.dtype
    chunk_rows = min(n, max(1, chunk_bytes // (m * image_emb.element_size())))
    if dev.type == "cpu":
        chunk_rows = min(chunk_rows, max(_CPU_MIN_BLOCK_ROWS, _CPU_BLOCK_BYTES // (m * image_emb.element_size())))
    scratch = _CPU_SCRATCH_BYTES if dev.type == "cpu" else _GPU_SCRATCH_BYTES
    slice_rows = min(chunk_rows, max(1, scratch // (m * 4)))
    scores = torch.empty(chunk_rows, m, dtype=dt, device=dev)
    work = torch.empty(slice_rows, m, dtype=torch.float32, device=dev)
    colsum = torch.empty(m, dtype=torch.float32, device=dev)
    i2t = torch.zeros(n, dtype=torch.float32, device=dev)
    t2i = torch.zeros(m, dtype=torch.float64, device=dev)
    image_ids = torch.arange(n, device=dev)
    for a in range(0, n, chunk_rows):
        b = min(a + chunk_rows, n)
        s = torch.mm(image_emb[a:b], text_emb.T, out=scores[: b - a])
        lo, hi = bounds[a], bounds[b]
        s.index_put_((g[lo:hi] - a, torch.arange(lo, hi, device=dev)), p[lo:hi])  # exact positives
        for r in range(a, b, slice_rows):
            e = min(r + slice_rows, b)
            rows = image_ids[r:e]
            _count_slice(s[r - a : e - a], rows, bounds[r], bounds[e], g, p, best, work[: e - r], colsum, i2t[r:e], t2i)
    return i2t, t2i


def _count_slice(s, rows, lo, hi, g, p, best, work, colsum, i2t_out, t2i) -> None:
    """Counts for image rows ``rows`` (scores ``s``); their own captions are columns [lo, hi).

    Captions left of ``lo`` belong to lower images (a tie ranks them first: i2t counts
    ``>=``, t2i counts ``>``); captions right of ``hi`` belong to higher images (the
    reverse). The small middle block mixes both and is resolved entry by entry.
    """
    pb = best[rows].unsqueeze(1)
    mid, g_mid, p_mid = s[:, lo:hi], g[lo:hi], p[lo:hi]
    caption_first = g_mid.unsqueeze(0) < rows.unsqueeze(1)  # caption's image < row: wins ties
    row_first = rows.unsqueeze(1) < g_mid.unsqueeze(0)  # row image < caption's image: wins ties
    # image -> text: row i counts negative captions above its best positive
    torch.ge(s[:, :lo], pb, out=work[:, :lo])
    torch.gt(s[:, hi:], pb, out=work[:, hi:])
    work[:, lo:hi] = (mid > pb) | ((mid == pb) & caption_first)  # own captions: mid <= pb, never counted
    torch.sum(work, 1, out=i2t_out)
    # text -> image: column j counts rows (negative images) above its positive
    torch.gt(s[:, :lo], p[:lo], out=work[:, :lo])
    torch.ge(s[:, hi:], p[hi:], out=work[:, hi:])
    work[:, lo:hi] = (mid > p_mid) | ((mid == p_mid) & row_first)  # the positive row: equal, not above
    t2i.add_(torch.sum(work, 0, out=colsum))


def _summarise(direction: str, ranks: Tensor, ks: tuple[int, ...]) -> dict:
    """Recall@K as ``100.0 * hits / n``; medr = floor(median 0-based rank) + 1 (as in VSE++)."""
    n = ranks.numel()
    out = {f"{direction}_r{k}": 100.0 * int((ranks < k).sum()) / n for k in ks}
    srt = torch.sort(ranks).values
    out[f"{direction}_medr"] = float((int(srt[(n - 1) // 2]) + int(srt[n // 2])) // 2 + 1)
    out[f"{direction}_meanr"] = int(ranks.sum()) / n + 1.0
    return out
