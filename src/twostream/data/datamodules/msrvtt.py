"""MSR-VTT text-video retrieval: named splits, the video Datasets and the DataModule.

Why the splits are named everywhere: "MSR-VTT R@1" means different things for 7k / 9k training
and the 1k-A / full test (PITFALLS 11), so the names are constructor arguments (in the saved
config), logged at setup, and available as ``split_names`` for result tables.

The annotation files and their readers: :mod:`twostream.data.formats.msrvtt`. Videos:
``root/<video_id>.mp4`` or pre-extracted frames ``frames_dir/<video_id>/*.jpg``.

Validation: 1k-A has no validation split and the 9k/7k lists contain the official "validate"
videos, so by default (``val_split="holdout"``) ``val_holdout`` training videos, chosen by a hash
of their id (stable, independent of file order), are held out for checkpoint selection; with
``train_split="full"`` the official 497 "validate" videos are used. ``val_split="test"`` validates
on the test split instead (what many papers do) — then checkpoint selection has seen the test set.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from twostream import seeding
from twostream.data.datamodules.retrieval import RetrievalDataModule
from twostream.data.datamodules.retrieval_datasets import (EpochKeySampler, RetrievalCaptionDataset,
                                                           RetrievalTrainDataset)
from twostream.data.datamodules.transforms import CLIP_MEAN, CLIP_STD, ClipReader, ClipTransform
from twostream.data.formats.msrvtt import (DATA_JSON, TEST_1KA_CSV, TRAIN_CSV, Items, build_split, holdout_ids,
                                          read_csv_rows, read_msrvtt_json)
from twostream.data.formats.retrieval_split import RetrievalSplit, check_split_name
from twostream.data.formats.video_io import VideoSkip
from twostream.data.health import REPLACED, DataQualityError, Skip
from twostream.errors import ConfigError

TRAIN_SPLITS, TEST_SPLITS, VAL_SPLITS = ("9k", "7k", "full"), ("1k-A", "full"), ("holdout", "test")


# ----------------------------------------------------------------------------- datasets
class VideoTrainDataset(RetrievalTrainDataset):
    """One clip and one caption per video per epoch, everything drawn from the sampler's key.

    The caption is drawn exactly as for images (``seeding.sample_rng(seed, key)``); the frame
    offsets (and crop) continue that generator, so a resumed run reads the same frames. A video
    that cannot be read is replaced by the next one (index + 1, ...), deterministically, so batches
    keep their size (DDP needs equal shapes); the skip rides on the item that replaced it.
    """

    def __init__(self, split: RetrievalSplit, reader: ClipReader, seed: int | None = None) -> None:
        super().__init__(split, reader, seed)
        self._bad: dict[int, str] = {}  # index -> reason: a known-bad video is not opened again

    def __getitem__(self, key: int) -> dict[str, Any]:
        skips: list[Skip] = []
        for attempt in range(len(self)):
            # A fresh generator per attempt: the outcome never depends on whether _bad was warm.
            index, rng = (key + attempt) % len(self), seeding.sample_rng(self.seed, key, attempt)
            options = self.captions_of[index]
            text_index = options[rng.randrange(len(options))]
            path = self.split.image_paths[index]
            if index not in self._bad:
                try:
                    clip = self.transform(path, rng)
                except VideoSkip as e:
                    self._bad[index] = e.reason
                else:
                    item = {"image": clip, "caption": self.split.captions[text_index], "image_index": index,
                            "text_index": text_index}
                    return {**item, REPLACED: skips} if skips else item
            if attempt == 0:  # the requested video; later bad candidates count when they are requested
                skips.append((self._bad[index], Path(path).stem))
        raise DataQualityError(f"all {len(self)} of {len(self)} training videos (100%) are unreadable, e.g. {skips[:3]}")


class VideoEvalDataset(Dataset):
    """Every video of an evaluation split once, centred frames.

    A video that is missing or fails to decode becomes an all-zero clip, reported under
    ``REPLACED``: protocol sizes stay fixed (the metric needs every index), and a blank video that
    counts as a miss is honest where silently shrinking the test set is not.
    """

    def __init__(self, split: RetrievalSplit, reader: ClipReader) -> None:
        self.split, self.reader = split, reader

    def __len__(self) -> int:
        return self.split.num_images

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.split.image_paths[index]
        try:
            return {"image": self.reader(path), "image_index": index}
        except VideoSkip as e:
            size = self.reader.transform.size
            blank = torch.zeros(self.reader.num_frames, 3, size, size)
            return {"image": blank, "image_index": index, REPLACED: [(e.reason, Path(path).stem)]}


# ----------------------------------------------------------------------------- DataModule
class MSRVTTDataModule(RetrievalDataModule):
    """MSR-VTT text->video / video->text retrieval. The batch is the image contract with a video:
    ``batch["image"]`` is [B, T, 3, H, W] and ``image_index`` the video's position in the split.

    ``load_skips`` lists the (reason, video_id) found while reading annotations; training items
    carry their runtime skips under ``REPLACED`` (see :mod:`twostream.data.health`).
    """

    def __init__(
        self,
        root: str = "data/msrvtt/videos",
        annotations: str = "data/msrvtt/annotations",
        train_split: Literal["9k", "7k", "full"] = "9k",
        test_split: Literal["1k-A", "full"] = "1k-A",
        val_split: Literal["holdout", "test"] = "holdout",
        val_holdout: int = 500,
        num_frames: int = 12,
        frames_dir: str | None = None,
        video_ext: str = ".mp4",
        image_size: int = 224,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 4,
        mean: tuple[float, float, float] = CLIP_MEAN,
        std: tuple[float, float, float] = CLIP_STD,
        train_augment: bool = False,
        pin_memory: bool = False,
        decode_threads: int = 1,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         image_size=image_size, mean=mean, std=std, train_augment=train_augment, pin_memory=pin_memory)
        for field, value, valid in (("train_split", train_split, TRAIN_SPLITS), ("test_split", test_split, TEST_SPLITS),
                                    ("val_split", val_split, VAL_SPLITS)):
            if value not in valid:
                raise ConfigError(f"{field}: {value!r}; valid: {', '.join(valid)}")
        if num_frames < 1:
            raise ConfigError(f"num_frames must be >= 1, got {num_frames}")
        self.root, self.annotations, self.frames_dir, self.video_ext = root, Path(annotations), frames_dir, video_ext
        self.train_split, self.test_split, self.val_split = train_split, test_split, val_split
        self.val_holdout, self.num_frames, self.decode_threads = int(val_holdout), int(num_frames), int(decode_threads)
        self.load_skips: list[Skip] = []
        self._json: tuple[dict[str, str], dict[str, list[str]]] | None = None
        self.split_names = self._split_names()

    def _split_names(self) -> dict[str, str]:
        """Names for logs and result tables: {"train": "9k-holdout500", "val": "holdout500-of-9k", "test": "1k-A"}."""
        if self.val_split == "test":
            return {"train": self.train_split, "val": f"{self.test_split} (test)", "test": self.test_split}
        if self.train_split == "full":
            return {"train": "full", "val": "full-validate", "test": self.test_split}
        n = self.val_holdout
        return {"train": f"{self.train_split}-holdout{n}", "val": f"holdout{n}-of-{self.train_split}",
                "test": self.test_split}

    # ------------------------------------------------------------- reading
    def _data_json(self) -> tuple[dict[str, str], dict[str, list[str]]]:
        if self._json is None:
            self._json = read_msrvtt_json(self.annotations / DATA_JSON)
        return self._json

    def _official(self, split: str) -> Items:
        split_of, captions = self._data_json()
        return [(v, captions.get(v, [])) for v, s in split_of.items() if s == split]

    def _train_pool(self) -> Items:
        if self.train_split == "full":
            return self._official("train")
        rows = read_csv_rows(self.annotations / TRAIN_CSV[self.train_split], ("video_id",))
        captions = self._data_json()[1]
        return [(r["video_id"], captions.get(r["video_id"], [])) for r in rows]

    def _test_items(self) -> Items:
        if self.test_split == "full":
            return self._official("test")
        rows = read_csv_rows(self.annotations / TEST_1KA_CSV, ("video_id", "sentence"))
        grouped: dict[str, list[str]] = {}
        for r in rows:
            grouped.setdefault(r["video_id"], []).append(r["sentence"])
        return list(grouped.items())

    def split_items(self, name: str) -> Items:
        """(video_id, captions) of split ``name`` ("train" | "val" | "test"), before any file check."""
        if name == "test":
            return self._test_items()
        if name == "val" and self.train_split == "full":
            return self._official("validate")
        pool = self._train_pool()
        if self.train_split == "full" or self.val_split == "test":
            return pool  # (name == "train": val comes from "validate" or the test split)
        if self.val_holdout >= len(pool):
            raise ConfigError(f"val_holdout={self.val_holdout} leaves no training video "
                              f"({len(pool)} in {self.train_split})")
        held = holdout_ids([v for v, _ in pool], self.val_holdout)
        return [item for item in pool if (item[0] in held) == (name == "val")]

    def split_source(self, name: str) -> str:
        if name == "test" or (name == "val" and self.val_split == "test"):
            return str(self.annotations / (TEST_1KA_CSV if self.test_split == "1k-A" else DATA_JSON))
        csv_name = TRAIN_CSV.get(self.train_split)
        return str(self.annotations / (f"{csv_name} + {DATA_JSON}" if csv_name else DATA_JSON))

    def get_split(self, name: str) -> RetrievalSplit:
        """Loaded once and cached; screening is :func:`build_split`'s (it knows frame folders)."""
        check_split_name(name)
        if name not in self._splits:
            self._splits[name] = self.load_split(name)
        return self._splits[name]

    def load_split(self, name: str) -> RetrievalSplit:
        if name == "val" and self.val_split == "test":
            return self.get_split("test")  # the same object: its skips are counted once
        split, skips = build_split(self.split_items(name), self.root, self.frames_dir, drop_missing=name == "train",
                                   ext=self.video_ext)
        self.load_skips.extend(skips)
        where = self.frames_dir or self.root
        if not any(Path(p).exists() for p in split.image_paths):
            raise FileNotFoundError(f"{type(self).__name__}: split {name!r} ({self.split_names[name]}, listed in "
                                    f"{self.split_source(name)}) has no usable video under {where} "
                                    f"({len(skips)} entries dropped, e.g. {skips[:3]}); is root/frames_dir right?")
        if split.num_captions == 0:
            raise ValueError(f"{type(self).__name__}: split {name!r} ({self.split_names[name]}) has no non-empty "
                             f"caption in {self.split_source(name)}")
        rank_zero_info(f"{type(self).__name__} {name}: split {self.split_names[name]!r}, {split.num_images:,} videos, "
                       f"{split.num_captions:,} captions from {where} ({len(skips)} entries dropped at load)")
        return split

    # ------------------------------------------------------------- loaders
    def clip_reader(self, train: bool = False) -> ClipReader:
        transform = ClipTransform(self.image_size, self.mean, self.std, augment=train and self.train_augment)
        return ClipReader(self.num_frames, transform, threads=self.decode_threads)

    def train_dataloader(self) -> DataLoader:
        dataset = VideoTrainDataset(self.get_split("train"), self.clip_reader(train=True))
        return self._loader(dataset, self.batch_size, sampler=EpochKeySampler(len(dataset)), drop_last=True)

    def _eval_loaders(self, name: str) -> list[DataLoader]:
        split = self.get_split(name)
        return [self._loader(VideoEvalDataset(split, self.clip_reader()), self.eval_batch_size, drop_last=False),
                self._loader(RetrievalCaptionDataset(split), self.eval_batch_size, drop_last=False)]
