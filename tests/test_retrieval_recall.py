"""rank_retrieval against a plain brute-force reference, and RetrievalRecall under (real) DDP."""
from __future__ import annotations

import json
import math

import pytest
import torch
from dist_utils import spawn
from torch.utils.data import DistributedSampler

from twostream.metrics import RetrievalRecall, rank_retrieval

KS = (1, 5, 10)


def make_data(n_images: int, seed: int, dim: int = 6, max_caps: int = 7, integer: bool = True):
    """Images with 1..max_caps captions each, captions shuffled; small integers => exact ties."""
    gen = torch.Generator().manual_seed(seed)
    caps = torch.randint(1, max_caps + 1, (n_images,), generator=gen)
    t2i = torch.repeat_interleave(torch.arange(n_images), caps)
    t2i = t2i[torch.randperm(t2i.numel(), generator=gen)]
    if integer:
        img = torch.randint(-2, 3, (n_images, dim), generator=gen).float()
        txt = torch.randint(-2, 3, (t2i.numel(), dim), generator=gen).float()
    else:
        img = torch.nn.functional.normalize(torch.randn(n_images, dim, generator=gen), dim=1)
        txt = torch.nn.functional.normalize(img[t2i] + 0.5 * torch.randn(t2i.numel(), dim, generator=gen), dim=1)
    return img, txt, t2i


