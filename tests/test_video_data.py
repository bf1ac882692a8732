"""Video data: sampled decoding, MSR-VTT files and splits, dirty videos, synthetic moving shapes."""
import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader

from fixtures_video import (FRAMES_PER_VIDEO, frame_number, write_corrupt, write_empty, write_frames_folder,
                            write_msrvtt, write_numbered_video)
from twostream.cli import run
from twostream.data.datamodules.msrvtt import MSRVTTDataModule, VideoEvalDataset, VideoTrainDataset
from twostream.data.datamodules.synthetic_video import SyntheticVideoDataModule
from twostream.data.datamodules.transforms import ClipReader, ClipTransform
from twostream.data.formats.msrvtt import holdout_ids
from twostream.data.formats.video_io import DecodeStats, VideoSkip, read_clip, sample_frame_indices
from twostream.data.health import REPLACED, SkipReason, collate_with_skips
from twostream.data.synthetic.video import MotionClip, VideoShapesConfig, render_clip
from twostream.data.synthetic.video_dataset import ensure_video_dataset

ROOT = Path(__file__).resolve().parents[1]
RAW = dict(mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))  # ClipTransform that returns pixel values


def numbers(frames) -> list[int]:
    """Frame numbers of [T, H, W, 3] arrays or raw [T, 3, H, W] tensors."""
    if isinstance(frames, torch.Tensor):
        frames = frames.permute(0, 2, 3, 1).numpy()
    return [frame_number(f) for f in frames]


@pytest.fixture(scope="module")
def msrvtt(tmp_path_factory):
    return write_msrvtt(tmp_path_factory.mktemp("msrvtt"))


def datamodule(fx, **kwargs) -> MSRVTTDataModule:
    args = dict(root=str(fx.root), annotations=str(fx.annotations), val_split="test", num_frames=4, image_size=32,
                batch_size=5, eval_batch_size=4, num_workers=0)
    return MSRVTTDataModule(**{**args, **kwargs})


# ----------------------------------------------------------------------------- sampling and decoding
def test_segment_sampling_is_centred_in_eval_and_keyed_in_training():
    assert sample_frame_indices(30, 5) == [3, 9, 15, 21, 27]
    assert sample_frame_indices(3, 5) == [0, 0, 1, 2, 2]  # short videos repeat frames
    draws = [sample_frame_indices(30, 5, random.Random(key)) for key in range(20)]
    for draw in draws:
        assert all(6 * i <= idx < 6 * (i + 1) for i, idx in enumerate(draw))
    assert draws[7] == sample_frame_indices(30, 5, random.Random(7))
    assert len({tuple(d) for d in draws}) > 15


@pytest.mark.parametrize("gop", [4, 16])
def test_sampled_decoding_returns_exactly_the_sampled_frames(tmp_path, gop):
    path = write_numbered_video(tmp_path / "v.mp4", 48, gop=gop)
    for rng_seed in (None, 1, 2, 3):
        stats = DecodeStats()
        frames = read_clip(path, 6, None if rng_seed is None else random.Random(rng_seed), stats)
        expected = sample_frame_indices(48, 6, None if rng_seed is None else random.Random(rng_seed))
        assert numbers(frames) == expected
        assert frames.shape == (6, 32, 40, 3)
        assert stats.converted == 6
        assert stats.decoded <= 6 * gop and stats.decoded <= 48  # forward from a keyframe, never past the last target
    stats = DecodeStats()
    read_clip(path, 2, None, stats)  # targets 12 and 36: with gop 4 two seeks, 2 frames each
    assert (stats.seeks, stats.decoded) == ((2, 2) if gop == 4 else (2, 13 + 5))


def test_without_a_frame_rate_frames_are_counted_from_the_start(tmp_path):
    import av

    from twostream.data.formats.video_io import _decode_targets

    path = write_numbered_video(tmp_path / "v.mp4", 20)
    with av.open(str(path)) as container:
        stats = DecodeStats()
        frames = _decode_targets(container, container.streams.video[0], [3, 3, 11, 25], None, stats)
    assert {k: frame_number(v) for k, v in frames.items()} == {3: 3, 11: 11, 25: 19}  # past the end: last frame
    assert stats.seeks == 0 and stats.decoded == 20


