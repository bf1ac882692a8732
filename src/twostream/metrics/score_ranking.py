"""Cross-modal Recall@K from a precomputed image x caption score matrix.

Why: :func:`~twostream.metrics.ranking.rank_retrieval` scores embeddings by dot products, which a
cross-encoder (one score per image-caption pair) or a re-ranker (cheap scores replaced by expensive
ones for the top candidates) cannot express. This takes the scores instead and reports exactly
what ``rank_retrieval`` reports, with the same definitions and the same tie rule, so numbers from
both are comparable (``recall_from_scores(I @ T.T, t2i) == rank_retrieval(I, T, t2i)``):

* i2t: rank of image ``i`` = number of captions of *other* images above its best caption; images
  with no caption are left out of the i2t statistics but still compete in t2i.
* t2i: rank of caption ``j`` = number of other images above image ``text_to_image[j]``.
* Ties: the candidate belonging to the lower-indexed image ranks first (a stable descending sort
  over candidates listed in image order).

The two directions may use different matrices (``scores_t2i``): a re-ranker picks its candidates
per query, so the image-query and caption-query score matrices differ. Scores may be ``-inf``
(e.g. candidates a re-ranker did not score), never NaN. Scores are compared in their own dtype.
Temporaries are bounded by processing blocks of image rows; the score matrices themselves are the
caller's and are only read.
"""
from __future__ import annotations

import torch
from torch import Tensor

from twostream.metrics.ranking import _summarise, check_ks, check_text_to_image

_BLOCK_ELEMENTS = 2**22  # score entries per block of image rows: a few boolean temporaries of ~4 MB


def recall_from_scores(
    scores_i2t: Tensor,
    text_to_image: Tensor,
    ks: tuple[int, ...] = (1, 5, 10),
    scores_t2i: Tensor | None = None,
) -> dict:
    """Recall@K (percent), rsum, median and mean rank (1-based) in both directions.

    ``scores_i2t`` [N, M]: score of image ``i`` with caption ``j`` as seen by image queries;
    ``scores_t2i`` [N, M] (default: ``scores_i2t``) the same as seen by caption queries;
    ``text_to_image`` [M]: the image of each caption. Returns python floats under the keys of
    :func:`~twostream.metrics.ranking.rank_retrieval`: ``i2t_r{k}``, ``t2i_r{k}``, ``rsum``,
    ``i2t_medr``, ``i2t_meanr``, ``t2i_medr``, ``t2i_meanr``.
    """
    scores_t2i = scores_i2t if scores_t2i is None else scores_t2i
    ks = _validate(scores_i2t, scores_t2i, text_to_image, ks)
    n, m = scores_i2t.shape
    dev = scores_i2t.device
    g = text_to_image.to(device=dev, dtype=torch.long)
    p = scores_t2i[g, torch.arange(m, device=dev)]  # each caption's score with its own image
    owner = g.unsqueeze(0)  # [1, M]
    i2t = torch.empty(n, dtype=torch.long, device=dev)
    t2i = torch.zeros(m, dtype=torch.long, device=dev)
    rows = max(1, _BLOCK_ELEMENTS // m)
    for a in range(0, n, rows):
        image = torch.arange(a, min(n, a + rows), device=dev).unsqueeze(1)  # [r, 1]
        own = owner == image  # caption j belongs to row image i: a positive, never counted
        lower = owner < image  # caption's image precedes the row image: the caption wins i2t ties
        s = scores_i2t[a : a + rows]
        best = s.masked_fill(~own, float("-inf")).amax(1, keepdim=True)
        i2t[a : a + rows] = (((s > best) | ((s == best) & lower)) & ~own).sum(1)
        s = scores_t2i[a : a + rows]
        higher = ~(lower | own)  # row image precedes the caption's image: the row wins t2i ties
        t2i += (((s > p) | ((s == p) & higher)) & ~own).sum(0)
    has_caption = torch.bincount(g, minlength=n) > 0
    out: dict = _summarise("i2t", i2t[has_caption], ks)
    out.update(_summarise("t2i", t2i, ks))
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks)
    return out


def _validate(scores_i2t: Tensor, scores_t2i: Tensor, text_to_image: Tensor, ks) -> tuple[int, ...]:
    """Fail early with messages naming the argument and what was expected."""
    if scores_i2t.ndim != 2 or 0 in scores_i2t.shape:
        raise ValueError(f"scores_i2t must have shape [N, M] with N, M >= 1, got {tuple(scores_i2t.shape)}")
    n, m = scores_i2t.shape
    if scores_t2i.shape != (n, m):
        raise ValueError(f"scores_t2i must have the shape of scores_i2t [{n}, {m}], got {tuple(scores_t2i.shape)}")
    if scores_t2i.device != scores_i2t.device:
        raise ValueError(f"scores_i2t and scores_t2i must be on the same device, got {scores_i2t.device} and {scores_t2i.device}")
    for name, s in (("scores_i2t", scores_i2t), ("scores_t2i", scores_t2i)):
        if not s.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {s.dtype}")
        if bool(torch.isnan(s).any()):
            raise ValueError(f"{name} contains NaN (use -inf for pairs that were not scored)")
    check_text_to_image(text_to_image, m, n, "rows of the scores")
    return check_ks(ks)
