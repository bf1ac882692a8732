"""Image-text retrieval Recall@K as a torchmetrics ``Metric`` that is exact under DDP.

Why not ``torchmetrics.retrieval.RetrievalRecall``: it measures the *fraction of relevant
items* retrieved in the top K per query (an image with 5 captions and 1 of them in the top K
scores 0.2), whereas papers report the *hit rate* (1 if any positive is in the top K); and
since torchmetrics 1.8 it ignores non-positive scores, which silently drops negative cosine
similarities. It also needs the full score matrix as input. This metric stores embeddings,
gathers them across ranks, and ranks them exactly with :func:`rank_retrieval`.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from twostream.metrics.ranking import rank_folds


class RetrievalRecall(Metric):
    """Cross-modal Recall@K (percent), rsum, median/mean rank, both directions.

    ``update`` may carry images, captions or both; every sample carries its global index
    (``image_index`` in [0, N), ``text_index`` in [0, M)) so that ``compute`` can restore
    dataset order and drop the duplicates DistributedSampler pads the last batch with.
    Embeddings are scored as given (dot product): normalise them before ``update`` if you
    want cosine similarity.

    ``num_folds > 1`` is the COCO 1K protocol: images are cut into that many contiguous equal
    folds by image index (captions follow their image), each fold is ranked on its own, and every
    output is the mean over folds. ``i2t_medr``/``t2i_medr`` are the median 1-based rank of the
    best positive (see :func:`rank_retrieval`).

    ``unimodal=True`` adds within-modality recall (COOKIE's unimodal evaluation): ``t2t_*``
    (captions of the same image are positives) and, when ``image_groups`` is set, ``i2i_*``
    (images of the same group are positives), each with its number of queries.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self, ks: tuple[int, ...] = (1, 5, 10), chunk_bytes: int = 256 * 2**20, num_folds: int = 1, unimodal: bool = False,
        **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.ks = tuple(int(k) for k in ks)
        self.chunk_bytes = int(chunk_bytes)
        if int(num_folds) < 1:
            raise ValueError(f"num_folds must be >= 1, got {num_folds}")
        self.num_folds = int(num_folds)
        self.unimodal = bool(unimodal)
        self.image_groups: Tensor | None = None  # set by whoever knows the split (the encoder, from its datamodule)
        for name in ("image_emb", "image_index", "text_emb", "text_index", "text_image_index"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        image_emb: Tensor | None = None,
        image_index: Tensor | None = None,
        text_emb: Tensor | None = None,
        text_index: Tensor | None = None,
        text_image_index: Tensor | None = None,
    ) -> None:
        """Store a batch of images ([B, D] + [B] indices) and/or captions ([B, D] + [B] + [B])."""
        if all(x is None for x in (image_emb, image_index, text_emb, text_index, text_image_index)):
            raise ValueError("update() needs image_emb (with image_index) and/or text_emb (with text_index, text_image_index)")
        if image_emb is not None or image_index is not None:
            _check_batch("image", image_emb, {"image_index": image_index})
            self.image_emb.append(image_emb.detach())
            self.image_index.append(image_index.detach().long())
        if text_emb is not None or text_index is not None or text_image_index is not None:
            _check_batch("text", text_emb, {"text_index": text_index, "text_image_index": text_image_index})
            self.text_emb.append(text_emb.detach())
            self.text_index.append(text_index.detach().long())
            self.text_image_index.append(text_image_index.detach().long())

    def ordered(self) -> tuple[Tensor, Tensor, Tensor]:
        """(image_emb [N, D], text_emb [M, D], text_to_image [M]) de-duplicated, in dataset order."""
        if _is_empty(self.image_emb) or _is_empty(self.text_emb):
            raise ValueError("RetrievalRecall.compute() called before update() received both images and captions")
        img_emb, _ = _dedup_in_order("image", dim_zero_cat(self.image_emb), dim_zero_cat(self.image_index))
        txt_emb, t2i = _dedup_in_order(
            "text", dim_zero_cat(self.text_emb), dim_zero_cat(self.text_index), dim_zero_cat(self.text_image_index)
        )
        return img_emb, txt_emb, t2i

    def compute(self) -> dict[str, Tensor]:
        """De-duplicate, restore index order, check completeness, then rank exactly."""
        img_emb, txt_emb, t2i = self.ordered()
        res = rank_folds(img_emb, txt_emb, t2i, self.num_folds, ks=self.ks, chunk_bytes=self.chunk_bytes)
        if self.unimodal:
            res.update(self._unimodal(img_emb, txt_emb, t2i))
        return {k: torch.tensor(v, dtype=torch.float32, device=self.device) for k, v in res.items()}


    def _unimodal(self, img_emb: Tensor, txt_emb: Tensor, t2i: Tensor) -> dict[str, float]:
        """text→text over the whole split (captions of one image are positives), and image→image
        when ``image_groups`` says which images show the same scene (synthetic data)."""
        from twostream.metrics.unimodal import unimodal_recall

        out: dict[str, float] = {}
        if int(torch.bincount(t2i).max()) > 1:
            out.update({f"t2t_{k}": v for k, v in unimodal_recall(txt_emb, t2i, self.ks).items()})
        groups = self.image_groups
        if groups is not None:
            if groups.shape != (img_emb.shape[0],):
                raise ValueError(f"image_groups has {tuple(groups.shape)} entries for {img_emb.shape[0]} images")
            res = unimodal_recall(img_emb, groups.to(img_emb.device), self.ks)
            if res["num_queries"] > 0:
                out.update({f"i2i_{k}": v for k, v in res.items()})
        return out


def _is_empty(state: list[Tensor] | Tensor) -> bool:
    """List states become one tensor after a DDP sync."""
    return state.numel() == 0 if isinstance(state, Tensor) else len(state) == 0


def _check_batch(kind: str, emb: Tensor | None, indices: dict[str, Tensor | None]) -> None:
    """Each batch needs its embeddings [B, D] and one index per row for every index argument."""
    if emb is None or emb.ndim != 2:
        got = None if emb is None else tuple(emb.shape)
        raise ValueError(f"{kind}_emb must be a [B, D] tensor when {', '.join(indices)} is given, got {got}")
    for name, idx in indices.items():
        if idx is None or idx.shape != (emb.shape[0],):
            got = None if idx is None else tuple(idx.shape)
            raise ValueError(f"{name} must have shape [B]=[{emb.shape[0]}] (one per row of {kind}_emb), got {got}")


def _dedup_in_order(kind: str, emb: Tensor, index: Tensor, extra: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Keep the first entry per index, sorted by index; require indices to be exactly 0..n-1.

    DistributedSampler pads the last batch with repeated samples, so duplicates are expected;
    gaps are not (they mean some rank's data never reached the metric).
    """
    index = index.long()  # an empty rank contributes a float placeholder tensor
    order = torch.argsort(index, stable=True)
    srt = index[order]
    first = torch.ones_like(srt, dtype=torch.bool)
    first[1:] = srt[1:] != srt[:-1]
    unique = srt[first]
    if int(unique[0]) < 0:
        raise ValueError(f"{kind} indices must be >= 0, got {int(unique[0])}")
    n = int(unique[-1]) + 1
    if unique.numel() != n:
        raise ValueError(
            f"{kind} indices must cover 0..{n - 1} exactly once after de-duplication: "
            f"{n - unique.numel()} of {n} are missing"
        )
    keep = order[first]
    if extra is None:
        return emb[keep], None
    extra = extra.long()
    if not torch.equal(extra[order], extra[keep].repeat_interleave(torch.bincount(srt))):
        raise ValueError(f"duplicate {kind} entries disagree on text_image_index")
    return emb[keep], extra[keep]
