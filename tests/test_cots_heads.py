"""The COTS objectives on a tiny encoder: values against hand computations, masks, learning, errors."""
import pytest
import torch

from cots_utils import tiny_tokenizer
from twostream.encoder import TwoStreamEncoder
from twostream.errors import ConfigError
from twostream.contrastive import InBatchContrastive
from twostream.methods.cots import KLAlignment, MaskedLanguageModeling, MaskedVisionModeling, MomentumContrastive
from twostream.masking import block_patch_mask, mask_tokens, random_patch_mask
from twostream.methods.cots import MomentumQueue, momentum_keys
from twostream.towers import OpenCLIPTextTower, OpenCLIPVisionTower


def encoder(heads, queue: int | None = 64, vocab: int = 49409, image_size: int = 32) -> TwoStreamEncoder:
    torch.manual_seed(0)
    vision = OpenCLIPVisionTower(config={"image_size": image_size, "patch_size": 8, "width": 32, "layers": 1,
                                         "head_width": 16}, embed_dim=16)
    text = OpenCLIPTextTower(config={"context_length": 16, "width": 32, "heads": 2, "layers": 1,
                                     "vocab_size": vocab, "no_causal_mask": True}, embed_dim=16)
    return TwoStreamEncoder(vision, text, heads=heads, embed_dim=8,
                            state={"momentum": MomentumQueue(queue)} if queue else None)


def batch_for(model, n=6, ids=None):
    words = ["red circle", "blue square", "green triangle", "red square", "blue circle", "green circle"]
    batch = {"image": torch.randn(n, 3, 32, 32), "caption": [f"a {words[i % 6]} on the left" for i in range(n)],
             "image_index": torch.tensor(ids if ids is not None else list(range(n)))}
    return model.on_before_batch_transfer(batch, 0)


def outputs(model, batch, step=0):
    out = model(batch)
    out.generator = torch.Generator().manual_seed(step)
    model.annotate(out, batch)
    return out


def test_momentum_contrastive_with_empty_queue_equals_in_batch_contrastive():
    """At init the momentum towers equal the online ones, so keys = embeddings: same loss value."""
    model = encoder([MomentumContrastive(), InBatchContrastive()])
    batch = batch_for(model)
    out = outputs(model, batch)
    moco = model.heads[0](out, batch)["momentum_contrastive_loss"]
    itc = model.heads[1](out, batch)["contrastive_loss"]
    torch.testing.assert_close(moco, itc)


def test_momentum_contrastive_counts_same_image_keys_as_positives():
    model = encoder([MomentumContrastive()])
    batch = batch_for(model, n=4, ids=[7, 7, 8, 9])
    q = model.state["momentum"]
    q.enqueue(torch.nn.functional.normalize(torch.randn(3, 8), dim=-1),
              torch.nn.functional.normalize(torch.randn(3, 8), dim=-1), torch.tensor([8, 1, 2]))
    out = outputs(model, batch)
    _, text_keys, key_ids, own, ids = model.heads[0].candidates(out, batch, q)
    assert key_ids.tolist() == [7, 7, 8, 9, 8, 1, 2] and own.tolist() == [0, 1, 2, 3]
    from twostream.methods.cots.momentum_contrastive import positive_targets

    t = positive_targets(ids, key_ids, own)
    assert t[0].tolist() == [0.5, 0.5, 0, 0, 0, 0, 0]  # the other caption of image 7 shares the mass
    assert t[2].tolist() == [0, 0, 0.5, 0, 0.5, 0, 0]  # image 8 also sits in the queue
    logits = out.image_emb @ text_keys.T / out.temperature
    expected_i2t = -(t * logits.log_softmax(1)).sum(1)
    logits_t2i = out.text_emb @ torch.cat([momentum_keys(out)[0], q.queue()[0]]).T / out.temperature
    expected = (0.5 * (expected_i2t - (t * logits_t2i.log_softmax(1)).sum(1))).mean()
    torch.testing.assert_close(model.heads[0](out, batch)["momentum_contrastive_loss"], expected)