def test_frames_folder_gives_the_same_frames(tmp_path):
    folder = write_frames_folder(tmp_path / "video7", 20)
    assert numbers(read_clip(folder, 4)) == sample_frame_indices(20, 4)
    assert numbers(read_clip(folder, 4, random.Random(5))) == sample_frame_indices(20, 4, random.Random(5))


@pytest.mark.parametrize("make, reason", [
    (lambda d: write_corrupt(d / "x.mp4"), SkipReason.UNDECODABLE_VIDEO),
    (lambda d: write_empty(d / "x.mp4"), SkipReason.EMPTY_VIDEO),
    (lambda d: d / "absent.mp4", SkipReason.MISSING_FILE),
    (lambda d: (d / "frames").mkdir() or d / "frames", SkipReason.EMPTY_VIDEO),
    (lambda d: write_corrupt(write_frames_folder(d / "f", 4) / "000002.jpg").parent, SkipReason.CORRUPT_IMAGE),
])
def test_bad_videos_are_skips_not_crashes(tmp_path, make, reason):
    with pytest.raises(VideoSkip) as err:
        read_clip(make(tmp_path), 4)
    assert err.value.reason == reason


def test_clip_transform_resizes_and_crops_every_frame_alike(tmp_path):
    path = write_numbered_video(tmp_path / "v.mp4", 8)
    clip = ClipReader(4, ClipTransform(24, **RAW))(path)
    assert clip.shape == (4, 3, 24, 24)
    assert numbers(clip) == sample_frame_indices(8, 4)
    augmented = ClipTransform(24, **RAW, augment=True)
    frames = read_clip(path, 4)
    assert torch.equal(augmented(frames, random.Random(3)), augmented(frames, random.Random(3)))


# ----------------------------------------------------------------------------- MSR-VTT
def test_msrvtt_9k_and_1ka_counts_and_names(msrvtt):
    dm = datamodule(msrvtt)
    dm.setup("fit")
    dm.setup("test")
    train, test = dm.get_split("train"), dm.get_split("test")
    assert [Path(p).stem for p in train.image_paths] == msrvtt.train_videos
    assert (test.num_images, test.num_captions) == (msrvtt.test_videos, msrvtt.test_captions)
    assert dm.get_split("val") is test
    assert Counter(reason for reason, _ in dm.load_skips) == msrvtt.load_skips
    assert dm.split_names == {"train": "9k", "val": "1k-A (test)", "test": "1k-A"}
    assert "video1 caption 2" not in train.captions and len(train.captions) == 3 * 10 - 1


def test_training_replaces_bad_videos_deterministically(msrvtt):
    dm = datamodule(msrvtt, image_size=32)
    split = dm.get_split("train")
    reader = ClipReader(4, ClipTransform(32, **RAW))
    dataset = VideoTrainDataset(split, reader, seed=0)
    items = [dataset[key] for key in range(len(dataset))]
    skipped = [s for item in items for s in item.get(REPLACED, [])]
    assert sorted(skipped) == sorted((reason, vid) for vid, reason in msrvtt.train_runtime_bad.items())
    bad_position = msrvtt.train_videos.index("video3")
    assert items[bad_position]["image_index"] == bad_position + 1  # the next good video
    fresh = VideoTrainDataset(split, reader, seed=0)  # e.g. after a resume: same key -> same sample
    for key in (0, bad_position, 13):
        again = fresh[key]
        assert torch.equal(again["image"], dataset[key]["image"]) and again["caption"] == dataset[key]["caption"]
    offsets = {tuple(numbers(dataset[k * len(dataset)]["image"])) for k in range(8)}  # video0, epochs 0..7
    assert len(offsets) > 3
    assert all(all(4 * i <= n < 4 * (i + 1) for i, n in enumerate(o)) for o in offsets)


