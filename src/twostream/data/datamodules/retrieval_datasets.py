"""The torch Datasets (and the training sampler) of
:class:`~twostream.data.datamodules.retrieval.RetrievalDataModule`.

Items follow the batch contract in :mod:`twostream.data.datamodules.retrieval`. Dirty data: an
image that fails to decode is replaced in training by the next good image (fixed batch shapes for
DDP) and scored as a blank image in evaluation (fixed protocol sizes); either way the skip rides
on the item under ``REPLACED`` (see :mod:`twostream.data.health`).

Seeds: the shuffle of epoch ``e`` and every per-item draw come from :mod:`twostream.seeding`
(``epoch_seed``, ``sample_rng``), keyed by the run seed, the epoch and the sample key only.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from twostream import seeding
from twostream.data.datamodules.transforms import Transform
from twostream.data.formats.retrieval_split import RetrievalSplit
from twostream.data.health import DataQualityError, SkipLog, SkipReason


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
        self.seed = seeding.run_seed() if seed is None else seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(seeding.epoch_seed(self.seed, self.epoch))
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
        self.seed = seeding.run_seed() if seed is None else seed
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
        text_index = options[seeding.sample_rng(self.seed, key).randrange(len(options))]
        return log.attach({
            "image": self.transform(image),
            "caption": self.split.captions[text_index],
            "image_index": index,
            "text_index": text_index,
        }, replaced=True)

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
        raise DataQualityError(f"all {len(self):,} of {len(self):,} training images (100%) are unreadable (first: "
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
        return log.attach({"image": self.transform(image), "image_index": index}, replaced=True)


class RetrievalCaptionDataset(Dataset):
    """Every caption of an evaluation split, once, with the position of its image."""

    def __init__(self, split: RetrievalSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return self.split.num_captions

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_index = self.split.text_to_image[index]
        return {"caption": self.split.captions[index], "text_index": index, "image_index": image_index}
