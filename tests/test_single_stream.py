"""The single-stream cross-encoder: ViLT equivalence, ITM/MLM learning, negatives, k-test re-ranking."""
import pytest
import torch

from twostream.errors import ConfigError
from twostream.metrics import recall_from_scores
from twostream.methods.vldeformer import SingleStreamModel, VLTransformer
from twostream.methods.vldeformer.scoring import full_scores, rerank_scores
from twostream.towers.open_clip_towers import ConvStem

CONFIG = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
          "image_size": 32, "patch_size": 8, "max_position_embeddings": 16}
WORDS = ["red circle", "blue square", "green triangle", "red square", "blue circle", "green circle", "big star", "tiny box"]


def transformer(seed=0) -> VLTransformer:
    torch.manual_seed(seed)
    return VLTransformer(config=CONFIG, context_length=16)


def batch(model, n=8):
    torch.manual_seed(1)
    b = {"image": torch.randn(n, 3, 32, 32), "caption": [f"a {WORDS[i % 8]} on the left" for i in range(n)]}
    return model.on_before_batch_transfer(b, 0)


def test_joint_pass_equals_hf_vilt_forward():
    """Our image embedding skips ViLT's random patch sampling; with every patch kept, the text states and
    the pooled [CLS] must equal ViltModel.forward's (patch order does not change them)."""
    t = transformer().eval()
    tok = t.tokenize(["a red circle", "two big squares on the left"])
    images = torch.randn(2, 3, 32, 32)
    hidden, pooled = t.forward_pair(tok["input_ids"], tok["attention_mask"], images)
    ref = t.vilt(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"].long(), pixel_values=images)
    torch.testing.assert_close(hidden[:, :16], ref.last_hidden_state[:, :16], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(pooled, ref.pooler_output, atol=1e-5, rtol=1e-4)
    assert t.forward_text(**tok).shape == (2, 16, 32) and t.forward_image(images).shape == (2, 17, 32)


def test_bad_configs_are_named():
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        VLTransformer(config=CONFIG, context_length=32)
    with pytest.raises(ConfigError, match="vocab_size"):
        VLTransformer(config={**CONFIG, "vocab_size": 1000}, context_length=16)
    with pytest.raises(ConfigError, match="shortlist"):
        SingleStreamModel(transformer(), eval_mode="rerank")
    with pytest.raises(ConfigError, match="stem"):
        VLTransformer(config=CONFIG, context_length=16, stem="convolutional")


def test_conv_stem_replaces_the_patch_projection_and_keeps_one_token_per_patch():
    torch.manual_seed(0)
    conv = VLTransformer(config=CONFIG, context_length=16, stem="conv")
    assert isinstance(conv.vilt.embeddings.patch_embeddings, ConvStem)
    images = torch.randn(2, 3, 32, 32)
    tokens = conv.embed_image(images)
    assert tokens.shape == transformer().embed_image(images).shape == (2, 1 + (32 // 8) ** 2, 32)
    model = SingleStreamModel(conv, mining_pool=4)
    loss = model.training_step(batch(model, n=4), 0)
    loss.backward()  # the stem is trained: its first convolution gets a gradient
    assert conv.vilt.embeddings.patch_embeddings[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mlm_weight", [0.0, 1.0])
def test_itm_and_mlm_learn_a_fixed_batch(mlm_weight):
    model = SingleStreamModel(transformer(), mining_pool=4, mlm_weight=mlm_weight)
    b = batch(model)
    logged = {}
    model.log = lambda name, value, **k: logged.__setitem__(name, float(value.detach()))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for step in range(160):
        loss = model.training_step(b, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(dict(logged))
    if mlm_weight:  # (the ITM loss then leaves its plateau later)
        assert history[-1]["train/mlm_loss"] < 0.6 * history[0]["train/mlm_loss"]
    else:  # a cross-encoder first learns the 1:2 prior (BCE 0.637), leaves that plateau after ~60-80 steps,
        # then the per-step loss is noisy (negatives are sampled): judge the best of the last 40 steps
        late = min(h["train/itm_loss"] for h in history[-40:])
        assert late < 0.8 * history[0]["train/itm_loss"], (history[0]["train/itm_loss"], late)


def test_negatives_are_never_the_positive_and_hard_ones_stay_in_their_pool():
    model = SingleStreamModel(transformer(), itm_negatives="mined", mining_pool=4).eval()
    b = batch(model, n=8)
    for seed in range(5):
        neg_t, neg_i = model._negatives(b["input_ids"], b["attention_mask"], b["image"], torch.Generator().manual_seed(seed))
        own = torch.arange(8)
        assert (neg_t != own).all() and (neg_i != own).all()
        assert (neg_t // 4 == own // 4).all() and (neg_i // 4 == own // 4).all()  # mined within pools of 4
    with pytest.raises(ConfigError, match="at least 2"):
        model._negatives(b["input_ids"][:1], b["attention_mask"][:1], b["image"][:1], torch.Generator())


def test_rerank_with_every_candidate_is_full_scoring_and_k1_keeps_the_shortlist_top1():
    model = SingleStreamModel(transformer()).eval()
    torch.manual_seed(3)
    images = torch.randn(6, 3, 32, 32)
    tok = model.transformer.tokenize([f"a {WORDS[i % 8]}" for i in range(12)])
    t2i = torch.arange(6).repeat_interleave(2)
    shortlist = torch.randn(6, 12)
    full = full_scores(model.score, images, tok["input_ids"], tok["attention_mask"], batch_size=7)
    i2t, t2i_scores = rerank_scores(model.score, images, tok["input_ids"], tok["attention_mask"], shortlist, k=12)
    assert recall_from_scores(i2t, t2i, scores_t2i=t2i_scores) == recall_from_scores(full, t2i)
    i2t, t2i_scores = rerank_scores(model.score, images, tok["input_ids"], tok["attention_mask"], shortlist, k=1)
    res, ref = recall_from_scores(i2t, t2i, scores_t2i=t2i_scores), recall_from_scores(shortlist, t2i)
    assert res["i2t_r1"] == ref["i2t_r1"] and res["t2i_r1"] == ref["t2i_r1"]


def test_pretrained_vilt_loads_from_a_local_directory(tmp_path):
    """`pretrained:` takes a local ViltModel directory (what a downloaded ViLT checkpoint is), in train mode."""
    source = transformer(seed=7)
    source.vilt.save_pretrained(tmp_path / "vilt")
    loaded = VLTransformer(pretrained=str(tmp_path / "vilt"), context_length=16)
    for key, value in source.vilt.state_dict().items():
        assert torch.equal(loaded.vilt.state_dict()[key], value), key
    assert loaded.vilt.training  # from_pretrained hands back eval mode: dropout must not stay off
    from twostream.errors import WeightsNotAvailableError

    with pytest.raises(WeightsNotAvailableError, match="not available locally"):
        VLTransformer(pretrained=str(tmp_path / "missing"), context_length=16)


def test_itc_auxiliary_aligns_the_unimodal_passes_and_is_off_by_default():
    assert SingleStreamModel(transformer()).itc is None
    model = SingleStreamModel(transformer(), mining_pool=4, itc_weight=1.0)
    b = batch(model)
    logged = {}
    model.log = lambda name, value, **k: logged.__setitem__(name, float(value.detach()))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for step in range(60):
        loss = model.training_step(b, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(logged["train/itc_loss"])
    assert set(model.loss_terms) == {"itm_loss", "itc_loss"}  # NonFiniteGuard can name either
    assert min(history[-10:]) < 0.5 * history[0], (history[0], history[-10:])