def test_train_loader_batches_keep_their_size_and_carry_skips(msrvtt):
    dm = datamodule(msrvtt)
    batches = list(dm.train_dataloader())
    assert [b["image"].shape for b in batches] == [torch.Size([5, 4, 3, 32, 32])] * 2
    skipped = [s for b in batches for s in b.get(REPLACED, [])]
    assert Counter(r for r, _ in skipped) == Counter(msrvtt.train_runtime_bad.values())


def test_eval_scores_bad_videos_as_blank_and_reports_them(msrvtt):
    dm = datamodule(msrvtt)
    videos, captions = dm.test_dataloader()
    batches = list(videos)
    assert sum(b["image"].shape[0] for b in batches) == msrvtt.test_videos
    skipped = {key: reason for b in batches for reason, key in b.get(REPLACED, [])}
    assert skipped == msrvtt.test_runtime_bad
    centred = read_clip(msrvtt.root / "video100.mp4", 4)
    reader = dm.clip_reader()
    assert torch.equal(batches[0]["image"][0], reader.transform(centred))
    assert sum(len(b["caption"]) for b in captions) == msrvtt.test_captions


def test_holdout_validation_and_official_splits(msrvtt):
    dm = datamodule(msrvtt, val_split="holdout", val_holdout=3)
    val_ids = {Path(p).stem for p in dm.get_split("val").image_paths}
    train_ids = {Path(p).stem for p in dm.get_split("train").image_paths}
    assert val_ids == holdout_ids(msrvtt.pool_9k, 3) and not val_ids & train_ids
    assert holdout_ids(list(reversed(msrvtt.pool_9k)), 3) == val_ids  # independent of file order
    assert dm.split_names == {"train": "9k-holdout3", "val": "holdout3-of-9k", "test": "1k-A"}
    full = datamodule(msrvtt, train_split="full", test_split="full", val_split="holdout")
    assert {Path(p).stem for p in full.get_split("val").image_paths} == set(msrvtt.official["validate"])
    assert full.get_split("test").num_captions == 3 * 6
    seven = datamodule(msrvtt, train_split="7k")
    assert [Path(p).stem for p in seven.get_split("train").image_paths] == [f"video{i}" for i in range(8)]


def test_pre_extracted_frames_folder(msrvtt):
    dm = datamodule(msrvtt, frames_dir=str(msrvtt.frames_dir))
    split = dm.get_split("train")
    assert all(Path(p).is_dir() for p in split.image_paths)  # bad videos have no frames folder: dropped
    assert len(split.image_paths) == len(msrvtt.train_videos) - len(msrvtt.train_runtime_bad)
    clip = VideoEvalDataset(split, ClipReader(4, ClipTransform(32, **RAW)))[0]["image"]
    assert numbers(clip) == sample_frame_indices(FRAMES_PER_VIDEO, 4)


def test_wrong_root_is_an_error_naming_the_path(msrvtt, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        datamodule(msrvtt, root=str(tmp_path)).get_split("test")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}.*MSRVTT_train.9k.csv"):
        datamodule(msrvtt, annotations=str(tmp_path)).get_split("train")
    with pytest.raises(FileNotFoundError, match="MSRVTT_data.json"):
        datamodule(msrvtt, annotations=str(tmp_path), train_split="full").get_split("train")
    with pytest.raises(ValueError, match="train_split"):
        datamodule(msrvtt, train_split="8k")


