"""The recall ceiling of a split whose captions can be checked against every image.

Why: when a caption is true of several images ("a red circle at the top" in a dataset of shapes),
even a perfect model cannot put the caption's own image first every time. The oracle ranks, for each
caption, exactly the images it is true of first (and for each image, the captions true of it), ties
broken uniformly at random; its *expected* recall@K is the ceiling a result should be read against.

Closed forms (no sampling): a caption true of ``m`` images, its own among them, finds its image in
the top K with probability ``min(K, m) / m``. An image with ``m`` true captions, ``p`` of them its
own, has one of its own in the top K with probability ``1 - C(m - p, K) / C(m, K)``: the chance
that a uniformly random K-subset of the tied block misses all ``p``.
"""
from __future__ import annotations

from collections.abc import Sequence
from math import comb

from twostream.metrics.ranking import check_ks


def _i2t_hit(m: int, p: int, k: int) -> float:
    return 1.0 if k >= m - p + 1 else 1.0 - comb(m - p, k) / comb(m, k)


def oracle_recall(true_images: Sequence[Sequence[int]], text_to_image: Sequence[int], num_images: int,
                  ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Expected recall@K (percent) of the oracle, with the keys RetrievalRecall reports
    (``i2t_r{k}``, ``t2i_r{k}``, ``rsum``); ``true_images[j]``: positions of the images caption
    ``j`` is true of, which must include its own image ``text_to_image[j]``."""
    ks = check_ks(ks)
    if len(true_images) != len(text_to_image):
        raise ValueError(f"true_images has {len(true_images)} rows for {len(text_to_image)} captions")
    true_captions = [0] * num_images  # m of each image
    own = [0] * num_images  # p of each image
    for j, (images, mine) in enumerate(zip(true_images, text_to_image)):
        if mine not in images:
            raise ValueError(f"caption {j} is not true of its own image {mine}: the truth table is wrong")
        for i in images:
            true_captions[i] += 1
        own[mine] += 1
    queries = [i for i in range(num_images) if own[i]]  # images without captions have no i2t query
    out: dict[str, float] = {}
    for k in ks:
        out[f"i2t_r{k}"] = 100.0 * sum(_i2t_hit(true_captions[i], own[i], k) for i in queries) / len(queries)
    for k in ks:
        out[f"t2i_r{k}"] = 100.0 * sum(min(k, len(t)) / len(t) for t in true_images) / len(true_images)
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks)
    return out