def test_kl_alignment_matches_hand_computation_and_respects_stop_gradient():
    model = encoder([KLAlignment()])
    q = model.state["momentum"]
    q.enqueue(torch.nn.functional.normalize(torch.randn(5, 8), dim=-1),
              torch.nn.functional.normalize(torch.randn(5, 8), dim=-1), torch.arange(5) + 100)
    batch = batch_for(model)
    out = outputs(model, batch)
    img_q, txt_q, _ = q.queue()
    tau = out.temperature
    p = torch.cat([(out.image_emb * momentum_keys(out)[1]).sum(-1, keepdim=True), out.image_emb @ txt_q.T], 1).div(tau).softmax(1)
    r = torch.cat([(out.text_emb * momentum_keys(out)[0]).sum(-1, keepdim=True), out.text_emb @ img_q.T], 1).div(tau).softmax(1)
    expected = (p * (p.log() - r.log())).sum(1).mean()
    loss = model.heads[0](out, batch)["kl_alignment_loss"]
    torch.testing.assert_close(loss, expected)
    # stop-gradient on the target (P_i2t): only the text->image side receives gradient from this loss
    image_grad = torch.autograd.grad(loss, out.image_emb, retain_graph=True, allow_unused=True)[0]
    text_grad = torch.autograd.grad(loss, out.text_emb, retain_graph=True)[0]
    assert image_grad is None or image_grad.abs().max() == 0
    assert text_grad.abs().max() > 0
    sym = KLAlignment(direction="symmetric", stop_grad_target=False)
    sym.attach(model)
    assert torch.autograd.grad(sym(out, batch)["kl_alignment_loss"], out.image_emb)[0].abs().max() > 0


def test_mlm_masks_only_real_tokens_in_bert_proportions():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 1000, (400, 50))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, :2] = False
    masked, selected = mask_tokens(ids, maskable, 5000, (1, 1000), g)
    assert not selected[:, :2].any()
    assert selected.float().mean().item() == pytest.approx(0.15 * 48 / 50, abs=0.01)
    sel = masked[selected]
    assert (sel == 5000).float().mean().item() == pytest.approx(0.8, abs=0.03)
    assert (masked[~selected] == ids[~selected]).all()
    kept = (sel == ids[selected]).float().mean().item()
    assert kept == pytest.approx(0.1, abs=0.02)  # 10 % kept on purpose (random draws hit the same id 0.1 % of the time)


def test_patch_masks_have_the_exact_count():
    g = torch.Generator().manual_seed(0)
    for draw in (random_patch_mask, block_patch_mask):
        m = draw(8, (8, 8), 0.4, g)
        assert m.shape == (8, 64) and (m.sum(1) == 26).all()
    # block masks are spatially clustered: masked neighbours far more often than at random
    def neighbours(m):
        grid = m.view(-1, 8, 8).float()
        return (grid[:, :, 1:] * grid[:, :, :-1]).sum() / grid.sum()
    assert neighbours(block_patch_mask(64, (8, 8), 0.4, g)) > neighbours(random_patch_mask(64, (8, 8), 0.4, g)) + 0.1


