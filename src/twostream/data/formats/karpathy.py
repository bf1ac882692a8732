"""Karpathy-style split files: the one on-disk format every image-text source goes through.

Why: COCO and Flickr30K retrieval splits are distributed as Karpathy's ``dataset_*.json``; writing
the synthetic data in the same format means real and synthetic data share a single reader, so the
code path that is tested on CPU is the one used for real benchmarks. Both directions produce or take
a :class:`~twostream.data.formats.retrieval_split.RetrievalSplit`.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from twostream.data.formats.retrieval_split import VALID_SPLITS, RetrievalSplit, check_split_name

# Karpathy's COCO file puts the extra 30k "restval" images in a split of their own; they are train data.
SPLIT_ALIASES = {"restval": "train"}
_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize_caption(raw: str) -> list[str]:
    """Lower-case word tokens, as in Karpathy's files (the model does its own tokenization)."""
    return _TOKEN.findall(raw.lower())


def read_karpathy(json_path: str | os.PathLike, image_root: str | os.PathLike, split: str) -> RetrievalSplit:
    """Read one split of a Karpathy-style json; image path = image_root/[filepath/]filename.

    Every sentence is kept (COCO has images with 6-7 captions); ``restval`` counts as ``train``.
    To read several splits, :func:`read_karpathy_all` parses the (large) file only once.
    """
    check_split_name(split)
    result = read_karpathy_all(json_path, image_root)[split]
    check_images_exist(result, f"split {split!r} of {json_path}")
    return result


def read_karpathy_all(
    json_path: str | os.PathLike, image_root: str | os.PathLike, data: Any = None
) -> dict[str, RetrievalSplit]:
    """Every split of a Karpathy-style json from one parse (COCO's file is ~140 MB of JSON);
    ``data``: the file's already parsed content, if the caller has it."""
    json_path, image_root = Path(json_path), Path(image_root)
    data = load_json(json_path, "Karpathy split file") if data is None else data
    check_image_root(image_root, json_path)
    if not is_karpathy(data):
        raise ValueError(f"{json_path} is not a Karpathy split file: expected a top-level 'images' list")
    by_split: dict[str, list[dict[str, Any]]] = {name: [] for name in VALID_SPLITS}
    for position, entry in enumerate(data["images"]):
        name = SPLIT_ALIASES.get(entry.get("split"), entry.get("split"))
        if name not in by_split:
            raise ValueError(f"{json_path}: image entry {position} has split {entry.get('split')!r}; "
                             f"expected one of train, restval, val, test")
        by_split[name].append(entry)
    return {name: _entries_to_split(entries, image_root, json_path) for name, entries in by_split.items()}


def is_karpathy(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("images"), list)


def load_json(path: Path, what: str) -> Any:
    """Parse ``path``; errors name the file and what it was expected to be."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    with path.open(encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} ({what}) is not valid JSON: {err}") from err


def check_image_root(image_root: Path, json_path: Path) -> None:
    if not image_root.is_dir():
        raise FileNotFoundError(f"image root directory not found: {image_root} (images for {json_path})")


def check_images_exist(split: RetrievalSplit, where: str) -> None:
    """A wrong image root makes *every* path miss: fail then, naming one path. Some missing
    files are dirty data, which the datamodule skips and counts instead."""
    paths = split.image_paths
    if paths and not os.path.isfile(paths[0]) and not any(os.path.isfile(p) for p in paths):
        raise FileNotFoundError(
            f"image file not found: {paths[0]} (none of the {len(paths):,} images of {where} exist; "
            f"is the image root right?)"
        )


def _entries_to_split(entries: list[dict[str, Any]], image_root: Path, json_path: Path) -> RetrievalSplit:
    paths: list[str] = []
    captions: list[str] = []
    text_to_image: list[int] = []
    ids: list[int] = []
    scenes: list[str] = []
    for position, entry in enumerate(entries):
        if "filename" not in entry or "sentences" not in entry:
            raise ValueError(f"{json_path}: image entry {position} lacks 'filename' or 'sentences'")
        folder = image_root / entry["filepath"] if entry.get("filepath") else image_root
        paths.append(str(folder / entry["filename"]))
        ids.append(int(entry.get("imgid", position)))
        for sentence in entry["sentences"]:
            captions.append(sentence["raw"].strip())
            text_to_image.append(position)
        if "scene" in entry:
            scenes.append(entry["scene"])
    has_scenes = bool(entries) and len(scenes) == len(entries)
    return RetrievalSplit(paths, captions, text_to_image, ids, scenes if has_scenes else None)


def write_karpathy(
    json_path: str | os.PathLike,
    splits: Mapping[str, RetrievalSplit],
    image_root: str | os.PathLike,
    dataset: str,
    extras: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> None:
    """Write splits as one Karpathy json (atomically: temp file + rename).

    Image paths are stored relative to ``image_root``; ``extras[split][i]`` adds fields to image i's
    entry (e.g. which scene a distractor was made from). Sentence ids are numbered file-wide.
    """
    image_root = Path(image_root)
    images: list[dict[str, Any]] = []
    next_sentid = 0
    for split_name, split in splits.items():
        check_split_name(split_name)
        captions_of: list[list[str]] = [[] for _ in split.image_paths]
        for caption, image in zip(split.captions, split.text_to_image):
            captions_of[image].append(caption)
        for i, path in enumerate(split.image_paths):
            entry = _image_entry(Path(path), image_root, split.image_ids[i], split_name, captions_of[i], next_sentid)
            next_sentid += len(captions_of[i])
            if split.scenes is not None:
                entry["scene"] = split.scenes[i]
            if extras is not None and split_name in extras:
                entry.update(extras[split_name][i])
            images.append(entry)
    json_path = Path(json_path)
    tmp = json_path.with_name(json_path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump({"dataset": dataset, "images": images}, f)
    os.replace(tmp, json_path)


def _image_entry(
    path: Path, image_root: Path, imgid: int, split: str, captions: list[str], first_sentid: int
) -> dict[str, Any]:
    relative = Path(os.path.relpath(path, image_root))
    sentids = list(range(first_sentid, first_sentid + len(captions)))
    entry: dict[str, Any] = {"filename": relative.name, "imgid": imgid, "split": split, "sentids": sentids}
    if str(relative.parent) != ".":
        entry["filepath"] = relative.parent.as_posix()
    entry["sentences"] = [
        {"raw": raw, "tokens": tokenize_caption(raw), "imgid": imgid, "sentid": sentid}
        for raw, sentid in zip(captions, sentids)
    ]
    return entry
