"""Retrieval with a cross-encoder: score every pair, or re-rank a two-stream shortlist (k-test).

Every image-caption pair costs one forward pass of the joint transformer, so full scoring of N
images x M captions is N*M passes; that cost is the reason two-stream models exist. k-test
re-ranking scores only each query's top-k candidates from a cheap two-stream similarity.
"""
from __future__ import annotations

from typing import Callable

import torch
from tqdm.auto import tqdm

PairScorer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (ids, mask, images) -> [P]
OUTSIDE = 1.0e4  # candidates outside the shortlist keep the two-stream order, below every re-ranked one


@torch.no_grad()
def score_pairs(scorer: PairScorer, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                image_idx: torch.Tensor, text_idx: torch.Tensor, batch_size: int = 512,
                progress: bool = False) -> torch.Tensor:
    """Scores of the pairs (images[image_idx[p]], captions[text_idx[p]]), ``batch_size`` pairs per pass."""
    out = torch.empty(image_idx.numel(), device=images.device)
    starts = range(0, image_idx.numel(), batch_size)
    for s in tqdm(starts, desc="scoring pairs", unit="batch", disable=not progress):
        i, t = image_idx[s:s + batch_size], text_idx[s:s + batch_size]
        out[s:s + batch_size] = scorer(input_ids[t], attention_mask[t], images[i]).float()
    return out


def full_scores(scorer: PairScorer, images, input_ids, attention_mask, batch_size: int = 512,
                progress: bool = False) -> torch.Tensor:
    """The [N, M] matrix of every pair's score (N*M forward passes)."""
    n, m = images.shape[0], input_ids.shape[0]
    grid_i, grid_t = torch.meshgrid(torch.arange(n, device=images.device), torch.arange(m, device=images.device),
                                    indexing="ij")
    return score_pairs(scorer, images, input_ids, attention_mask, grid_i.flatten(), grid_t.flatten(),
                       batch_size, progress).view(n, m)


def rerank_scores(scorer: PairScorer, images, input_ids, attention_mask, shortlist: torch.Tensor, k: int,
                  batch_size: int = 512, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """k-test: (i2t scores, t2i scores) [N, M] from a two-stream similarity ``shortlist`` [N, M].

    Each image's top-k captions and each caption's top-k images are scored by the cross-encoder
    (N*k + M*k passes); every other entry is the two-stream score minus ``OUTSIDE``, so it ranks
    below all re-ranked candidates and in two-stream order among the rest."""
    n, m = shortlist.shape
    k_t, k_i = min(k, m), min(k, n)
    top_t = shortlist.topk(k_t, dim=1).indices  # [N, k] captions per image
    top_i = shortlist.topk(k_i, dim=0).indices  # [k, M] images per caption
    rows = torch.arange(n, device=shortlist.device).repeat_interleave(k_t)
    cols = torch.arange(m, device=shortlist.device).repeat(k_i)
    i2t = shortlist.float() - OUTSIDE
    t2i = i2t.clone()
    i2t[rows, top_t.flatten()] = score_pairs(scorer, images, input_ids, attention_mask, rows, top_t.flatten(),
                                             batch_size, progress)
    t2i[top_i.flatten(), cols] = score_pairs(scorer, images, input_ids, attention_mask, top_i.flatten(), cols,
                                             batch_size, progress)
    return i2t, t2i