@pytest.mark.parametrize("head_cls", ["mlm", "mvm"])
def test_token_level_heads_learn_a_fixed_batch(tmp_path, head_cls):
    head = MaskedLanguageModeling() if head_cls == "mlm" else MaskedVisionModeling(tokenizer=str(tiny_tokenizer(tmp_path / "t.pt")))
    model = encoder([head], queue=None)
    batch = batch_for(model, n=8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        out = outputs(model, batch, step=step % 3)
        loss = model.heads[0](out, batch)[f"{head_cls}_loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    if head_cls == "mvm":
        assert all(p.grad is None for p in head.tokenizer.parameters())  # frozen tokenizer
        assert not head.tokenizer.training


def test_configuration_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="needs a visual tokenizer"):
        MaskedVisionModeling()
    with pytest.raises(ConfigError, match="KLAlignment needs MomentumQueue training state"):
        encoder([KLAlignment()], queue=None)
    with pytest.raises(ConfigError, match="MomentumContrastive needs MomentumQueue training state: add it to model.init_args.state"):
        encoder([MomentumContrastive()], queue=None)
    with pytest.raises(ConfigError, match="vocab_size to 49409"):
        encoder([MaskedLanguageModeling()], queue=None, vocab=49408)
    from twostream.methods.cots.tokenizer import VisualTokenizer

    VisualTokenizer(downsample=16, hidden=16, codebook_size=32, code_dim=8).save(tmp_path / "t16.pt")
    with pytest.raises(ConfigError, match=r"\(2, 2\) token grid for \(32, 32\) images, but the vision tower has a \(4, 4\)"):
        encoder([MaskedVisionModeling(tokenizer=str(tmp_path / "t16.pt"))], queue=None)
    from twostream.towers import VideoTower

    video = encoder([], queue=None)
    video.vision = VideoTower(video.vision, num_frames=2)
    with pytest.raises(ConfigError, match="VideoTower cannot"):
        MaskedVisionModeling(tokenizer=str(tmp_path / "t16.pt")).attach(video)
    with pytest.raises(FileNotFoundError, match="make tokenizer"):
        encoder([MaskedVisionModeling(tokenizer=str(tmp_path / "missing.pt"))], queue=None)


def test_cli_refuses_a_queue_smaller_than_the_global_batch(tmp_path):
    from cots_utils import cots_args, cots_override
    from twostream.cli import run

    override = cots_override(tmp_path, heads=[{"class_path": "twostream.methods.cots.MomentumContrastive"}])
    with pytest.raises(ConfigError, match=r"queue_size \(8\) is smaller than the global batch \(16 per device x 1 "
                                          r"devices x 2 accumulated = 32\)"):
        run(["fit", *cots_args(tmp_path, override, "--model.init_args.state.momentum.init_args.queue_size=8",
                               "--trainer.accumulate_grad_batches=2")])


def test_state_is_updated_without_a_listed_callback_and_the_old_callback_still_works(tmp_path):
    """The encoder adds TrainingStateCallback itself; an old config's MomentumQueueCallback is
    honoured for one release (its momentum reaches the queue) with a FutureWarning."""
    import yaml

    from cots_utils import cots_args, cots_override
    from twostream.callbacks import TrainingStateCallback
    from twostream.cli import run

    override = cots_override(tmp_path, heads=[{"class_path": "twostream.methods.cots.MomentumContrastive"}])
    cli = run(["fit", *cots_args(tmp_path, override, "--test_after_fit=false", "--trainer.limit_val_batches=0")])
    assert sum(isinstance(cb, TrainingStateCallback) for cb in cli.trainer.callbacks) == 1
    assert int(cli.model.state["momentum"].filled) == 48  # 4 steps x 16 pairs, wrapped at 48
    config = yaml.safe_load(override.read_text())
    config["trainer"] = {"callbacks": [{"class_path": "twostream.callbacks.MomentumQueueCallback",
                                        "init_args": {"momentum": 0.5}}]}
    override.write_text(yaml.safe_dump(config))
    with pytest.warns(FutureWarning, match="MomentumQueueCallback is deprecated"):
        cli = run(["fit", *cots_args(tmp_path, override, "--test_after_fit=false", "--trainer.limit_val_batches=0")])
    assert cli.model.state["momentum"].momentum == 0.5
    assert [type(cb).__name__ for cb in cli.trainer.callbacks].count("MomentumQueueCallback") == 1
    assert sum(isinstance(cb, TrainingStateCallback) for cb in cli.trainer.callbacks) == 1
