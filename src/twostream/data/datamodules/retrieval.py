"""The base LightningDataModule shared by every image-text retrieval source.

Why: the model only sees the batch contract below, so any source (synthetic shapes, COCO,
Flickr30K) just implements ``load_split(name) -> RetrievalSplit`` and inherits loaders, transforms
and the two-loader evaluation layout that the recall metric relies on.

Batch contract (default collate; captions stay a list of str, tokenised by the model):
- train:          {"image": float[B,3,H,W], "caption": list[str], "image_index": long[B], "text_index": long[B]}
- eval images:    {"image": float[B,3,H,W], "image_index": long[B]}
- eval captions:  {"caption": list[str], "text_index": long[B], "image_index": long[B]}
Any batch may also carry ``"skipped"``: list of (reason, sample key) for dirty samples replaced
since the previous item (see :mod:`twostream.data.health`); the model ignores it.

Dirty data: empty captions (all splits) and missing image files (train) are dropped when a split
is loaded and listed in ``load_skips``; an image that fails to decode is replaced in training by
the next good image (fixed batch shapes for DDP) and scored as a blank image in evaluation (fixed
protocol sizes). The Datasets that do this are in :mod:`twostream.data.datamodules.retrieval_datasets`.
"""
from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, Sampler

from twostream.data.datamodules.resumable import LoaderPosition, ResumableLoader
from twostream.data.datamodules.retrieval_datasets import (
    EpochKeySampler,
    RetrievalCaptionDataset,
    RetrievalImageDataset,
    RetrievalTrainDataset,
)
from twostream.data.datamodules.transforms import CLIP_MEAN, CLIP_STD, Transform, build_image_transform
from twostream.data.formats.retrieval_split import (VALID_SPLITS, RetrievalSplit, check_split_name, screen_split,
                                                    subset_split)
from twostream.data.health import collate_with_skips
from twostream.errors import ConfigError
from twostream.metrics.unimodal import group_ids

_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}


def first_images(split: RetrievalSplit, n: int) -> RetrievalSplit:
    """The first ``n`` images of a split and their captions: an evaluation small enough to score
    every pair with a cross-encoder, and the same subset for every model compared on it."""
    if n >= split.num_images:
        return split
    return subset_split(split, [i < n for i in range(split.num_images)], [True] * split.num_captions)


