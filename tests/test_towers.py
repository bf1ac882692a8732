"""Towers build offline from config, return TowerOutput, and fail clearly on unavailable weights."""
import pytest
import torch

from twostream.errors import ConfigError, WeightsNotAvailableError
from twostream.towers import HFTextTower, OpenCLIPTextTower, OpenCLIPVisionTower

TINY_V = {"image_size": 32, "patch_size": 8, "width": 64, "layers": 1, "head_width": 32}
TINY_T = {"context_length": 16, "width": 64, "heads": 2, "layers": 1}


def test_open_clip_towers_shapes():
    v = OpenCLIPVisionTower(config=TINY_V, embed_dim=24)
    out = v(torch.randn(3, 3, 32, 32))
    assert out.pooled.shape == (3, 24) and out.tokens.shape == (3, 16, 64)
    assert v.grid_size == (4, 4)
    t = OpenCLIPTextTower(config=TINY_T, embed_dim=24)
    enc = t.tokenize(["a red circle", "two small blue squares above a star"])
    assert enc["input_ids"].shape == (2, 16)
    out = t(**enc)
    assert out.pooled.shape == (2, 24) and out.tokens.shape == (2, 16, 64)
    assert out.mask.sum(1).tolist() == enc["attention_mask"].sum(1).tolist()


def test_wrong_image_size_is_named():
    v = OpenCLIPVisionTower(config=TINY_V, embed_dim=8)
    with pytest.raises(ValueError, match="expects \\(32, 32\\) images"):
        v(torch.randn(1, 3, 64, 64))


def test_unknown_open_clip_key_and_model_list_valid_ones():
    with pytest.raises(ConfigError, match="valid keys"):
        OpenCLIPVisionTower(config={**TINY_V, "widht": 3}, embed_dim=8)
    with pytest.raises(ConfigError, match="ViT-B-16"):
        OpenCLIPVisionTower(model_name="ViT-Nope")


def test_pretrained_tag_not_cached_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(WeightsNotAvailableError, match="local weights file"):
        OpenCLIPVisionTower(model_name="ViT-B-32", pretrained="laion2b_s34b_b79k")
    with pytest.raises(ConfigError, match="valid tags"):
        OpenCLIPVisionTower(model_name="ViT-B-32", pretrained="no_such_tag")
    with pytest.raises(WeightsNotAvailableError, match="does not exist"):
        OpenCLIPVisionTower(config=TINY_V, embed_dim=8, pretrained=str(tmp_path / "missing.pt"))


def test_local_weights_file_round_trip(tmp_path):
    torch.manual_seed(0)
    src_v = OpenCLIPVisionTower(config=TINY_V, embed_dim=8)
    src_t = OpenCLIPTextTower(config=TINY_T, embed_dim=8)
    state = {f"visual.{k}": v for k, v in src_v.net.state_dict().items()}
    state.update(src_t.net.state_dict())  # CLIP layout: text keys at top level
    state["logit_scale"] = torch.tensor(1.0)
    path = tmp_path / "clip.pt"
    torch.save(state, path)
    v = OpenCLIPVisionTower(config=TINY_V, embed_dim=8, pretrained=str(path))
    t = OpenCLIPTextTower(config=TINY_T, embed_dim=8, pretrained=str(path))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(v(x).pooled, src_v(x).pooled)
    ids = t.tokenize(["a cat"])
    torch.testing.assert_close(t(**ids).pooled, src_t(**ids).pooled)


def _tiny_wordpiece(path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(["a red circle left of a blue square", "small green star above"] * 10,
                            trainers.WordPieceTrainer(vocab_size=80, special_tokens=specials))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(path)
    return fast


def test_hf_text_tower_from_config_and_local_dir(tmp_path):
    _tiny_wordpiece(tmp_path / "tok")
    cfg = {"model_type": "bert", "vocab_size": 80, "hidden_size": 32, "num_hidden_layers": 1,
           "num_attention_heads": 2, "intermediate_size": 64}
    tower = HFTextTower(config=cfg, tokenizer=str(tmp_path / "tok"), pooling="mean", max_length=12).eval()
    enc = tower.tokenize(["a red circle", "a small green star above a blue square"])
    out = tower(**enc)
    assert out.pooled.shape == (2, 32) and out.tokens.shape == (2, 12, 32)
    tower.net.save_pretrained(tmp_path / "model")
    tower.tokenizer.save_pretrained(tmp_path / "model")
    again = HFTextTower(name_or_path=str(tmp_path / "model"), pooling="mean", max_length=12)
    # from_pretrained hands back eval mode; a tower that will train must not keep dropout off
    assert all(m.training for m in again.modules())
    torch.testing.assert_close(again.eval()(**enc).pooled, out.pooled)


def test_hf_hub_id_not_cached_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsNotAvailableError, match="local directory"):
        HFTextTower(name_or_path="bert-base-uncased")
