"""Within-modality retrieval: image->image and text->text Recall@K, computed in chunks.

Why: a dual encoder can score well across modalities while its image space ignores what the
captions describe (or its text space ignores wording), and cross-modal recall alone does not
show that. Here the positives of a query are the *other* items of its group: for images, images
with the same scene description (:func:`group_ids` over ``RetrievalSplit.scenes``); for
captions, the other captions of the same image (``text_to_image`` is already such a group id).

Definitions (scores are dot products; pass L2-normalised embeddings for cosine similarity):

* Every item is a query against all *other* items; the query itself is never a candidate (it
  would trivially score highest against itself and make R@1 meaningless).
* Rank (0-based) = number of other-group items scoring strictly above the query's best positive,
  so "hit at K" means some same-group item is in the top K. Ties go to the positive: a negative
  with exactly the best positive's score does not count. (There is no item order to break ties
  by as in :mod:`twostream.metrics.ranking`, and duplicates of a scene are common here.)
* Items whose group has no other member have no positive and are left out (``num_queries``
  says how many remain); they still compete as negatives. With no query at all the recalls
  and ``medr`` are NaN rather than an error: a small split may simply contain no repeated scene.

Memory: one score block of ``chunk_rows`` x N plus same-size boolean masks; nothing N x N.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from twostream.metrics.ranking import _summarise as summarise_ranks
from twostream.metrics.ranking import check_integer_ids, check_ks


def group_ids(labels: Sequence[str]) -> Tensor:
    """Long tensor [len(labels)]: equal strings get equal ids, numbered by first appearance.

    Why: groups are given by labels (scene descriptions), the metric wants integers to compare.
    """
    ids: dict[str, int] = {}
    return torch.tensor([ids.setdefault(label, len(ids)) for label in labels], dtype=torch.long)


def unimodal_recall(emb: Tensor, groups: Tensor, ks: tuple[int, ...] = (1, 5, 10), chunk_rows: int = 1024) -> dict:
    """Recall@K (percent) as ``r{k}``, median 1-based rank ``medr`` and ``num_queries``.

    ``emb`` [N, D] is scored against itself; ``groups`` [N] (integers) says which items are
    positives of each other. Runs on ``emb``'s device, ``chunk_rows`` query rows at a time.
    """
    ks = _validate(emb, groups, ks, chunk_rows)
    chunk_rows = int(chunk_rows)
    if not emb.is_floating_point() or emb.dtype in (torch.float16, torch.bfloat16):
        emb = emb.float()
    groups = groups.to(device=emb.device, dtype=torch.long)
    _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    queries = torch.nonzero(counts[inverse] > 1).flatten()  # items with at least one positive
    ranks = torch.empty(queries.numel(), dtype=torch.long, device=emb.device)
    for a in range(0, queries.numel(), chunk_rows):
        q = queries[a : a + chunk_rows]
        scores = emb[q] @ emb.T  # [c, N]
        same = groups[q].unsqueeze(1) == groups.unsqueeze(0)
        positive = same.clone()
        positive[torch.arange(q.numel(), device=emb.device), q] = False  # the query is not its own positive
        best = scores.masked_fill(~positive, float("-inf")).amax(1, keepdim=True)
        ranks[a : a + q.numel()] = ((scores > best) & ~same).sum(1)  # ~same also drops the query
    return _summarise(ranks, ks)


def _summarise(ranks: Tensor, ks: tuple[int, ...]) -> dict:
    """``ranking._summarise``'s conventions (percent hits, medr = floor(median) + 1) without a direction
    prefix or mean rank, plus the number of queries (NaN recalls when there is none)."""
    n = ranks.numel()
    if n == 0:
        return {**{f"r{k}": float("nan") for k in ks}, "medr": float("nan"), "num_queries": 0}
    out = {k.removeprefix("q_"): v for k, v in summarise_ranks("q", ranks, ks).items() if k != "q_meanr"}
    return {**out, "num_queries": n}


def _validate(emb: Tensor, groups: Tensor, ks, chunk_rows: int) -> tuple[int, ...]:
    """Fail early with messages naming the argument and what was expected."""
    if emb.ndim != 2 or emb.shape[0] == 0:
        raise ValueError(f"emb must have shape [N, D] with N >= 1, got {tuple(emb.shape)}")
    if groups.shape != (emb.shape[0],):
        raise ValueError(f"groups must have shape [N]=[{emb.shape[0]}] (one group id per row of emb), got {tuple(groups.shape)}")
    check_integer_ids("groups", groups)
    if emb.is_floating_point() and not bool(torch.isfinite(emb).all()):
        raise ValueError("emb contains NaN or infinite values")
    ks = check_ks(ks)
    if int(chunk_rows) < 1:
        raise ValueError(f"chunk_rows must be a positive number of rows, got {chunk_rows}")
    return ks
