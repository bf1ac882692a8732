"""Image-text web data (CC3M, or any img2dataset output) streamed with HF ``datasets``: the torch
IterableDataset and the DataModule that trains on it.

The shard files, their ``_stats.json`` sizes and the HF stream (shuffled, split over ranks):
:mod:`twostream.data.formats.webdataset_shards`.

Equal batch counts: every rank yields exactly ``len(dataset)`` samples per epoch, where the
total comes from the shards' ``{shard}_stats.json`` (sum of ``successes``; or ``num_samples``).
A worker whose shards run short (dead links skipped, uneven shards) re-reads its stream from
the start; one with more stops at its quota. So DDP ranks never wait on each other at an
epoch end, and the LR schedule and progress bar see the true length.

Epochs: the shard order and the shuffle buffer are seeded by ``seed + epoch``. Lightning calls
``set_epoch`` only on samplers, which an iterable DataLoader has none of, so
:class:`EpochAwareLoader` (a DataLoader) sets the trainer's current epoch on the dataset each time
an epoch's iterator is created, in the main process; HF keeps the epoch in shared memory, so
persistent workers see it. Epoch-level resume is therefore exact. Mid-epoch resume is exact too, at
a cost: the datamodule checkpoints how many batches of the epoch were trained on
(:class:`~twostream.data.datamodules.resumable.LoaderPosition`), and the resumed epoch's stream is
re-read from its start and those batches dropped before the model sees them (a stream has no
index to jump to, and HF assigns shards to worker processes by their id, so every worker must
replay its part), so resuming half-way through an epoch costs the loading time of that half.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from twostream import seeding
from twostream.data.datamodules.resumable import LoaderPosition
from twostream.data.datamodules.retrieval import RetrievalDataModule
from twostream.data.datamodules.transforms import CLIP_MEAN, CLIP_STD, Transform
from twostream.data.formats.albef_json import AnnotationSource
from twostream.data.formats.retrieval_split import RetrievalSplit
from twostream.data.formats.webdataset_shards import count_samples, expand_shards, open_stream, sample_index
from twostream.data.health import SkipLog, SkipReason, collate_with_skips


class WebImageTextStream(IterableDataset):
    """Decoded, transformed samples from an HF stream; bad ones skipped and reported.

    Yields ``{"image", "caption", "image_index", "text_index"}`` (+ ``"skipped"``), exactly
    ``len(self)`` per epoch on this rank (see the module docstring), split over workers in
    whole batches so every worker's batches are full.
    """

    def __init__(self, source: Any, transform: Transform, batch_size: int, samples_per_rank: int,
                 image_field: str = "jpg", where: str = "the shards") -> None:
        self.source, self.transform, self.image_field, self.where = source, transform, image_field, where
        self.batch_size = batch_size
        self.num_batches = samples_per_rank // batch_size

    def set_epoch(self, epoch: int) -> None:
        self.source.set_epoch(epoch)

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def _quota(self) -> int:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return (self.num_batches // workers + (worker < self.num_batches % workers)) * self.batch_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        quota, produced, log = self._quota(), 0, SkipLog()
        while produced < quota:
            produced_before = produced
            for row in self.source:
                item = self._to_item(row, log)
                if item is None:
                    continue
                yield log.attach(item)
                produced += 1
                if produced == quota:
                    return
            if produced == produced_before:
                raise RuntimeError(f"a data worker found no usable sample in its part of {self.where} "
                                   f"({len(log.skips)} skipped, e.g. {log.skips[:3]}); check the shards")

    def _to_item(self, row: dict[str, Any], log: SkipLog) -> dict[str, Any] | None:
        key = str(row.get("__key__") or row.get("key"))
        caption = row.get("txt")
        if caption is None:
            caption = (row.get("json") or {}).get("caption") if "json" in row else row.get("caption")
        data = row.get(self.image_field)
        data = data.get("bytes") if isinstance(data, dict) else data
        if data is None:
            if row.get("status", "success") == "success":  # parquet rows of failed downloads are no samples
                log.add(SkipReason.MISSING_FILE, key)
            return None
        if not caption or not caption.strip():
            log.add(SkipReason.EMPTY_CAPTION, key)
            return None
        try:
            with Image.open(io.BytesIO(data)) as image:
                image = image.convert("RGB")
        except Exception:  # noqa: BLE001 - any decoder failure is dirty data, never a crash
            log.add(SkipReason.CORRUPT_IMAGE, key)
            return None
        index = sample_index(key)
        return {"image": self.transform(image), "caption": caption.strip(), "image_index": index, "text_index": index}


class EpochAwareLoader(DataLoader):
    """A DataLoader that tells its dataset the epoch each time an epoch's iterator is created, and
    records (and after a resume, replays and drops) the batches of the epoch already consumed.

    ``epoch_fn`` returns the epoch (the trainer's ``current_epoch``) or None to leave it alone;
    ``position``: the datamodule's :class:`LoaderPosition`.
    """

    def __init__(self, *args: Any, epoch_fn: Callable[[], int | None] | None = None,
                 position: LoaderPosition | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epoch_fn = epoch_fn
        self.position = position if position is not None else LoaderPosition()

    def __iter__(self):
        epoch = self.epoch_fn() if self.epoch_fn is not None else None
        if epoch is not None:
            self.dataset.set_epoch(int(epoch))
        skip = self.position.start(int(epoch or 0), len(self))
        for n, batch in enumerate(super().__iter__()):
            if n >= skip:
                self.position.batches = n + 1
                yield batch


def current_rank_and_world(trainer: Any) -> tuple[int, int]:
    """(rank, world size) from the trainer, else torch.distributed, else a single process."""
    if trainer is not None:
        return int(trainer.global_rank), int(trainer.world_size)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class WebDatasetDataModule(RetrievalDataModule):
    """Training on streamed img2dataset shards; val/test on a Karpathy or ALBEF retrieval file.

    Args:
        shards: shard files: a glob (``data/cc3m/*.tar``), a brace pattern
            (``data/cc3m/{00000..00331}.tar``) or a list; ``.tar`` (webdataset) or ``.parquet``.
        num_samples: training samples per epoch; default: the sum of ``successes`` in the shards'
            ``_stats.json`` files.
        eval_root, eval_annotations, eval_format: where val/test come from (e.g. COCO's Karpathy
            test split: ``data/coco`` + ``data/coco/dataset_coco.json``). Without them there is no
            validation, and ``test`` is an error (CC3M has no retrieval test split of its own).
        image_field: the image member/column (img2dataset ``encode_format``: jpg, png, webp).
        shuffle_buffer: samples held for shuffling; the shard order is shuffled too (0: no shuffling
            at all, shards and samples in order, e.g. to debug).
        seed: shuffle seed (default: the ``seed_everything`` seed); the epoch is added to it.
    """

    def __init__(
        self,
        shards: str | list[str],
        num_samples: int | None = None,
        eval_root: str | None = None,
        eval_annotations: str | dict[str, str] | None = None,
        eval_format: Literal["auto", "karpathy", "albef"] = "auto",
        image_field: str = "jpg",
        shuffle_buffer: int = 1000,
        seed: int | None = None,
        batch_size: int = 256,
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
        if (eval_root is None) != (eval_annotations is None):
            raise ValueError("eval_root and eval_annotations go together: set both (or neither)")
        self.shards, self.num_samples, self.image_field = shards, num_samples, image_field
        self.shuffle_buffer = shuffle_buffer
        self.seed = seeding.run_seed() if seed is None else seed
        self.eval_source = None if eval_root is None else AnnotationSource(eval_annotations, eval_root, eval_format)

    def files(self) -> list[str]:
        return expand_shards(self.shards)

    def total_samples(self) -> int:
        return int(self.num_samples) if self.num_samples is not None else count_samples(self.files())

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.total_samples()  # fail before the first step if shards or their stats are missing
        if self.eval_source is not None:
            for name in {"fit": ("val",), "validate": ("val",), "test": ("test",)}.get(stage or "", ("val", "test")):
                self.get_split(name)

    def has_split(self, name: str) -> bool:
        return name == "train" or (self.eval_source is not None and name in self.eval_source.files)

    def split_source(self, name: str) -> str:
        return str(self.shards) if name == "train" or self.eval_source is None else str(self.eval_source.path(name))

    def load_split(self, name: str) -> RetrievalSplit:
        if name == "train":
            raise ValueError("WebDatasetDataModule streams its training data; there is no train split to load")
        if self.eval_source is None:
            raise ValueError(f"WebDatasetDataModule has no {name!r} split: set eval_root and eval_annotations "
                             f"(a Karpathy or ALBEF retrieval file, e.g. COCO), or run with --test_after_fit false")
        return self.eval_source.split(name)

    def train_stream(self, rank: int, world_size: int) -> WebImageTextStream:
        """This rank's share of the stream (``train_dataloader`` takes rank and world from the trainer)."""
        files, total = self.files(), self.total_samples()
        if total // world_size < self.batch_size:
            raise ValueError(f"{total:,} training samples in {self.shards!r} are fewer than one batch of "
                             f"{self.batch_size} per rank ({world_size} ranks)")
        source = open_stream(files, self.image_field, self.seed, self.shuffle_buffer, rank, world_size)
        return WebImageTextStream(source, self.image_transform(train=True), self.batch_size,
                                  total // world_size, self.image_field, where=f"{len(files)} shards {self.shards!r}")

    def train_dataloader(self) -> DataLoader:
        stream = self.train_stream(*current_rank_and_world(self.trainer))
        workers = min(self.num_workers, stream.source.num_shards)
        return EpochAwareLoader(stream, batch_size=self.batch_size, drop_last=True, num_workers=workers,
                                pin_memory=self.pin_memory, persistent_workers=workers > 0,
                                collate_fn=collate_with_skips, epoch_fn=self._trainer_epoch,
                                position=self.train_position)

    def _trainer_epoch(self) -> int | None:
        return None if self.trainer is None else int(self.trainer.current_epoch)

    def val_dataloader(self) -> list[DataLoader]:
        return [] if self.eval_source is None else self._eval_loaders("val")
