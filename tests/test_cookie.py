"""COOKIE: the weight-sharing transformer, knowledge sharing against frozen teachers, unimodal
evaluation, and a tiny cookie.yaml run through the CLI."""
import json
from pathlib import Path

import pytest
import torch
import yaml

from twostream.cli import run
from twostream.encoder import TwoStreamEncoder
from twostream.errors import ConfigError
from twostream.contrastive import InBatchContrastive
from twostream.methods.cookie import SharedTransformer, TextualKnowledgeSharing, VisualKnowledgeSharing
from twostream.methods.cookie.teacher import FrozenTeacher
from twostream.towers import OpenCLIPTextTower, OpenCLIPVisionTower

ROOT = Path(__file__).resolve().parents[1]
VISION = {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16}
TEXT = {"context_length": 16, "width": 32, "heads": 2, "layers": 1}


def towers(seed=0):
    torch.manual_seed(seed)
    return OpenCLIPVisionTower(config=VISION, embed_dim=16), OpenCLIPTextTower(config=TEXT, embed_dim=16)


def teacher_checkpoint(path: Path) -> Path:
    """A twostream state dict with vision.* and text.* tensors (what a `make teacher` run writes)."""
    if not path.exists():
        torch.save({"state_dict": TwoStreamEncoder(*towers(seed=1), embed_dim=16).state_dict()}, path)
    return path


def cookie(ckpt: Path, heads=("cross", "visual", "textual")) -> TwoStreamEncoder:
    made = {"cross": lambda: InBatchContrastive(name="cross_modal"),
            "visual": lambda: VisualKnowledgeSharing(OpenCLIPVisionTower(config=VISION, embed_dim=16), ckpt and str(ckpt)),
            "textual": lambda: TextualKnowledgeSharing(OpenCLIPTextTower(config=TEXT, embed_dim=16), ckpt and str(ckpt))}
    vision, text = towers()
    return TwoStreamEncoder(vision, text, heads=[made[h]() for h in heads], embed_dim=8,
                            shared=SharedTransformer(width=24, layers=1, heads=2))


def batch_for(model, n=8):
    words = ["red circle", "blue square", "green triangle", "red square", "blue circle", "green circle", "big star", "tiny box"]
    torch.manual_seed(1)
    batch = {"image": torch.randn(n, 3, 32, 32), "caption": [f"a {words[i % 8]} on the left" for i in range(n)],
             "image_index": torch.arange(n)}
    model.train()
    return model.on_before_batch_transfer(batch, 0)


def test_shared_transformer_is_one_module_for_both_streams_and_ignores_padding():
    shared = SharedTransformer(width=16, layers=1, heads=2)
    shared.bind(image_dim=8, text_dim=12)
    n_layer_params = sum(p.numel() for p in shared.layers.parameters())
    assert n_layer_params == sum(p.numel() for n, p in shared.named_parameters() if n.startswith("layers."))
    from twostream.towers.base import TowerOutput

    img = shared(TowerOutput(pooled=torch.zeros(2, 1), tokens=torch.randn(2, 5, 8)), "image")
    mask = torch.tensor([[True, True, False], [True, True, True]])
    tokens = torch.randn(2, 3, 12)
    txt = shared(TowerOutput(pooled=torch.zeros(2, 1), tokens=tokens, mask=mask), "text")
    changed = tokens.clone()
    changed[0, 2] = 100.0  # a padded position: must not change the pooled vector
    again = shared(TowerOutput(pooled=torch.zeros(2, 1), tokens=changed, mask=mask), "text")
    assert img.pooled.shape == (2, 16) and txt.tokens.shape == (2, 3, 16)
    torch.testing.assert_close(again.pooled, txt.pooled)
    with pytest.raises(ConfigError, match="multiple of heads"):
        SharedTransformer(width=10, heads=4)


def test_every_cookie_head_learns_and_teachers_get_no_gradient(tmp_path):
    model = cookie(teacher_checkpoint(tmp_path / "teacher.ckpt"))
    batch = batch_for(model)
    teachers = [h.teacher for h in model.heads[1:]]
    before = [{k: v.clone() for k, v in t.state_dict().items()} for t in teachers]
    assert all(not p.requires_grad for t in teachers for p in t.parameters())
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(40):
        total, logs = model.objective(model(batch), batch)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append({k: float(v) for k, v in logs.items() if k.endswith("_loss")})
    assert set(losses[0]) == {"cross_modal_loss", "visual_knowledge_sharing_loss", "textual_knowledge_sharing_loss"}
    # an untrained teacher embeds every noise image almost alike (cosine ~0.99), so its loss moves slower
    for key, factor in (("cross_modal_loss", 0.5), ("visual_knowledge_sharing_loss", 0.85),
                        ("textual_knowledge_sharing_loss", 0.85)):
        assert losses[-1][key] < factor * losses[0][key], (key, losses[0][key], losses[-1][key])
    assert all(p.grad is None for t in teachers for p in t.parameters())
    for t, b in zip(teachers, before):
        assert not t.training
        assert all(torch.equal(v, b[k]) for k, v in t.state_dict().items())
    model.hparams.total_steps = 10  # configure_optimizers without a trainer
    in_optimizer = {id(p) for g in model.configure_optimizers()["optimizer"].param_groups for p in g["params"]}
    assert not in_optimizer & {id(p) for t in teachers for p in t.parameters()}


