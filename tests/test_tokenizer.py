"""Visual tokenizer (VQ-VAE): the contract COTS' masked vision modeling codes against, training
behaviour (loss goes down, dead codes come back, state changes only once per optimizer step) and
`twostream fit --config experiments/tokenizer/vqvae.yaml` end to end (tiny sizes, offline)."""
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from twostream.data import CLIP_MEAN, CLIP_STD
from twostream.methods.cots.tokenizer import VectorQuantizer, VisualTokenizer, VisualTokenizerTrainer

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "experiments" / "tokenizer" / "vqvae.yaml")


def tiny(**kwargs) -> VisualTokenizer:
    return VisualTokenizer(**{"hidden": 16, "codebook_size": 32, "code_dim": 8, "num_res_blocks": 1, **kwargs})


def squares(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """CLIP-normalised images: grey background with one coloured square each."""
    g = torch.Generator().manual_seed(seed)
    images = torch.full((n, 3, size, size), 0.85)
    for i in range(n):
        side = int(torch.randint(size // 4, size // 2, (1,), generator=g))
        y, x = torch.randint(0, size - side, (2,), generator=g).tolist()
        images[i, :, y:y + side, x:x + side] = torch.rand(3, 1, 1, generator=g)
    return (images - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)


def test_encode_decode_shapes_and_dtypes():
    tok = tiny()
    codes = tok.encode(torch.randn(2, 3, 32, 48))
    assert codes.dtype == torch.long and codes.shape == (2, 4, 6)
    assert 0 <= int(codes.min()) and int(codes.max()) < tok.codebook_size
    images = tok.decode(codes)
    assert images.dtype == torch.float32 and images.shape == (2, 3, 32, 48)
    out = tok(torch.randn(2, 3, 32, 32))
    assert out["recon"].shape == (2, 3, 32, 32) and out["codes"].shape == (2, 4, 4)
    assert {"recon_loss", "vq_loss", "loss"} <= set(out) and out["loss"].requires_grad


@pytest.mark.parametrize(("downsample", "size", "grid"),
                         [(8, (64, 64), (8, 8)), (8, (32, 48), (4, 6)), (4, (64, 32), (16, 8)), (16, (224, 224), (14, 14))])
def test_grid_size(downsample, size, grid):
    tok = tiny(downsample=downsample)
    assert tok.downsample == downsample and tok.grid_size(size) == grid
    if max(size) <= 64:
        assert tuple(tok.encode(torch.randn(1, 3, *size)).shape[1:]) == grid


def test_bad_arguments_name_what_was_expected():
    with pytest.raises(ValueError, match="image_size: expected positive multiples of downsample=8"):
        tiny().grid_size((60, 64))
    with pytest.raises(ValueError, match="downsample: expected a power of 2"):
        tiny(downsample=6)
    with pytest.raises(ValueError, match=r"images: expected float \[B, 3, H, W\]"):
        tiny().encode(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match=r"codes: ids must lie in \[0, 32\)"):
        tiny().decode(torch.full((1, 2, 2), 32))


def test_save_from_file_round_trip_is_frozen_and_gives_identical_codes(tmp_path):
    torch.manual_seed(0)
    tok = tiny(downsample=4)
    tok.quantizer.step += 7  # buffers travel too
    path = tmp_path / "sub" / "tok.pt"
    tok.save(path)
    blob = torch.load(path, weights_only=True)
    assert blob["format"] == "twostream-visual-tokenizer" and blob["version"] == 1
    assert blob["config"]["downsample"] == 4 and blob["config"]["codebook_size"] == 32
    loaded = VisualTokenizer.from_file(path)
    images = torch.randn(3, 3, 32, 32)
    assert torch.equal(loaded.encode(images), tok.encode(images))
    assert int(loaded.quantizer.step) == 7
    assert not loaded.training and all(not p.requires_grad for p in loaded.parameters())


def test_from_file_errors_say_what_to_do(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="make tokenizer") as exc:
        VisualTokenizer.from_file(missing)
    assert str(missing) in str(exc.value)
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="is not a visual tokenizer file"):
        VisualTokenizer.from_file(tmp_path / "text.pt")
    torch.save({"state_dict": tiny().state_dict()}, tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match="is not a visual tokenizer file"):
        VisualTokenizer.from_file(tmp_path / "ckpt.pt")


def test_forward_changes_no_state():
    tok = tiny()
    before = {k: v.clone() for k, v in tok.state_dict().items()}
    tok(torch.randn(2, 3, 32, 32))
    assert all(torch.equal(before[k], v) for k, v in tok.state_dict().items())


def test_dead_code_restart_revives_codes_deterministically():
    def collapsed_then_restarted(seed: int) -> tuple[VectorQuantizer, torch.Tensor, list[int]]:
        torch.manual_seed(seed)
        q = VectorQuantizer(codebook_size=64, code_dim=8, beta=0.25)
        latents = torch.nn.functional.normalize(torch.rand(4, 4, 4, 8), dim=-1)  # 64 latents, positive orthant
        mean = torch.nn.functional.normalize(latents.reshape(-1, 8).mean(0), dim=0)
        with torch.no_grad():  # code 0 points at the data, the other 63 away from it: they can never win
            q.codebook.copy_(-mean.expand(64, 8))
            q.codebook[0] = mean
        assert q.lookup(latents).unique().tolist() == [0]
        restarted = []
        for _ in range(3):  # one optimizer step each: record usage, then restart
            out = q(latents)
            q.mark_used(q.used_mask(out["codes"]))
            restarted.append(q.restart_dead(out["latents"], dead_after=2))
        return q, latents, restarted

    q, latents, restarted = collapsed_then_restarted(0)
    assert restarted == [0, 63, 0]  # dead only after 2 unused steps; restarted codes get a fresh grace period
    assert len(q.lookup(latents).unique()) >= 63  # each restarted code copies a distinct current latent
    assert torch.equal(q.born[1:], torch.full((63,), 2))
    assert q.usage(window=1) >= 63 / 64 and q.usage(window=2) == 1.0
    again, _, _ = collapsed_then_restarted(0)
    assert torch.equal(again.codebook, q.codebook)  # seeded: the same restarts
    other, _, _ = collapsed_then_restarted(1)
    assert not torch.equal(other.codebook, q.codebook)


def test_loss_decreases_over_30_steps():
    torch.manual_seed(0)
    tok = tiny()
    images = squares(8)
    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = tok(images)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses


class _Images(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.images = squares(n, seed=1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "caption": "a square"}


def test_restarts_happen_once_per_optimizer_step(tmp_path):
    L.seed_everything(0)
    module = VisualTokenizerTrainer(tiny(), dead_code_steps=1, warmup_steps=1, export_path=str(tmp_path / "t.pt"))
    trainer = L.Trainer(max_steps=3, accumulate_grad_batches=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, DataLoader(_Images(24), batch_size=4))
    assert trainer.global_step == 3 and int(module.tokenizer.quantizer.step) == 3
    assert int(module.codes_restarted) > 0
    assert VisualTokenizer.from_file(tmp_path / "t.pt").codebook_size == 32  # exported at fit end


@pytest.mark.slow
def test_cli_fit_exports_a_loadable_tokenizer_and_recon_grid(tmp_path):
    from twostream.cli import run

    export = tmp_path / "tok" / "vqvae.pt"
    cli = run(["fit", "--config", CONFIG, f"--data.init_args.root={tmp_path / 'data'}", "--data.init_args.num_train=64",
               "--data.init_args.num_val=16", "--data.init_args.num_test=16", "--data.init_args.batch_size=16",
               "--data.init_args.num_workers=0", "--trainer.max_epochs=1",
               f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
               f"--model.init_args.export_path={export}"])
    tok = VisualTokenizer.from_file(export)
    assert tok.grid_size((64, 64)) == (8, 8) and tok.codebook_size == 512
    assert (tmp_path / "tok" / "vqvae_recon.png").is_file()
    run_dir = Path(cli.trainer.logger.log_dir)
    assert (run_dir / "recon.png").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    metrics = cli.trainer.callback_metrics  # the test run after fit replaced the fit's metrics here
    for key in ("test/recon_loss", "test/perplexity"):
        assert torch.isfinite(metrics[key]), key
    assert 0 < float(metrics["test/codebook_usage"]) <= 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    for key in ("val/recon_loss", "val/codebook_usage", "val/perplexity"):
        assert key in events.Tags()["scalars"], key
    assert "val/reconstructions" in events.Tags()["images"]
