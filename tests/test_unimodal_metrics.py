"""Within-modality recall, recall from score matrices, and the data hooks they use."""
from __future__ import annotations

import math
import re

import pytest
import torch

from twostream.data.datamodules.retrieval import RetrievalDataModule
from twostream.data.datamodules.synthetic_shapes import SyntheticShapesDataModule
from twostream.data.formats.retrieval_split import RetrievalSplit
from twostream.metrics import group_ids, rank_retrieval, recall_from_scores, score_ranking, unimodal_recall


def _reference_unimodal(emb, groups, ks):
    """Full argsort per query: other items sorted by score, positives first among equal scores."""
    s = emb @ emb.T
    ranks = []
    for q in range(len(groups)):
        others = torch.tensor([j for j in range(len(groups)) if j != q])
        pos = groups[others] == groups[q]
        if not pos.any():
            continue
        order = torch.argsort(pos.float(), descending=True, stable=True)  # positives first...
        order = order[torch.argsort(s[q, others][order], descending=True, stable=True)]  # ...within ties
        ranks.append(int(torch.nonzero(pos[order])[0]))
    r, n = torch.tensor(ranks), len(ranks)
    srt = torch.sort(r).values
    out = {f"r{k}": 100.0 * int((r < k).sum()) / n for k in ks}
    out["medr"] = float((int(srt[(n - 1) // 2]) + int(srt[n // 2])) // 2 + 1)
    out["num_queries"] = n
    return out


def _groups_with_singletons(gen):
    sizes = [1, 1, 3, 2, 5, 1, 4, 2, 1, 6, 2, 3]
    g = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    return g[torch.randperm(len(g), generator=gen)]


@pytest.mark.parametrize("integer", [False, True])  # integer-valued embeddings: exact ties everywhere
def test_unimodal_matches_bruteforce(integer):
    gen = torch.Generator().manual_seed(0)
    groups = _groups_with_singletons(gen)
    if integer:
        emb = torch.randint(-1, 2, (len(groups), 3), generator=gen).double()
    else:
        emb = torch.nn.functional.normalize(torch.randn(len(groups), 8, generator=gen, dtype=torch.float64), dim=1)
    ks = (1, 3, 5, 10)
    got = unimodal_recall(emb, groups, ks=ks)
    assert got == _reference_unimodal(emb, groups, ks)
    assert got["num_queries"] == int((torch.bincount(groups)[groups] > 1).sum())
    assert got == unimodal_recall(emb, groups, ks=ks, chunk_rows=3)
    if integer:  # exact in float32 too
        assert got == unimodal_recall(emb.float(), groups, ks=ks, chunk_rows=10_000)


def test_unimodal_excludes_the_query_itself():
    # Item 0's only positive (item 1) is orthogonal to it, while a negative (item 2) duplicates it.
    # Counting item 0 as its own positive would make it a hit at 1.
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, -1.0]])
    groups = torch.tensor([0, 0, 1, 2])
    res = unimodal_recall(emb, groups, ks=(1, 2))
    # query 0: best positive 0 (item 1), negatives above: item 2 (1.0) -> rank 1; item 3 ties 0 -> positive wins
    # query 1: best positive 0 (item 0), negatives above: none (item 2 ties at 0, item 3 is -1) -> rank 0
    assert res == {"r1": 50.0, "r2": 100.0, "medr": 1.0, "num_queries": 2}


def test_unimodal_without_any_positive_is_nan():
    res = unimodal_recall(torch.randn(4, 3), torch.arange(4))
    assert res["num_queries"] == 0 and math.isnan(res["r1"]) and math.isnan(res["medr"])


def test_group_ids_first_appearance_order():
    assert group_ids(["b", "a", "b", "c", "a"]).tolist() == [0, 1, 0, 2, 1]
    assert group_ids([]).dtype == torch.long


def _tied_embeddings(gen, n, m, integer):
    """Images and captions with repeated rows, so many scores tie exactly."""
    if integer:
        return tuple(torch.randint(-1, 2, (k, 3), generator=gen).double() for k in (n, m))
    return tuple(torch.randn(k // 2, 6, generator=gen, dtype=torch.float64).repeat(2, 1)[torch.randperm(k, generator=gen)]
                 for k in (n, m))


@pytest.mark.parametrize("integer", [False, True])
def test_recall_from_scores_equals_rank_retrieval(integer, monkeypatch):
    gen = torch.Generator().manual_seed(1)
    n, m = 20, 48
    img, txt = _tied_embeddings(gen, n, m, integer)
    t2i = torch.randint(0, n - 2, (m,), generator=gen)  # unsorted; some images have no caption
    ks = (1, 2, 5, 10)
    assert recall_from_scores(img @ txt.T, t2i, ks=ks) == rank_retrieval(img, txt, t2i, ks=ks)
    monkeypatch.setattr(score_ranking, "_BLOCK_ELEMENTS", 3 * m)  # blocks of 3 image rows
    assert recall_from_scores(img @ txt.T, t2i, ks=ks) == rank_retrieval(img, txt, t2i, ks=ks)


def test_recall_from_scores_hand_checked():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3]])
    res = recall_from_scores(scores, torch.tensor([0, 0, 1]), ks=(1, 2))
    # i2t ranks: image 0 -> 0 (best caption 0.9); image 1 -> 1 (0.8 beats its 0.3)
    # t2i ranks: caption 0 -> 0; caption 1 -> 1 (0.8 > 0.1); caption 2 -> 1 (0.5 > 0.3)
    assert res["i2t_r1"] == 50.0 and res["i2t_r2"] == 100.0
    assert res["t2i_r1"] == pytest.approx(100 / 3) and res["t2i_r2"] == 100.0
    assert res["i2t_medr"] == 1.0 and res["i2t_meanr"] == 1.5
    assert res["t2i_medr"] == 2.0 and res["t2i_meanr"] == pytest.approx(5 / 3)
    assert res["rsum"] == pytest.approx(50 + 100 + 100 / 3 + 100)
    # ties: the candidate of the lower-indexed image ranks first, in both directions
    tied = recall_from_scores(torch.full((2, 3), 0.3), torch.tensor([0, 0, 1]), ks=(1,))
    assert tied["i2t_meanr"] == 2.0  # image 0: rank 0; image 1: both captions of image 0 ahead -> 2
    assert tied["t2i_meanr"] == pytest.approx(4 / 3)  # captions 0, 1: rank 0; caption 2: image 0 ahead -> 1


