"""Momentum towers, queues, filter statistics and the callback that updates them."""
import copy

import pytest
import torch

from twostream.encoder import TwoStreamEncoder
from twostream.errors import ConfigError
from twostream.methods.cots import AdaptiveMomentumFilter, MomentumQueue, ema_update_


class Holder(torch.nn.Module):
    """The part of an encoder a MomentumQueue copies: its encoding modules (here: no shared neck)."""

    encoding_modules = TwoStreamEncoder.encoding_modules
    copy_encoding_modules = TwoStreamEncoder.copy_encoding_modules

    def __init__(self, make, dim: int):
        super().__init__()
        for name in ("vision", "text", "image_proj", "text_proj"):
            setattr(self, name, make())
        self.shared, self.embed_dim = None, dim


def built_queue(size: int, dim: int = 4) -> MomentumQueue:
    q = MomentumQueue(queue_size=size)
    q.build(Holder(lambda: torch.nn.Linear(3, 3), dim))
    return q


def test_enqueue_wraps_around_and_keeps_pairs_aligned():
    q = built_queue(10)
    for step in range(3):  # 3 x 4 = 12 writes into 10 slots
        keys = torch.full((4, 4), float(step))
        q.enqueue(keys, -keys, torch.arange(4) + 10 * step)
    assert int(q.ptr) == 2 and int(q.filled) == 10
    assert q.id_queue.tolist() == [22, 23, 2, 3, 10, 11, 12, 13, 20, 21]
    assert torch.equal(q.image_queue, -q.text_queue)  # slot k of both queues is one pair
    img, txt, ids = q.queue()
    assert img.shape == (10, 4)


def test_partial_queue_exposes_only_filled_slots():
    q = built_queue(10)
    q.enqueue(torch.ones(3, 4), torch.ones(3, 4), torch.arange(3))
    assert [t.shape[0] for t in q.queue()] == [3, 3, 3]


def test_enqueue_larger_than_queue_is_a_config_error():
    with pytest.raises(ConfigError, match="queue_size \\(4\\) is smaller than the global batch"):
        built_queue(4).enqueue(torch.ones(5, 4), torch.ones(5, 4), torch.arange(5))


def test_queue_state_is_persistent():
    keys = set(built_queue(8).state_dict())
    assert {"image_queue", "text_queue", "id_queue", "ptr", "filled"} <= keys
    assert "vision.weight" in keys  # momentum towers are checkpointed too


def test_ema_matches_per_parameter_formula():
    torch.manual_seed(0)
    ema = [torch.randn(5, 3), torch.randn(7)]
    online = [torch.randn(5, 3), torch.randn(7)]
    expected = [0.9 * e + 0.1 * o for e, o in zip(ema, online)]
    ema_update_(ema, online, 0.9)
    for got, want in zip(ema, expected):
        torch.testing.assert_close(got, want)


def test_momentum_update_moves_every_momentum_parameter_towards_online():
    holder = Holder(lambda: torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3)), 3)
    q = MomentumQueue(8)
    q.build(holder)
    before = copy.deepcopy(q.state_dict())
    with torch.no_grad():
        for p in holder.parameters():
            p.add_(1.0)
    q.momentum_update(holder, 0.75)
    ema, online = q.parameter_pairs(holder)
    assert len(ema) == 16 and not any(p.requires_grad for p in ema)
    for (name, old), new in zip(((k, v) for k, v in before.items() if "queue" not in k and k not in ("ptr", "filled")),
                                ema):
        torch.testing.assert_close(new, old + 0.25)  # 0.75 * old + 0.25 * (old + 1)


def test_queue_rejects_momentum_outside_unit_interval():
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match="MomentumQueue.momentum: expected a value in \\[0, 1\\)"):
            MomentumQueue(momentum=bad)
    with pytest.raises(ConfigError, match="final_momentum"):
        MomentumQueue(final_momentum=1.0)


def test_momentum_schedule_cosine_from_start_to_end():
    cb = MomentumQueue(momentum=0.99, final_momentum=0.999)
    assert cb.momentum_at(0, 100) == pytest.approx(0.99)
    assert cb.momentum_at(50, 100) == pytest.approx(0.9945)
    assert cb.momentum_at(100, 100) == pytest.approx(0.999)
    assert MomentumQueue(momentum=0.9).momentum_at(40, 100) == 0.9


def test_filter_keeps_everything_during_warmup_then_drops_low_pairs():
    f = AdaptiveMomentumFilter(k=1.0, momentum=0.5, warmup_steps=2)
    sims = torch.tensor([0.1, 0.5, 0.5, 0.9])
    assert f.keep_mask(sims).tolist() == [1, 1, 1, 1]
    f.update_statistics(sims)  # first update initialises: mean 0.5, var 0.08
    assert float(f.mean) == pytest.approx(0.5) and float(f.var) == pytest.approx(0.08)
    assert f.keep_mask(torch.tensor([0.0])).item() == 1.0  # still warming up
    f.update_statistics(torch.tensor([0.7, 0.7, 0.7, 0.7]))  # EMA: mean 0.6, var 0.04
    assert float(f.mean) == pytest.approx(0.6) and float(f.var) == pytest.approx(0.04)
    assert f.keep_mask(torch.tensor([0.39, 0.41, 0.9])).tolist() == [0.0, 1.0, 1.0]  # threshold 0.6 - 0.2


def test_filter_rejects_bad_settings():
    with pytest.raises(ConfigError, match="momentum"):
        AdaptiveMomentumFilter(momentum=1.0)
    with pytest.raises(ConfigError, match="k"):
        AdaptiveMomentumFilter(k=0)


def test_margin_score_ignores_a_shift_of_every_similarity():
    f = AdaptiveMomentumFilter()
    torch.manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    txt = torch.nn.functional.normalize(img + 0.3 * torch.randn(6, 8), dim=-1)
    txt[2] = torch.nn.functional.normalize(torch.randn(8), dim=-1)  # a mismatched pair
    scores = f.pair_scores(img, txt)
    sim = img @ txt.T
    expected_0 = sim[0, 0] - 0.5 * (sim[0, 1:].mean() + sim[1:, 0].mean())
    torch.testing.assert_close(scores[0], expected_0)
    assert scores.argmin() == 2
    assert AdaptiveMomentumFilter(score="cosine").pair_scores(img, txt).tolist() == sim.diagonal().tolist()