def test_fit_and_test_through_the_cli_on_msrvtt_files(msrvtt, tmp_path, capsys):
    """msrvtt.yaml with tiny towers: DataHealth counts exactly what the fixture broke."""
    tiny = {"trainer": {"accelerator": "cpu", "devices": 1, "precision": "32-true", "max_epochs": 1,
                        "check_val_every_n_epoch": 1, "log_every_n_steps": 1,
                        "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                                   "init_args": {"save_dir": str(tmp_path / "runs"), "name": "msrvtt"}},
                        "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {
                                           "monitor": "val/rsum", "mode": "max", "save_last": True,
                                           "filename": "best-{epoch}"}},
                                      {"class_path": "twostream.callbacks.DataHealth",
                                       "init_args": {"max_bad_fraction": 0.5}},  # over a third of the fixture is bad
                                      {"class_path": "twostream.callbacks.RunSummary"}]},
            "model": {"init_args": {"embed_dim": 32, "warmup_steps": 1, "vision": {"init_args": {
                "frame_tower": {"class_path": "twostream.towers.OpenCLIPVisionTower", "init_args": {
                    "model_name": None, "embed_dim": 32,
                    "config": {"image_size": 32, "patch_size": 16, "width": 32, "layers": 1, "head_width": 16}}}}},
                "text": {"init_args": {"model_name": None, "embed_dim": 32,
                                       "config": {"context_length": 16, "width": 32, "heads": 2, "layers": 1}}}}},
            "data": {"init_args": {"root": str(msrvtt.root), "annotations": str(msrvtt.annotations),
                                   "val_split": "test", "num_frames": 4, "image_size": 32, "batch_size": 5,
                                   "eval_batch_size": 4, "num_workers": 0}}}
    override = tmp_path / "tiny.yaml"
    override.write_text(json.dumps(tiny))  # JSON is YAML
    cli = run(["fit", "--config", str(ROOT / "experiments/finetune/msrvtt.yaml"), "--config", str(override)])
    run_dir = Path(cli.trainer.logger.log_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["t2i_r1"] <= 100 and metrics["rsum"] > 0
    assert (run_dir / "checkpoints" / "best-epoch=0.ckpt").is_file()  # selected on val/rsum
    events = EventAccumulator(cli.trainer.logger.log_dir)
    events.Reload()
    logged = {tag.removeprefix("data/skipped_"): events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]
              if tag.startswith("data/skipped_") and tag != "data/skipped_fraction"}
    assert logged == msrvtt.load_skips + Counter(msrvtt.train_runtime_bad.values())  # epoch 0, all of train seen
    assert "test: skipped 2 of 6 samples" in capsys.readouterr().out  # video102, video104 scored blank
    assert cli.datamodule.split_names["test"] == "1k-A"


# ----------------------------------------------------------------------------- synthetic moving shapes
def test_one_frame_cannot_tell_the_direction():
    left = MotionClip("circle", "red", "left", "light")
    right = MotionClip("circle", "red", "right", "light")
    a, b = render_clip(left, 8, 32, seed=5), render_clip(right, 8, 32, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, reversed(b)))  # same frames, opposite order
    assert not np.array_equal(a[0], a[-1])


def test_synthetic_video_generated_once_in_msrvtt_format(tmp_path):
    cfg = VideoShapesConfig(num_train=6, num_val=2, num_test=3, frames_per_video=8, image_size=32)
    folder = ensure_video_dataset(tmp_path, cfg, progress=False)
    stamp = (folder / "MSRVTT_data.json").stat().st_mtime_ns
    assert ensure_video_dataset(tmp_path, cfg, progress=False) == folder
    assert (folder / "MSRVTT_data.json").stat().st_mtime_ns == stamp  # reused, not regenerated
    assert not list(tmp_path.glob(".tmp-*"))
    data = json.loads((folder / "MSRVTT_data.json").read_text())
    assert Counter(v["split"] for v in data["videos"]) == {"train": 6, "validate": 2, "test": 3}
    assert "start time" in data["videos"][0] and len(data["sentences"]) == 3 * 11
    other = ensure_video_dataset(tmp_path, VideoShapesConfig(num_train=7, num_val=2, num_test=3, frames_per_video=8,
                                                             image_size=32), progress=False)
    assert other != folder
    dm = SyntheticVideoDataModule(root=str(tmp_path), num_train=6, num_val=2, num_test=3, frames_per_video=8,
                                  image_size=32, num_frames=4, batch_size=3, progress=False)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (3, 4, 3, 32, 32) and dm.load_skips == []
    assert dm.eval_split_sizes("test") == (3, 9)


def test_collate_with_skips_is_used_for_every_loader(msrvtt):
    dm = datamodule(msrvtt)
    loaders = [dm.train_dataloader(), *dm.val_dataloader(), *dm.test_dataloader()]
    assert all(isinstance(dl, DataLoader) and dl.collate_fn is collate_with_skips for dl in loaders)
