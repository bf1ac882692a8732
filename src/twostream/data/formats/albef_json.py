"""ALBEF / BLIP / LAVIS retrieval JSON, and telling it apart from a Karpathy file by content.

Why a second reader: many users have only the ALBEF/LAVIS files (``coco_karpathy_train.json``
...) which hold the same Karpathy splits in another layout: one list per split, train with one
entry *per caption* (``image_id`` groups them), val/test with one entry per image and a caption
list. Both readers produce the same :class:`RetrievalSplit`, so the rest of the code is shared.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twostream.data.formats.karpathy import (
    check_image_root,
    check_images_exist,
    is_karpathy,
    load_json,
    read_karpathy_all,
)
from twostream.data.formats.retrieval_split import VALID_SPLITS, RetrievalSplit

ALBEF_EXPECTED = 'a list of {"image": path, "caption": str | [str, ...] (, "image_id": ...)} entries'
Annotations = str | os.PathLike | Mapping[str, str]
_DIGITS = re.compile(r"(\d+)$")


def is_albef(data: Any) -> bool:
    return isinstance(data, list) and bool(data) and all(
        isinstance(e, dict) and "image" in e and "caption" in e for e in data[:50]
    )


def read_albef(json_path: str | os.PathLike, image_root: str | os.PathLike, data: Any = None) -> RetrievalSplit:
    """One ALBEF/LAVIS split file -> RetrievalSplit; image path = image_root/entry["image"].

    Entries are grouped into images by ``image_id`` (train) or by image path (val/test, and lists
    without ids), in order of first appearance; ``caption`` may be a string or a list.
    """
    json_path, image_root = Path(json_path), Path(image_root)
    data = load_json(json_path, "ALBEF/LAVIS annotation file") if data is None else data
    check_image_root(image_root, json_path)
    if not isinstance(data, list) or (data and not is_albef(data)):
        raise ValueError(f"{json_path} is not an ALBEF/LAVIS retrieval file: expected {ALBEF_EXPECTED}")
    position_of: dict[Any, int] = {}
    paths: list[str] = []
    ids: list[int] = []
    captions: list[str] = []
    text_to_image: list[int] = []
    for n, entry in enumerate(data):
        if not isinstance(entry, dict) or "image" not in entry or "caption" not in entry:
            raise ValueError(f"{json_path}: entry {n} lacks 'image' or 'caption'; expected {ALBEF_EXPECTED}")
        group = entry.get("image_id", entry["image"])
        if group not in position_of:
            position_of[group] = len(paths)
            paths.append(str(image_root / entry["image"]))
            ids.append(_int_id(entry.get("image_id"), len(ids)))
        texts = entry["caption"] if isinstance(entry["caption"], list) else [entry["caption"]]
        for text in texts:
            if not isinstance(text, str):
                raise ValueError(f"{json_path}: entry {n} has a caption of type {type(text).__name__}; expected str")
            captions.append(text.strip())
            text_to_image.append(position_of[group])
    return RetrievalSplit(paths, captions, text_to_image, ids)


def _int_id(image_id: Any, position: int) -> int:
    """``"coco_328757"`` -> 328757, ``42`` -> 42; the position when there is no number."""
    if isinstance(image_id, int):
        return image_id
    match = _DIGITS.search(str(image_id)) if image_id is not None else None
    return int(match.group(1)) if match else position


def find_albef_files(directory: Path) -> dict[str, Path]:
    """``*_train.json``, ``*_val.json``, ``*_test.json`` in ``directory`` (e.g. LAVIS's
    ``coco_karpathy_val.json``; ``coco_karpathy_val_gt.json`` does not match)."""
    found: dict[str, Path] = {}
    for split in VALID_SPLITS:
        matches = sorted(directory.glob(f"*_{split}.json")) or sorted(directory.glob(f"{split}.json"))
        if len(matches) > 1:
            names = ", ".join(m.name for m in matches)
            raise ValueError(f"{directory}: several files for split {split!r} ({names}); pass annotations as "
                             f"a mapping {{train: file, val: file, test: file}}")
        if matches:
            found[split] = matches[0]
    if not found:
        raise FileNotFoundError(f"{directory}: no *_train.json / *_val.json / *_test.json annotation files")
    return found


class AnnotationSource:
    """The annotations of one datamodule, parsed at most once, in whichever format they are.

    ``annotations`` is a Karpathy ``dataset_*.json`` (all splits in one file), an ALBEF/LAVIS
    directory (``*_train.json`` ...), or a mapping ``{split: file}`` of ALBEF files or Karpathy
    files. ``format="auto"`` decides from each file's content.
    """

    def __init__(self, annotations: Annotations, image_root: str | os.PathLike, format: str = "auto") -> None:
        if format not in ("auto", "karpathy", "albef"):
            raise ValueError(f"format must be 'auto', 'karpathy' or 'albef', got {format!r}")
        self.image_root, self.format = Path(image_root), format
        if isinstance(annotations, Mapping):
            unknown = set(annotations) - set(VALID_SPLITS)
            if unknown:
                raise ValueError(f"annotations: unknown split(s) {sorted(unknown)}; valid: {', '.join(VALID_SPLITS)}")
            self.files = {k: Path(v) for k, v in annotations.items()}
        elif Path(annotations).is_dir():
            self.files = find_albef_files(Path(annotations))
        else:
            self.files = {split: Path(annotations) for split in VALID_SPLITS}
        self._cache: dict[Path, dict[str, RetrievalSplit] | RetrievalSplit] = {}

    def path(self, split: str) -> Path:
        if split not in self.files:
            raise FileNotFoundError(f"no annotation file for split {split!r} (have: {', '.join(self.files)})")
        return self.files[split]

    def split(self, split: str) -> RetrievalSplit:
        """The split; an error if none of its images exist (a wrong root, not dirty data)."""
        path = self.path(split)
        if path not in self._cache:
            self._cache[path] = self._parse(path)
        parsed = self._cache[path]
        result = parsed[split] if isinstance(parsed, dict) else parsed
        check_images_exist(result, f"split {split!r} of {path}")
        return result

    def _parse(self, path: Path) -> dict[str, RetrievalSplit] | RetrievalSplit:
        data = load_json(path, "annotation file")
        if is_karpathy(data) and self.format in ("auto", "karpathy"):
            return read_karpathy_all(path, self.image_root, data)
        if self.format in ("auto", "albef") and isinstance(data, list):
            return read_albef(path, self.image_root, data)
        expected = {"karpathy": "a Karpathy file (top-level 'images' list)", "albef": ALBEF_EXPECTED,
                    "auto": f"a Karpathy file (top-level 'images' list) or {ALBEF_EXPECTED}"}[self.format]
        raise ValueError(f"{path}: unrecognised annotation format (format={self.format!r}); expected {expected}")
