"""COCO and Flickr30K retrieval datamodules (Karpathy splits, from Karpathy or ALBEF/LAVIS JSON).

Why two classes rather than one with a ``dataset`` field: the datasets differ in what the
user must choose (COCO has the 5K and 1K test protocols, Flickr30K has one), and LightningCLI
shows each class's own arguments, so ``--help`` lists only the options that exist. The shared
work (format detection, one parse per datamodule, screening) lives in :class:`AnnotationSource`
and :class:`RetrievalDataModule`; the repeated constructor argument lists are deliberate
(LightningCLI needs explicit signatures).

Evaluation protocols:
- COCO 5K: the 5,000 Karpathy test images, all ~25,000 captions, ranked together.
- COCO 1K: the same images in five folds ``[1000k, 1000(k+1))`` with their captions, ranked
  within the fold, metrics averaged over folds (``eval_num_folds("test") == 5``).
- Flickr30K 1K: the 1,000 Karpathy test images and their 5,000 captions.
"""
from __future__ import annotations

from typing import Literal

from twostream.data.datamodules.retrieval import RetrievalDataModule
from twostream.data.datamodules.transforms import CLIP_MEAN, CLIP_STD
from twostream.data.formats.albef_json import AnnotationSource
from twostream.data.formats.retrieval_split import RetrievalSplit

COCO_1K_FOLDS = 5


class _JsonRetrievalDataModule(RetrievalDataModule):
    """Shared body: splits come from an :class:`AnnotationSource` parsed once per datamodule."""

    def _init_source(self, root: str, annotations: str | dict[str, str], format: str) -> None:
        self.root, self.annotations, self.format = root, annotations, format
        self._source: AnnotationSource | None = None

    @property
    def source(self) -> AnnotationSource:
        if self._source is None:
            self._source = AnnotationSource(self.annotations, self.root, self.format)
        return self._source

    def has_split(self, name: str) -> bool:
        return name in self.source.files

    def split_source(self, name: str) -> str:
        return str(self.source.path(name))

    def load_split(self, name: str) -> RetrievalSplit:
        return self.source.split(name)


class CocoDataModule(_JsonRetrievalDataModule):
    """MS-COCO Karpathy splits (113,287 train incl. restval / 5,000 val / 5,000 test images).

    Args:
        root: image root; Karpathy paths are ``root/filepath/filename`` (``train2014/``,
            ``val2014/``), ALBEF paths ``root/image``.
        annotations: ``dataset_coco.json`` (Karpathy), a folder of ALBEF/LAVIS files
            (``*_train.json``, ``*_val.json``, ``*_test.json``), or ``{train: file, val: file, test: file}``.
        format: ``auto`` decides from the file content; ``karpathy`` / ``albef`` insist.
        test_protocol: ``5k`` (all test images at once) or ``1k`` (mean over five 1K folds).
    """

    def __init__(
        self,
        root: str,
        annotations: str | dict[str, str],
        format: Literal["auto", "karpathy", "albef"] = "auto",
        test_protocol: Literal["5k", "1k"] = "5k",
        batch_size: int = 128,
        eval_batch_size: int = 256,
        num_workers: int = 4,
        image_size: int = 224,
        mean: tuple[float, float, float] = CLIP_MEAN,
        std: tuple[float, float, float] = CLIP_STD,
        train_augment: bool = False,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         image_size=image_size, mean=mean, std=std, train_augment=train_augment,
                         pin_memory=pin_memory)
        if test_protocol not in ("5k", "1k"):
            raise ValueError(f"test_protocol must be '5k' or '1k', got {test_protocol!r}")
        self.test_protocol = test_protocol
        self._init_source(root, annotations, format)

    def eval_num_folds(self, split_name: str) -> int:
        return COCO_1K_FOLDS if split_name == "test" and self.test_protocol == "1k" else 1

    def load_split(self, name: str) -> RetrievalSplit:
        split = super().load_split(name)
        folds = self.eval_num_folds(name)
        if folds > 1 and split.num_images % folds:
            raise ValueError(f"test_protocol='1k' splits the test images into {folds} equal folds, but "
                             f"{self.split_source(name)} has {split.num_images:,} test images (COCO: 5,000); "
                             f"use test_protocol='5k'")
        return split


class Flickr30kDataModule(_JsonRetrievalDataModule):
    """Flickr30K Karpathy splits (29,000 / 1,014 / 1,000 images); the test split is the 1K protocol.

    Args:
        root: image folder (``flickr30k-images/``); Karpathy paths are ``root/filename``, ALBEF
            paths ``root/image``.
        annotations: ``dataset_flickr30k.json`` (Karpathy), a folder of ALBEF/LAVIS files
            (``flickr30k_train.json`` ...), or ``{train: file, val: file, test: file}``.
        format: ``auto`` decides from the file content; ``karpathy`` / ``albef`` insist.
    """

    def __init__(
        self,
        root: str,
        annotations: str | dict[str, str],
        format: Literal["auto", "karpathy", "albef"] = "auto",
        batch_size: int = 128,
        eval_batch_size: int = 256,
        num_workers: int = 4,
        image_size: int = 224,
        mean: tuple[float, float, float] = CLIP_MEAN,
        std: tuple[float, float, float] = CLIP_STD,
        train_augment: bool = False,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         image_size=image_size, mean=mean, std=std, train_augment=train_augment,
                         pin_memory=pin_memory)
        self._init_source(root, annotations, format)
