"""VideoTower: shapes, mean pooling, the temporal transformer, and a fit through the CLI."""
import json
from pathlib import Path

import pytest
import torch

from twostream.cli import run
from twostream.errors import ConfigError
from twostream.towers import OpenCLIPVisionTower, TowerOutput, VideoTower

ROOT = Path(__file__).resolve().parents[1]
VIDEO_YAML = str(ROOT / "experiments" / "pretrain" / "video.yaml")


def frame_tower() -> OpenCLIPVisionTower:
    torch.manual_seed(0)
    return OpenCLIPVisionTower(embed_dim=24, config={"image_size": 16, "patch_size": 8, "width": 32, "layers": 1,
                                                     "head_width": 16})


def test_shapes_and_attributes():
    tower = VideoTower(frame_tower(), num_frames=4)
    out = tower(torch.randn(2, 3, 3, 16, 16))
    assert isinstance(out, TowerOutput) and out.mask is None
    assert out.pooled.shape == (2, 24) and out.tokens.shape == (2, 3, 24)
    assert tower.output_dim == 24 and tower.image_size == (16, 16) and tower.grid_size == (2, 2)


def test_mean_is_the_mean_of_frame_embeddings_and_images_are_one_frame_videos():
    frames = frame_tower()
    tower = VideoTower(frames).eval()
    video = torch.randn(2, 5, 3, 16, 16)
    with torch.no_grad():
        per_frame = torch.stack([frames(video[:, t]).pooled for t in range(5)], dim=1)
        out = tower(video)
        assert torch.allclose(out.pooled, per_frame.mean(1), atol=1e-5)
        assert torch.allclose(out.tokens, per_frame, atol=1e-5)
        images = video[:, 0]
        assert torch.allclose(tower(images).pooled, frames(images).pooled, atol=1e-5)


def test_transformer_starts_at_mean_pooling_learns_and_sees_frame_order():
    tower = VideoTower(frame_tower(), aggregation="transformer", num_frames=4, layers=1, heads=4)
    mean = VideoTower(tower.frame_tower)
    video = torch.randn(3, 4, 3, 16, 16)
    assert torch.allclose(tower(video).pooled, mean(video).pooled, atol=1e-6)  # zero-initialised residual
    tower(video).pooled.pow(2).sum().backward()
    grads = {n: p.grad for n, p in tower.named_parameters()}
    assert all(g is not None for g in grads.values())
    assert grads["temporal_proj.weight"].abs().sum() > 0 and grads["frame_tower.net.conv1.weight"].abs().sum() > 0
    torch.nn.init.normal_(tower.temporal_proj.weight)  # as if trained: the residual is open
    tower.zero_grad()
    tower(video).pooled.pow(2).sum().backward()
    assert tower.temporal_pos.grad.abs().sum() > 0 and tower.temporal.layers[0].linear1.weight.grad.abs().sum() > 0
    with torch.no_grad():
        reversed_video = video.flip(1)
        assert torch.allclose(mean(reversed_video).pooled, mean(video).pooled, atol=1e-5)  # order-free
        assert not torch.allclose(tower(reversed_video).pooled, tower(video).pooled, atol=1e-3)  # order-aware


def test_errors_name_the_setting():
    with pytest.raises(ConfigError, match="aggregation"):
        VideoTower(frame_tower(), aggregation="max")
    tower = VideoTower(frame_tower(), aggregation="transformer", num_frames=2)
    with pytest.raises(ValueError, match="num_frames=2"):
        tower(torch.randn(1, 3, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        tower(torch.randn(16, 16))


def test_video_config_fits_and_tests_through_the_cli(tmp_path):
    """The encoder needs nothing video-specific: video.yaml at tiny sizes, fit + test, metrics.json."""
    cli = run(["fit", "--config", VIDEO_YAML, f"--data.init_args.root={tmp_path / 'data'}",
               "--data.init_args.num_train=16", "--data.init_args.num_val=4", "--data.init_args.num_test=6",
               "--data.init_args.batch_size=8", "--data.init_args.num_workers=0", "--data.init_args.progress=false",
               "--trainer.max_epochs=1", "--trainer.check_val_every_n_epoch=1",
               f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"])
    run_dir = Path(cli.trainer.logger.log_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert all(0.0 <= metrics[k] <= 100.0 for k in ("i2t_r1", "i2t_r10", "t2i_r1", "t2i_r10"))
    assert metrics["t2i_r10"] == 100.0  # 6 test videos: every caption's video is in the top 10
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert isinstance(cli.model.vision, VideoTower) and cli.model.vision.aggregation == "transformer"
