"""``SyntheticVideoDataModule``: moving-shapes clips generated on first use, read as MSR-VTT.

Why the MSR-VTT format: the files are real mp4s plus an ``MSRVTT_data.json`` (official-split
style: train / validate / test, several sentences per video), so the synthetic data goes through
the same reader, decoder and DataModule as MSR-VTT itself (``train_split="full"``,
``test_split="full"``) and the CPU-tested path is the benchmark path. The folder is named by a
hash of the generation parameters: a changed parameter regenerates, a finished folder is reused.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from tqdm.auto import tqdm

from twostream.data.generated import generate_once
from twostream.data.karpathy import RetrievalSplit
from twostream.data.msrvtt import DATA_JSON, MSRVTTDataModule
from twostream.data.retrieval_datamodule import CLIP_MEAN, CLIP_STD
from twostream.data.synthetic_video import GENERATOR_VERSION, VideoShapesConfig, generate_split, render_clip, write_mp4

VIDEOS_DIR = "videos"
OFFICIAL = {"train": "train", "val": "validate", "test": "test"}  # our split -> MSRVTT_data.json "split"


def dataset_dir(root: str | os.PathLike, cfg: VideoShapesConfig) -> Path:
    return Path(root) / cfg.fingerprint()


def ensure_video_dataset(root: str | os.PathLike, cfg: VideoShapesConfig, progress: bool = True) -> Path:
    """The dataset folder for ``cfg``, generated first (into a temporary folder renamed into place,
    so an interrupted run never leaves a half dataset) if it does not exist yet."""
    return generate_once(dataset_dir(root, cfg), DATA_JSON, lambda tmp: _write_dataset(tmp, cfg, progress))


def _write_dataset(out: Path, cfg: VideoShapesConfig, progress: bool) -> None:
    (out / VIDEOS_DIR).mkdir()
    videos, sentences = [], []
    total = cfg.num_train + cfg.num_val + cfg.num_test
    seconds = round(cfg.frames_per_video / cfg.fps, 3)
    with tqdm(total=total, desc="generating synthetic video", unit="video", disable=not progress) as bar:
        for split, official in OFFICIAL.items():
            for clip, captions, seed in generate_split(split, cfg):
                number = len(videos)
                video_id = f"video{number}"
                frames = render_clip(clip, cfg.frames_per_video, cfg.image_size, seed)
                write_mp4(out / VIDEOS_DIR / f"{video_id}.mp4", frames, cfg.fps, cfg.gop)
                videos.append({"video_id": video_id, "category": 0, "url": "", "start time": 0.0,
                               "end time": seconds, "split": official, "id": number, "scene": clip.description()})
                sentences += [{"sen_id": len(sentences) + j, "video_id": video_id, "caption": c}
                              for j, c in enumerate(captions)]
                bar.update()
    info = {"description": "twostream synthetic moving shapes (MSR-VTT format)", "version": GENERATOR_VERSION}
    (out / DATA_JSON).write_text(json.dumps({"info": info, "videos": videos, "sentences": sentences}))
    params = {**dataclasses.asdict(cfg), "version": GENERATOR_VERSION}
    (out / "params.json").write_text(json.dumps(params, indent=1) + "\n")


class SyntheticVideoDataModule(MSRVTTDataModule):
    """Synthetic moving-shapes text-video retrieval; sizes are numbers of videos.

    ``frames_per_video`` frames are written per clip, ``num_frames`` of them are sampled per item.
    """

    def __init__(
        self,
        root: str = "data/generated/synthetic_video",
        num_train: int = 1000,
        num_val: int = 100,
        num_test: int = 200,
        captions_per_video: int = 3,
        frames_per_video: int = 16,
        num_frames: int = 8,
        image_size: int = 64,
        second_object_fraction: float = 0.3,
        seed: int = 0,
        batch_size: int = 32,
        eval_batch_size: int = 100,
        num_workers: int = 0,
        mean: tuple[float, float, float] = CLIP_MEAN,
        std: tuple[float, float, float] = CLIP_STD,
        train_augment: bool = False,
        pin_memory: bool = False,
        progress: bool = True,
    ) -> None:
        self.config = VideoShapesConfig(num_train=num_train, num_val=num_val, num_test=num_test,
                                        captions_per_video=captions_per_video, frames_per_video=frames_per_video,
                                        image_size=image_size, second_object_fraction=second_object_fraction, seed=seed)
        folder = dataset_dir(root, self.config)
        super().__init__(root=str(folder / VIDEOS_DIR), annotations=str(folder), train_split="full", test_split="full",
                         val_split="holdout", num_frames=num_frames, image_size=image_size, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, num_workers=num_workers, mean=mean, std=std,
                         train_augment=train_augment, pin_memory=pin_memory)
        self.generated_root, self.progress = root, progress
        self.split_names = {"train": "synthetic-train", "val": "synthetic-val", "test": "synthetic-test"}

    @property
    def dataset_dir(self) -> Path:
        """Where the files for these parameters live (whether or not they exist yet)."""
        return dataset_dir(self.generated_root, self.config)

    def prepare_data(self) -> None:
        ensure_video_dataset(self.generated_root, self.config, progress=self.progress)

    def load_split(self, name: str) -> RetrievalSplit:
        # Generating here too (a no-op after prepare_data) lets setup()/get_split() work alone.
        ensure_video_dataset(self.generated_root, self.config, progress=self.progress)
        return super().load_split(name)
