"""COCO 1K folds and median ranks of RetrievalRecall against a plain brute-force reference."""
from __future__ import annotations

import math

import pytest
import torch

from twostream.data import CocoDataModule, SyntheticShapesDataModule
from twostream.metrics import RetrievalRecall, rank_folds

KS = (1, 5, 10)


def make_data(n_images: int, seed: int, dim: int = 5, max_caps: int = 7):
    """Images with 1..max_caps captions in shuffled order; small integer embeddings => ties."""
    gen = torch.Generator().manual_seed(seed)
    caps = torch.randint(1, max_caps + 1, (n_images,), generator=gen)
    t2i = torch.repeat_interleave(torch.arange(n_images), caps)
    t2i = t2i[torch.randperm(t2i.numel(), generator=gen)]
    img = torch.randint(-2, 3, (n_images, dim), generator=gen).float()
    txt = torch.randint(-2, 3, (t2i.numel(), dim), generator=gen).float()
    return img, txt, t2i


def brute_ranks(img: torch.Tensor, txt: torch.Tensor, t2i: list[int]) -> tuple[list[int], list[int]]:
    """1-based rank of the best positive; ties: candidates of lower image index first."""
    scores = (img.double() @ txt.double().T).tolist()
    n, m = len(scores), len(t2i)
    i2t = []
    for i in range(n):
        if i in t2i:
            order = sorted(range(m), key=lambda j: (-scores[i][j], t2i[j]))
            i2t.append(1 + next(p for p, j in enumerate(order) if t2i[j] == i))
    t2i_ranks = [1 + sorted(range(n), key=lambda i: (-scores[i][j], i)).index(t2i[j]) for j in range(m)]
    return i2t, t2i_ranks


def reference(img: torch.Tensor, txt: torch.Tensor, t2i: torch.Tensor, folds: int) -> dict[str, float]:
    """Per fold: recall, floor(median 1-based rank), mean rank; then the mean over folds."""
    size = img.shape[0] // folds
    per_fold = []
    for k in range(folds):
        keep = [j for j, i in enumerate(t2i.tolist()) if k * size <= i < (k + 1) * size]
        local = [t2i[j].item() - k * size for j in keep]
        i2t, t2i_r = brute_ranks(img[k * size:(k + 1) * size], txt[keep], local)
        out = {}
        for name, ranks in (("i2t", i2t), ("t2i", t2i_r)):
            for kk in KS:
                out[f"{name}_r{kk}"] = 100.0 * sum(r <= kk for r in ranks) / len(ranks)
            srt = sorted(ranks)
            out[f"{name}_medr"] = float(math.floor((srt[(len(srt) - 1) // 2] + srt[len(srt) // 2]) / 2))
            out[f"{name}_meanr"] = sum(ranks) / len(ranks)
        out["rsum"] = sum(out[f"{d}_r{kk}"] for d in ("i2t", "t2i") for kk in KS)
        per_fold.append(out)
    return {key: sum(f[key] for f in per_fold) / folds for key in per_fold[0]}


@pytest.mark.parametrize(("n_images", "folds", "seed"), [(20, 5, 0), (24, 4, 1), (18, 1, 2), (30, 5, 3)])
def test_folds_and_medr_match_brute_force(n_images: int, folds: int, seed: int) -> None:
    img, txt, t2i = make_data(n_images, seed)
    got = rank_folds(img, txt, t2i, folds, ks=KS, chunk_bytes=4 * 37)
    assert got == pytest.approx(reference(img, txt, t2i, folds), rel=1e-12, abs=1e-12)


def test_metric_folds_with_shuffled_padded_batches() -> None:
    img, txt, t2i = make_data(25, 7)
    metric = RetrievalRecall(ks=KS, num_folds=5, chunk_bytes=100)
    gen = torch.Generator().manual_seed(0)
    img_order = torch.randperm(25, generator=gen).tolist() + [4, 4]  # DistributedSampler-style padding
    for s in range(0, len(img_order), 6):
        i = torch.tensor(img_order[s:s + 6])
        metric.update(image_emb=img[i], image_index=i)
    txt_order = torch.randperm(len(t2i), generator=gen).tolist() + [0]
    for s in range(0, len(txt_order), 7):
        j = torch.tensor(txt_order[s:s + 7])
        metric.update(text_emb=txt[j], text_index=j, text_image_index=t2i[j])
    got = {k: float(v) for k, v in metric.compute().items()}
    assert got == pytest.approx(reference(img, txt, t2i, 5), rel=1e-6)
    assert {"i2t_medr", "t2i_medr"} <= set(got)


def test_one_fold_is_the_unfolded_metric() -> None:
    img, txt, t2i = make_data(12, 4)
    a, b = RetrievalRecall(), RetrievalRecall(num_folds=1)
    for m in (a, b):
        m.update(img, torch.arange(12), txt, torch.arange(len(t2i)), t2i)
    assert {k: float(v) for k, v in a.compute().items()} == {k: float(v) for k, v in b.compute().items()}


def test_fold_errors() -> None:
    img, txt, t2i = make_data(12, 5)
    with pytest.raises(ValueError, match="num_folds=5 needs the number of images to be a multiple"):
        rank_folds(img, txt, t2i, 5)
    with pytest.raises(ValueError, match="num_folds must be >= 1"):
        RetrievalRecall(num_folds=0)
    with pytest.raises(ValueError, match="fold 1 .* has no captions"):
        rank_folds(img[:4], txt[:2], torch.tensor([0, 1]), 2)


def test_datamodules_report_their_folds(tmp_path) -> None:
    assert SyntheticShapesDataModule(root=str(tmp_path)).eval_num_folds("test") == 1
    coco_1k = CocoDataModule(root=str(tmp_path), annotations="x.json", test_protocol="1k")
    assert (coco_1k.eval_num_folds("test"), coco_1k.eval_num_folds("val")) == (5, 1)
    assert CocoDataModule(root=str(tmp_path), annotations="x.json").eval_num_folds("test") == 1
