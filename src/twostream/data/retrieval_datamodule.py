"""Datasets and a base LightningDataModule shared by every image-text retrieval source.

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
protocol sizes).
"""
from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from twostream.data.health import SkipLog, SkipReason, collate_with_skips
from twostream.data.karpathy import VALID_SPLITS, RetrievalSplit, check_split_name, screen_split, subset_split
from twostream.metrics.unimodal import group_ids

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}

Transform = Callable[[Image.Image], torch.Tensor]


class ResizeCenterCrop:
    """Resize the shorter side to ``size`` and centre-crop a square; a no-op for images that
    already are ``size`` x ``size`` (the synthetic data), so they are not resampled needlessly."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._resize = T.Compose([T.Resize(size, interpolation=InterpolationMode.BICUBIC), T.CenterCrop(size)])

    def __call__(self, image: Image.Image) -> Image.Image:
        return image if image.size == (self.size, self.size) else self._resize(image)


def build_image_transform(
    image_size: int, mean: tuple[float, ...], std: tuple[float, ...], augment: bool = False
) -> Transform:
    """PIL image -> normalised float tensor [3, H, W].

    The optional augmentation is deliberately light and never flips: captions say "left of".
    """
    if augment:
        geometry: list[Any] = [
            T.RandomResizedCrop(
                image_size, scale=(0.9, 1.0), ratio=(0.95, 1.05), interpolation=InterpolationMode.BICUBIC
            ),
            T.ColorJitter(brightness=0.1, contrast=0.1),
        ]
    else:
        geometry = [ResizeCenterCrop(image_size)]
    return T.Compose([*geometry, T.ToTensor(), T.Normalize(mean, std)])


def load_rgb(path: str) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def try_load_rgb(path: str) -> tuple[Image.Image | None, str | None]:
    """(image, None), or (None, reason) when the file is missing or does not decode.

    Any decoder exception counts: truncated and random-byte JPEGs raise OSError, but broken
    headers also give SyntaxError/ValueError/EOFError depending on the plugin.
    """
    try:
        return load_rgb(path), None
    except FileNotFoundError:
        return None, SkipReason.MISSING_FILE
    except Exception:  # noqa: BLE001 - dirty data is skipped and counted, never a crash
        return None, SkipReason.CORRUPT_IMAGE


class EpochKeySampler(Sampler[int]):
    """Shuffles with a generator seeded by ``(seed, epoch)`` and yields *keys* ``epoch * n + index``.

    Why: exact resume. The order of epoch ``e`` and every per-item random choice (drawn from the key
    by the dataset) depend only on the seed and ``e``, never on how much global RNG an earlier
    process consumed. Lightning calls ``set_epoch`` (through its DistributedSamplerWrapper under DDP,
    which shards these keys across ranks).
    """

    def __init__(self, num_items: int, seed: int | None = None) -> None:
        self.num_items = num_items
        self.seed = int(os.environ.get("PL_GLOBAL_SEED", 0)) if seed is None else seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        offset = self.epoch * self.num_items
        return iter((torch.randperm(self.num_items, generator=generator) + offset).tolist())


class RetrievalTrainDataset(Dataset):
    """One item per image per epoch with one of its captions.

    Indexed by image index, or by an :class:`EpochKeySampler` key ``epoch * n + index``: the caption
    is then drawn from a generator seeded by ``(seed, key)``, so it is the same for a given seed and
    epoch in any process, any worker, before or after a resume.
    """

    def __init__(self, split: RetrievalSplit, transform: Transform, seed: int | None = None) -> None:
        self.split, self.transform = split, transform
        self.seed = int(os.environ.get("PL_GLOBAL_SEED", 0)) if seed is None else seed
        self.captions_of: list[list[int]] = [[] for _ in split.image_paths]
        for text_index, image_index in enumerate(split.text_to_image):
            self.captions_of[image_index].append(text_index)
        missing = [split.image_ids[i] for i, caps in enumerate(self.captions_of) if not caps]
        if missing:
            raise ValueError(f"{len(missing)} training images have no caption (first image id: {missing[0]})")

    def __len__(self) -> int:
        return self.split.num_images

    def __getitem__(self, key: int) -> dict[str, Any]:
        index, image, log = self._first_good_image(key % len(self))
        options = self.captions_of[index]
        text_index = options[random.Random(self.seed * 1_000_003 + key).randrange(len(options))]
        return log.attach({
            "image": self.transform(image),
            "caption": self.split.captions[text_index],
            "image_index": index,
            "text_index": text_index,
        })

    def _first_good_image(self, index: int) -> tuple[int, Image.Image, SkipLog]:
        """Image ``index``, or if it is bad the next good one (wrapping): deterministic, so a
        resumed run substitutes the same image; only the requested item counts as skipped."""
        log = SkipLog()
        for step in range(len(self)):
            candidate = (index + step) % len(self)
            image, reason = try_load_rgb(self.split.image_paths[candidate])
            if image is not None:
                return candidate, image, log
            if step == 0:
                log.add(reason, os.path.basename(self.split.image_paths[candidate]))
        raise RuntimeError(f"none of the {len(self):,} training images could be read (first: "
                           f"{self.split.image_paths[0]}); check the image root and the files")


class RetrievalImageDataset(Dataset):
    """Every image of an evaluation split, once."""

    def __init__(self, split: RetrievalSplit, transform: Transform) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return self.split.num_images

    def __getitem__(self, index: int) -> dict[str, Any]:
        """A bad image is scored as a blank one (so the protocol keeps its size and folds) and reported."""
        path = self.split.image_paths[index]
        image, reason = try_load_rgb(path)
        log = SkipLog()
        if image is None:
            log.add(reason, os.path.basename(path))
            image = Image.new("RGB", (32, 32))
        return log.attach({"image": self.transform(image), "image_index": index})


class RetrievalCaptionDataset(Dataset):
    """Every caption of an evaluation split, once, with the position of its image."""

    def __init__(self, split: RetrievalSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return self.split.num_captions

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_index = self.split.text_to_image[index]
        return {"caption": self.split.captions[index], "text_index": index, "image_index": image_index}


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

    def load_split(self, name: str) -> RetrievalSplit:
        """Read split ``name`` ("train" | "val" | "test") from wherever this source keeps it."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_split(name)")

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
            self.get_split(name)

    def eval_split_sizes(self, name: str) -> tuple[int, int]:
        """(number of images, number of captions) of an evaluation split."""
        split = self.get_split(name)
        return split.num_images, split.num_captions

    def image_groups(self, split_name: str) -> torch.Tensor | None:
        """Group id per image of ``split_name`` for image->image recall (equal ids: same scene
        description, see :func:`~twostream.metrics.unimodal.unimodal_recall`); None when the source
        has no scene descriptions (real photos: no ground truth for which images depict the same)."""
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
        return self._eval_loaders("val")

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
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_with_skips,
        )