def test_recall_from_scores_uses_each_direction_matrix():
    gen = torch.Generator().manual_seed(2)
    a, b = torch.randn(6, 15, generator=gen), torch.randn(6, 15, generator=gen)
    t2i = torch.arange(15) % 6
    both = recall_from_scores(a, t2i, scores_t2i=b)
    only_a, only_b = recall_from_scores(a, t2i), recall_from_scores(b, t2i)
    for key, value in both.items():
        if key.startswith("i2t"):
            assert value == only_a[key]
        elif key.startswith("t2i"):
            assert value == only_b[key]
    with pytest.raises(ValueError, match="NaN"):
        recall_from_scores(torch.full((6, 15), float("nan")), t2i)


class _ListedData(RetrievalDataModule):
    def __init__(self, scenes):
        super().__init__()
        self.scenes = scenes

    def load_split(self, name):
        n = 3
        return RetrievalSplit([f"/none/{i}.png" for i in range(n)], ["c"] * n, [*range(n)], [*range(n)], self.scenes)


def test_image_groups_from_scenes_or_none():
    assert _ListedData(["x", "y", "x"]).image_groups("test").tolist() == [0, 1, 0]
    assert _ListedData(None).image_groups("test") is None


def test_image_groups_on_synthetic_shapes(tmp_path):
    dm = SyntheticShapesDataModule(root=str(tmp_path), num_train=20, num_val=10, num_test=30, image_size=32,
                                   progress=False)
    groups, scenes = dm.image_groups("test"), dm.get_split("test").scenes
    assert groups.dtype == torch.long and groups.shape == (30,)
    assert all(bool(groups[i] == groups[j]) == (scenes[i] == scenes[j]) for i in range(30) for j in range(30))


def test_caption_word_groups_occur_in_captions(tmp_path):
    dm = SyntheticShapesDataModule(root=str(tmp_path), num_train=200, num_val=10, num_test=10, image_size=32,
                                   progress=False)
    groups = dm.caption_word_groups()
    assert set(groups) == {"colour", "shape", "size", "position"}
    words = [w for ws in groups.values() for entry in ws for w in entry.split("|")]  # "a|b": synonyms
    assert len(words) == len(set(words)) and all(re.fullmatch(r"[a-z]+", w) for w in words)
    seen = {w for c in dm.get_split("train").captions for w in re.findall(r"[a-z]+", c.lower())}  # whole words
    for group in ("colour", "shape", "size", "position"):
        used = {w for entry in groups[group] for w in entry.split("|")}
        assert used <= seen, (group, used - seen)
    groups["colour"].append("mauve")  # callers get copies
    assert "mauve" not in dm.caption_word_groups()["colour"]
