"""``SyntheticShapesDataModule``: the embedded dataset, generated on first use, read like real data.

Why: the files (:mod:`twostream.data.synthetic.shapes_dataset`) are Karpathy-format under a folder
named by a hash of the generation parameters, so ``setup`` reads them through the same
``read_karpathy`` path that COCO/Flickr30K use; the oracle ceiling comes from the stored meanings.
"""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import torch

from twostream.data.datamodules.retrieval import RetrievalDataModule
from twostream.data.datamodules.transforms import CLIP_MEAN, CLIP_STD
from twostream.data.formats.karpathy import read_karpathy
from twostream.data.formats.retrieval_split import RetrievalSplit
from twostream.data.synthetic.shapes import CAPTION_WORD_GROUPS, ShapesConfig, scene_from_description
from twostream.data.synthetic.shapes_captions import truth_index
from twostream.data.synthetic.shapes_dataset import (IMAGES_DIR, JSON_NAME, dataset_dir, ensure_shapes_dataset,
                                                     read_meanings)
from twostream.metrics.oracle import oracle_recall


class SyntheticShapesDataModule(RetrievalDataModule):
    """Synthetic shapes retrieval data (see :mod:`twostream.data.synthetic.shapes`); sizes are numbers of images.

    ``caption_noise``: fraction of *training* images whose captions are swapped with another noisy
    image's (a derangement, seeded by ``seed``), imitating mismatched web pairs; training batches then
    carry a bool ``noisy`` so a noise filter's precision can be logged. Evaluation splits stay clean.

    ``specific_captions`` (default, generator version 2): every noun phrase names size and colour and
    the background-only templates are off, so a test caption is true of 2.6 test images on average
    instead of 25 (the oracle ceiling of text->image R@1 rises from 39.6 % to 61 %; docs/testbed.md).
    """

    def __init__(
        self,
        root: str = "data/generated/synthetic_shapes",
        num_train: int = 10_000,
        num_val: int = 500,
        num_test: int = 1_000,
        captions_per_image: int = 5,
        distractor_fraction: float = 0.3,
        seed: int = 0,
        image_size: int = 64,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        mean: tuple[float, float, float] = CLIP_MEAN,
        std: tuple[float, float, float] = CLIP_STD,
        train_augment: bool = False,
        pin_memory: bool = False,
        progress: bool = True,
        caption_noise: float = 0.0,
        eval_images: int | None = None,
        specific_captions: bool = True,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            image_size=image_size,
            mean=mean,
            std=std,
            train_augment=train_augment,
            pin_memory=pin_memory,
            eval_images=eval_images,
        )
        if not 0.0 <= caption_noise < 1.0:
            raise ValueError(f"caption_noise: expected a fraction in [0, 1), got {caption_noise}")
        self.root = root
        self.progress = progress
        self.caption_noise = caption_noise
        self.noisy_images: frozenset[int] = frozenset()
        self.config = ShapesConfig(
            num_train, num_val, num_test, captions_per_image, distractor_fraction, seed, image_size, specific_captions
        )
        self._oracle: dict[str, dict[str, float]] = {}

    @property
    def dataset_dir(self) -> Path:
        """Where the files for these parameters live (whether or not they exist yet)."""
        return dataset_dir(self.root, self.config)

    def caption_word_groups(self) -> dict[str, list[str]]:
        """Caption words by group ("colour", "shape", "size", "position"), for hard-negative
        captions that swap a word within its group; fresh lists (see ``CAPTION_WORD_GROUPS``)."""
        return {group: list(words) for group, words in CAPTION_WORD_GROUPS.items()}

    def prepare_data(self) -> None:
        ensure_shapes_dataset(self.root, self.config, progress=self.progress)

    def load_split(self, name: str) -> RetrievalSplit:
        # Generating here too (a no-op when prepare_data ran) lets setup()/get_split() work alone.
        directory = ensure_shapes_dataset(self.root, self.config, progress=self.progress)
        split = read_karpathy(directory / JSON_NAME, directory / IMAGES_DIR, name)
        if name == "train" and self.caption_noise > 0:
            split = self._shuffle_captions(split)
        return split

    def oracle_recall(self, split_name: str) -> dict[str, float]:
        """Expected recall (percent) of a model that ranks exactly the images (captions) a caption
        (image) is true of first, ties at random: the ceiling of ``split_name`` as evaluated."""
        if split_name not in self._oracle:
            split = self.get_split(split_name)
            self._oracle[split_name] = oracle_recall(self.true_images(split_name), split.text_to_image, split.num_images)
        return self._oracle[split_name]

    def true_images(self, split_name: str) -> list[list[int]]:
        """Per caption of ``split_name``, the positions of every image of the split it is true of
        (its own included): the generator knows each scene, so false negatives can be counted."""
        split = self.get_split(split_name)
        meanings = read_meanings(ensure_shapes_dataset(self.root, self.config, progress=False) / JSON_NAME)
        scenes = [scene_from_description(text) for text in split.scenes]
        return truth_index(scenes, [meanings[c] for c in split.captions])

    def _shuffle_captions(self, split: RetrievalSplit) -> RetrievalSplit:
        """Move the captions of a random ``caption_noise`` share of images one step along a random cycle."""
        rng = random.Random(self.config.seed + 7919)
        cycle = rng.sample(range(split.num_images), max(2, round(self.caption_noise * split.num_images)))
        moved = {src: dst for src, dst in zip(cycle, cycle[1:] + cycle[:1])}
        self.noisy_images = frozenset(cycle)
        return dataclasses.replace(split, text_to_image=[moved.get(i, i) for i in split.text_to_image])

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if self.noisy_images and "caption" in batch and "image" in batch and self.trainer and self.trainer.training:
            noisy = torch.tensor(sorted(self.noisy_images), device=batch["image_index"].device)
            batch["noisy"] = torch.isin(batch["image_index"], noisy)
        return batch