def test_teacher_weights_come_from_the_checkpoint_and_misfits_are_errors(tmp_path):
    ckpt = teacher_checkpoint(tmp_path / "teacher.ckpt")
    saved = torch.load(ckpt)["state_dict"]
    teacher = FrozenTeacher(OpenCLIPTextTower(config=TEXT, embed_dim=16), str(ckpt), prefix="text.")
    torch.testing.assert_close(teacher.tower.state_dict()["net.token_embedding.weight"], saved["text.net.token_embedding.weight"])
    with pytest.raises(ConfigError, match="does not fit the teacher tower"):
        FrozenTeacher(OpenCLIPTextTower(config={**TEXT, "width": 64}, embed_dim=16), str(ckpt), prefix="text.")
    torch.save({"state_dict": {"something.else": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(ConfigError, match="has no vision"):
        FrozenTeacher(OpenCLIPVisionTower(config=VISION, embed_dim=16), str(tmp_path / "other.ckpt"), prefix="vision.")
    with pytest.raises(FileNotFoundError, match="missing.ckpt does not exist .`make teacher` writes"):
        FrozenTeacher(OpenCLIPVisionTower(config=VISION, embed_dim=16), str(tmp_path / "missing.ckpt"))


def test_textual_teacher_tokenizes_captions_itself():
    model = cookie(None, heads=("cross", "textual"))
    batch = batch_for(model, n=4)
    assert batch["textual_knowledge_sharing_input_ids"].shape == (4, 16)
    model.eval()
    eval_batch = model.on_before_batch_transfer({"caption": ["a red circle"], "text_index": torch.tensor([0])}, 0)
    assert "textual_knowledge_sharing_input_ids" not in eval_batch  # only training batches need it


def test_cookie_yaml_runs_through_the_cli_with_unimodal_metrics(tmp_path):
    ckpt = teacher_checkpoint(tmp_path / "teacher.ckpt")
    # the checkpoint's towers have open_clip's patch stem (cookie.yaml's teacher has the default's conv stem)
    vis_teacher = {"class_path": "twostream.towers.OpenCLIPVisionTower",
                   "init_args": {"embed_dim": 16, "config": VISION, "stem": "patch"}}
    txt_teacher = {"class_path": "twostream.towers.OpenCLIPTextTower", "init_args": {"embed_dim": 16, "config": TEXT}}
    override = {"model": {"init_args": {
        "vision": {"class_path": "twostream.towers.OpenCLIPVisionTower", "init_args": {"embed_dim": 16, "config": VISION}},
        "text": {"class_path": "twostream.towers.OpenCLIPTextTower", "init_args": {"embed_dim": 16, "config": TEXT}},
        "shared": {"class_path": "twostream.methods.cookie.SharedTransformer", "init_args": {"width": 24, "layers": 1, "heads": 2}},
        "heads": [{"class_path": "twostream.contrastive.InBatchContrastive", "init_args": {"name": "cross_modal"}},
                  {"class_path": "twostream.methods.cookie.VisualKnowledgeSharing",
                   "init_args": {"teacher": vis_teacher, "teacher_checkpoint": str(ckpt)}},
                  {"class_path": "twostream.methods.cookie.TextualKnowledgeSharing",
                   "init_args": {"teacher": txt_teacher, "teacher_checkpoint": str(ckpt)}}],
        "embed_dim": 16, "warmup_steps": 2}}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(override))
    cli = run(["fit", "--config", str(ROOT / "experiments/pretrain/cookie.yaml"), "--config", str(path),
               f"--data.init_args.root={tmp_path / 'data'}", "--data.init_args.num_train=64",
               "--data.init_args.num_val=16", "--data.init_args.num_test=40", "--data.init_args.batch_size=16",
               "--data.init_args.image_size=32", "--data.init_args.num_workers=0", "--trainer.max_epochs=1",
               "--trainer.enable_progress_bar=false", f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"])
    metrics = json.loads((Path(cli.trainer.logger.log_dir) / "metrics.json").read_text())
    assert {"rsum", "t2t_r1", "t2t_medr"} <= set(metrics)
    assert metrics["t2t_num_queries"] == 200  # 40 test images x 5 captions, each a query
    if "i2i_num_queries" in metrics:  # only when some test scenes repeat
        assert 0 < metrics["i2i_num_queries"] <= 40 and 0 <= metrics["i2i_r1"] <= 100
    teacher = cli.model.heads[1].teacher.tower.state_dict()
    saved = torch.load(ckpt)["state_dict"]
    assert all(torch.equal(v, saved[f"vision.{k}"]) for k, v in teacher.items())  # unchanged by training


def test_text_teacher_from_a_local_hf_model_directory(tmp_path):
    """A BERT-style teacher saved with save_pretrained: loaded by path, its own tokenizer, frozen."""
    from test_towers import _tiny_wordpiece

    from twostream.towers import HFTextTower

    _tiny_wordpiece(tmp_path / "tok")
    cfg = {"model_type": "bert", "vocab_size": 80, "hidden_size": 24, "num_hidden_layers": 1,
           "num_attention_heads": 2, "intermediate_size": 48}
    source = HFTextTower(config=cfg, tokenizer=str(tmp_path / "tok"), max_length=12)
    source.net.save_pretrained(tmp_path / "bert")
    source.tokenizer.save_pretrained(tmp_path / "bert")
    head = TextualKnowledgeSharing(HFTextTower(name_or_path=str(tmp_path / "bert"), max_length=12))
    vision, text = towers()
    model = TwoStreamEncoder(vision, text, heads=[InBatchContrastive(), head], embed_dim=8)
    b = batch_for(model, n=4)
    teacher_ids = b["textual_knowledge_sharing_input_ids"]
    assert teacher_ids.shape == (4, 12) and not torch.equal(teacher_ids[:, :12], b["input_ids"][:, :12])
    assert not head.teacher.training and not any(p.requires_grad for p in head.teacher.parameters())
    loss = model.objective(model(b), b)[1]["textual_knowledge_sharing_loss"]
    assert torch.isfinite(loss) and head.to_teacher.out_features == 24
