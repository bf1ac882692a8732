"""The split every source reads into: flat lists of image paths, captions and their links.

Why one type: a Karpathy file, an ALBEF/LAVIS file, MSR-VTT annotations and the synthetic data
all become a :class:`RetrievalSplit`, so datasets, DataModules and the recall metric never need to
know where the data came from. Screening (dropping empty captions and missing files without
opening an image) works on this type too.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

VALID_SPLITS = ("train", "val", "test")


@dataclass
class RetrievalSplit:
    """One split as flat lists, so datasets index it directly and the recall metric gets the
    caption -> image mapping without knowing where the data came from."""

    image_paths: list[str]
    captions: list[str]
    text_to_image: list[int]  # caption position -> image position in this split
    image_ids: list[int]  # original ids (Karpathy "imgid"), for tracing results back
    scenes: list[str] | None = None  # canonical scene descriptions (synthetic data only)

    def __post_init__(self) -> None:
        if len(self.image_ids) != len(self.image_paths):
            raise ValueError(f"{len(self.image_paths)} image paths but {len(self.image_ids)} image ids")
        if len(self.text_to_image) != len(self.captions):
            raise ValueError(f"{len(self.captions)} captions but {len(self.text_to_image)} caption->image links")
        if self.scenes is not None and len(self.scenes) != len(self.image_paths):
            raise ValueError(f"{len(self.image_paths)} images but {len(self.scenes)} scenes")
        bad = [i for i in self.text_to_image if not 0 <= i < len(self.image_paths)]
        if bad:
            raise ValueError(f"caption->image index {bad[0]} out of range for {len(self.image_paths)} images")

    @property
    def num_images(self) -> int:
        return len(self.image_paths)

    @property
    def num_captions(self) -> int:
        return len(self.captions)


def check_split_name(split: str) -> str:
    """Return ``split`` if valid, else raise an error that lists the valid names."""
    if split not in VALID_SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits are: {', '.join(VALID_SPLITS)}")
    return split


def screen_split(split: RetrievalSplit, drop_missing_images: bool) -> tuple[RetrievalSplit, list[tuple[str, str]]]:
    """Drop what is bad without opening an image: empty/whitespace captions and (if asked) images
    whose file is not on disk, with the captions they leave behind; images left without a caption
    go too when ``drop_missing_images`` (they cannot be trained on).

    Returns the cleaned split and the ``(reason, key)`` of everything dropped (key: file name, or
    ``file name#caption number`` for a caption). Evaluation splits keep missing images (protocol
    sizes and 1K folds stay fixed): their loader scores them as blank and reports them.
    """
    skips: list[tuple[str, str]] = []
    keep_image = [True] * split.num_images
    if drop_missing_images:
        for i, path in enumerate(split.image_paths):
            if not os.path.isfile(path):
                keep_image[i] = False
                skips.append(("missing_file", os.path.basename(path)))
    keep_caption = []
    seen_per_image = [0] * split.num_images
    for caption, image in zip(split.captions, split.text_to_image):
        ok = keep_image[image] and bool(caption.strip())
        if keep_image[image] and not ok:
            skips.append(("empty_caption", f"{os.path.basename(split.image_paths[image])}#{seen_per_image[image]}"))
        seen_per_image[image] += 1
        keep_caption.append(ok)
    if drop_missing_images:
        has_caption = [False] * split.num_images
        for image, ok in zip(split.text_to_image, keep_caption):
            has_caption[image] = has_caption[image] or ok
        keep_image = [k and c for k, c in zip(keep_image, has_caption)]
    if not skips and all(keep_image):
        return split, skips
    return subset_split(split, keep_image, keep_caption), skips


def subset_split(split: RetrievalSplit, keep_image: list[bool], keep_caption: list[bool]) -> RetrievalSplit:
    """The kept images and the kept captions of kept images, re-indexed."""
    new_position = {}
    for i, keep in enumerate(keep_image):
        if keep:
            new_position[i] = len(new_position)
    pairs = [(c, new_position[i]) for c, i, k in zip(split.captions, split.text_to_image, keep_caption)
             if k and i in new_position]
    return RetrievalSplit(
        [p for p, k in zip(split.image_paths, keep_image) if k],
        [c for c, _ in pairs],
        [i for _, i in pairs],
        [x for x, k in zip(split.image_ids, keep_image) if k],
        None if split.scenes is None else [s for s, k in zip(split.scenes, keep_image) if k],
    )
