"""``SyntheticVideoDataModule``: moving-shapes clips generated on first use, read as MSR-VTT.

The files (:mod:`twostream.data.synthetic.video_dataset`) are real mp4s plus an
``MSRVTT_data.json``, so this is :class:`~twostream.data.datamodules.msrvtt.MSRVTTDataModule` on
the official-style splits (``train_split="full"``, ``test_split="full"``): the CPU-tested path is
the benchmark path.
"""
from __future__ import annotations

from pathlib import Path

from twostream.data.datamodules.msrvtt import MSRVTTDataModule
from twostream.data.datamodules.transforms import CLIP_MEAN, CLIP_STD
from twostream.data.formats.retrieval_split import RetrievalSplit
from twostream.data.synthetic.video import VideoShapesConfig
from twostream.data.synthetic.video_dataset import VIDEOS_DIR, dataset_dir, ensure_video_dataset


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