def brute_force(img: torch.Tensor, txt: torch.Tensor, t2i: torch.Tensor, ks=KS) -> dict:
    """Full score matrix; order candidates by (score desc, image index asc); rank of best positive."""
    scores = (img.double() @ txt.double().T).tolist()
    owner = t2i.tolist()
    n, m = len(scores), len(owner)
    i2t = []
    for i in range(n):
        if i not in owner:
            i2t.append(-1)
            continue
        order = sorted(range(m), key=lambda j: (-scores[i][j], owner[j]))
        i2t.append(next(pos for pos, j in enumerate(order) if owner[j] == i))
    t2i_ranks = []
    for j in range(m):
        order = sorted(range(n), key=lambda i: (-scores[i][j], i))
        t2i_ranks.append(order.index(owner[j]))
    out = {"i2t_ranks": i2t, "t2i_ranks": t2i_ranks}
    for name, ranks in (("i2t", [r for r in i2t if r >= 0]), ("t2i", t2i_ranks)):
        for k in ks:
            out[f"{name}_r{k}"] = 100.0 * sum(r < k for r in ranks) / len(ranks)
        srt = sorted(ranks)
        out[f"{name}_medr"] = float(math.floor((srt[(len(srt) - 1) // 2] + srt[len(srt) // 2]) / 2) + 1)
        out[f"{name}_meanr"] = sum(ranks) / len(ranks) + 1.0
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("chunk_bytes", [1, 4 * 40, 4 * 150, 256 * 2**20])
def test_matches_brute_force_with_ties(seed: int, chunk_bytes: int) -> None:
    img, txt, t2i = make_data(23 + seed, seed)
    ref = brute_force(img, txt, t2i)
    got = rank_retrieval(img, txt, t2i, ks=KS, chunk_bytes=chunk_bytes, return_ranks=True)
    assert got.pop("i2t_ranks").tolist() == ref.pop("i2t_ranks")
    assert got.pop("t2i_ranks").tolist() == ref.pop("t2i_ranks")
    assert got == ref  # exact equality of every float


def test_image_without_captions_is_excluded_from_i2t_only() -> None:
    img, txt, t2i = make_data(15, 7)
    keep = t2i != 4
    txt, t2i = txt[keep], t2i[keep]
    got = rank_retrieval(img, txt, t2i, chunk_bytes=64, return_ranks=True)
    ref = brute_force(img, txt, t2i)
    assert got["i2t_ranks"][4] == -1
    assert got.pop("i2t_ranks").tolist() == ref.pop("i2t_ranks")
    assert got.pop("t2i_ranks").tolist() == ref.pop("t2i_ranks")
    assert got == ref


def test_float_data_is_independent_of_chunking() -> None:
    img, txt, t2i = make_data(60, 3, dim=16, integer=False)
    base = rank_retrieval(img, txt, t2i, return_ranks=True)
    assert 0.0 < base["i2t_r1"] <= 100.0 and base["rsum"] > 0
    for chunk_bytes in (1, 1000, 20_000):
        got = rank_retrieval(img, txt, t2i, chunk_bytes=chunk_bytes, return_ranks=True)
        assert torch.equal(got.pop("i2t_ranks"), base["i2t_ranks"])
        assert torch.equal(got.pop("t2i_ranks"), base["t2i_ranks"])
        assert got == {k: v for k, v in base.items() if not k.endswith("_ranks")}


def test_all_tied_scores_follow_image_order() -> None:
    img, txt = torch.ones(4, 3), torch.ones(6, 3)
    t2i = torch.tensor([3, 0, 1, 2, 2, 1])
    got = rank_retrieval(img, txt, t2i, chunk_bytes=12, return_ranks=True)
    # every score ties: a query's rank is the number of candidates of lower-indexed images
    assert got["t2i_ranks"].tolist() == [3, 0, 1, 2, 2, 1]
    assert got["i2t_ranks"].tolist() == [0, 1, 3, 5]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((torch.zeros(3), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)), r"image_emb must have shape \[N, D\]"),
        ((torch.zeros(3, 2), torch.zeros(4, 5), torch.zeros(4, dtype=torch.long)), r"text_emb must have shape \[M, D\].*D=2"),
        ((torch.zeros(3, 2), torch.zeros(4, 2), torch.zeros(5, dtype=torch.long)), r"text_to_image must have shape \[M\]=\[4\]"),
        ((torch.zeros(3, 2), torch.zeros(4, 2), torch.tensor([0, 1, 2, 3])), r"must lie in \[0, N\)=\[0, 3\).*max 3"),
        ((torch.zeros(3, 2), torch.zeros(4, 2), torch.zeros(4)), r"text_to_image must be an integer tensor"),
        ((torch.full((3, 2), float("nan")), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)), r"image_emb contains NaN"),
    ],
)
def test_rank_retrieval_input_errors(args, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rank_retrieval(*args)


def _feed(metric: RetrievalRecall, img, txt, t2i, img_idx, txt_idx, batch: int) -> None:
    for s in range(0, len(img_idx), batch):
        i = torch.as_tensor(img_idx[s : s + batch])
        metric.update(image_emb=img[i], image_index=i)
    for s in range(0, len(txt_idx), batch):
        j = torch.as_tensor(txt_idx[s : s + batch])
        metric.update(text_emb=txt[j], text_index=j, text_image_index=t2i[j])


def _as_floats(result: dict) -> dict:
    return {k: float(v) for k, v in result.items()}


def test_metric_shuffled_padded_batches_equal_one_call() -> None:
    img, txt, t2i = make_data(30, 5)
    one = RetrievalRecall(ks=KS)
    one.update(img, torch.arange(30), txt, torch.arange(len(t2i)), t2i)
    expected = _as_floats(one.compute())
    ref = brute_force(img, txt, t2i)
    assert expected == pytest.approx({k: v for k, v in ref.items() if not k.endswith("_ranks")}, rel=1e-6)

    gen = torch.Generator().manual_seed(0)
    img_idx = torch.randperm(30, generator=gen).tolist() + [3, 7, 3]  # padded duplicates
    txt_idx = torch.randperm(len(t2i), generator=gen).tolist() + [0, 1]
    many = RetrievalRecall(ks=KS, chunk_bytes=100)
    _feed(many, img, txt, t2i, img_idx, txt_idx, batch=4)
    assert _as_floats(many.compute()) == expected


def test_metric_reports_missing_indices_and_bad_shapes() -> None:
    img, txt, t2i = make_data(10, 1)
    metric = RetrievalRecall()
    metric.update(image_emb=img[:8], image_index=torch.tensor([0, 1, 2, 3, 4, 5, 6, 9]))
    metric.update(text_emb=txt, text_index=torch.arange(len(t2i)), text_image_index=t2i)
    with pytest.raises(ValueError, match=r"image indices must cover 0\.\.9 .*2 of 10 are missing"):
        metric.compute()
    with pytest.raises(ValueError, match=r"image_index must have shape \[B\]=\[8\]"):
        metric.update(image_emb=img[:8], image_index=torch.arange(7))
    with pytest.raises(ValueError, match=r"text_emb must be a \[B, D\] tensor"):
        metric.update(text_index=torch.arange(3), text_image_index=torch.arange(3))
    with pytest.raises(ValueError, match="before update"), pytest.warns(UserWarning, match="called before"):
        RetrievalRecall().compute()


def _ddp_worker(rank: int, world_size: int, out_file: str) -> None:
    img, txt, t2i = make_data(37, 14)
    metric = RetrievalRecall(ks=KS, chunk_bytes=512)
    img_idx = list(DistributedSampler(range(len(img)), num_replicas=world_size, rank=rank, shuffle=False))
    txt_idx = list(DistributedSampler(range(len(t2i)), num_replicas=world_size, rank=rank, shuffle=False))
    _feed(metric, img, txt, t2i, img_idx, txt_idx, batch=5)
    result = _as_floats(metric.compute())
    if rank == 0:
        with open(out_file, "w") as f:
            json.dump(result, f)


@pytest.mark.ddp
def test_metric_two_gloo_ranks_match_single_process(tmp_path) -> None:
    img, txt, t2i = make_data(37, 14)
    assert len(img) % 2 == 1 and len(t2i) % 2 == 1, "sizes must force DistributedSampler padding"
    out_file = tmp_path / "rank0.json"
    spawn(_ddp_worker, 2, str(out_file))
    single = RetrievalRecall(ks=KS)
    single.update(img, torch.arange(len(img)), txt, torch.arange(len(t2i)), t2i)
    assert json.loads(out_file.read_text()) == _as_floats(single.compute())