class RetrievalDataModule(L.LightningDataModule):
    """Base for image-text retrieval data; subclasses implement :meth:`load_split`.

    ``val_dataloader``/``test_dataloader`` return ``[images_loader, captions_loader]``.
    ``eval_images`` keeps only the first N images (and their captions) of val and test. No sampler
    is set here: under DDP Lightning inserts a DistributedSampler, whose padding the recall metric
    removes by index.
    """

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        image_size: int = 224,
        mean: tuple[float, float, float] = CLIP_MEAN,
        std: tuple[float, float, float] = CLIP_STD,
        train_augment: bool = False,
        pin_memory: bool = False,
        eval_images: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # also collects the subclass's __init__ arguments
        if eval_images is not None and eval_images < 1:
            raise ValueError(f"eval_images: expected a positive number of images or null, got {eval_images}")
        self.eval_images = eval_images
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.image_size = image_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.train_augment = train_augment
        self.pin_memory = pin_memory
        self._splits: dict[str, RetrievalSplit] = {}
        self.load_skips: list[tuple[str, str]] = []  # (reason, key) dropped while reading splits
        self.train_position = LoaderPosition()  # where the train loader is in its epoch (checkpointed)

    def state_dict(self) -> dict:
        """The train loader's position, so a mid-epoch checkpoint resumes at the next batch."""
        return {"train_position": self.train_position.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        if "train_position" in state_dict:
            self.train_position.load_state_dict(state_dict["train_position"])

    def load_split(self, name: str) -> RetrievalSplit:
        """Read split ``name`` ("train" | "val" | "test") from wherever this source keeps it."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_split(name)")

    def has_split(self, name: str) -> bool:
        """Whether the source has split ``name`` at all (an ALBEF/LAVIS folder may lack val)."""
        return True

    def split_source(self, name: str) -> str:
        """Where split ``name`` is read from, for error messages (subclasses name their file)."""
        return type(self).__name__

    def eval_num_folds(self, split_name: str) -> int:
        """Folds the evaluation of ``split_name`` is averaged over (COCO 1K: 5); 1 = whole split."""
        return 1

    def get_split(self, name: str) -> RetrievalSplit:
        """The split, loaded once, screened for dirty entries (see :func:`screen_split`), cached."""
        check_split_name(name)
        if name not in self._splits:
            split, skips = screen_split(self.load_split(name), drop_missing_images=name == "train")
            self.load_skips.extend(skips)
            if split.num_images == 0 or split.num_captions == 0:
                raise ValueError(f"{type(self).__name__}: split {name!r} of {self.split_source(name)} is empty "
                                 f"({split.num_images} images, {split.num_captions} captions after dropping "
                                 f"{len(skips)} bad entries); refusing to run on no data")
            if name != "train" and self.eval_images is not None:
                split = first_images(split, self.eval_images)
            self._splits[name] = split
        return self._splits[name]

    def setup(self, stage: str | None = None) -> None:
        for name in _STAGE_SPLITS.get(stage or "", VALID_SPLITS):
            if name == "val" and stage == "fit" and not self.has_split("val"):
                self._fit_without_validation()
                continue
            self.get_split(name)

    def _fit_without_validation(self) -> None:
        """No val split: train without validation, unless a callback needs a val metric to work."""
        callbacks = getattr(self.trainer, "callbacks", None) or []
        needs = sorted({f"{type(cb).__name__}(monitor={cb.monitor!r})" for cb in callbacks
                        if str(getattr(cb, "monitor", None) or "").startswith("val")})
        where = f"{type(self).__name__} ({self.split_source('train')})"
        if needs:
            raise ConfigError(f"{where} has no val split, but {', '.join(needs)} needs validation metrics: add a val "
                              f"annotation file (e.g. annotations: {{train: ..., val: ..., test: ...}}), or set "
                              f"that callback's monitor to null (and save_top_k: 0) to train without validation")
        rank_zero_warn(f"{where} has no val split: fit runs without validation")

    def eval_split_sizes(self, name: str) -> tuple[int, int]:
        """(number of images, number of captions) of an evaluation split."""
        split = self.get_split(name)
        return split.num_images, split.num_captions

    def image_groups(self, split_name: str) -> torch.Tensor | None:
        """Group id per image of ``split_name`` for image->image recall (equal ids: same scene
        description, see :func:`~twostream.metrics.unimodal.unimodal_recall`); None when the source
        has no scene descriptions (real photos: no ground truth for which images depict the same)."""
        if not self.has_split(split_name):
            return None
        split = self.get_split(split_name)
        return None if split.scenes is None else group_ids(split.scenes)

    def oracle_recall(self, split_name: str) -> dict[str, float] | None:
        """The recall ceiling of ``split_name`` where the source can check every caption against
        every image (synthetic data: :mod:`twostream.metrics.oracle`); None for real photos."""
        return None

    def image_transform(self, train: bool = False) -> Transform:
        return build_image_transform(self.image_size, self.mean, self.std, augment=train and self.train_augment)

    def train_dataloader(self) -> DataLoader:
        dataset = RetrievalTrainDataset(self.get_split("train"), self.image_transform(train=True))
        return self._loader(dataset, self.batch_size, sampler=EpochKeySampler(len(dataset)), drop_last=True)

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("val") if self.has_split("val") else []

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")

    def _eval_loaders(self, name: str) -> list[DataLoader]:
        split = self.get_split(name)
        images = RetrievalImageDataset(split, self.image_transform())
        captions = RetrievalCaptionDataset(split)
        return [
            self._loader(images, self.eval_batch_size, drop_last=False),
            self._loader(captions, self.eval_batch_size, drop_last=False),
        ]

    def _loader(self, dataset: Dataset, batch_size: int, drop_last: bool, sampler: Sampler | None = None) -> DataLoader:
        """A loader; with a ``sampler`` (training) one that resumes mid-epoch at the exact batch."""
        resumable = {} if sampler is None else {"position": self.train_position}
        return (DataLoader if sampler is None else ResumableLoader)(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_with_skips,
            **resumable,
        )
