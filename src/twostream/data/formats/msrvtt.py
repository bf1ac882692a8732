"""MSR-VTT annotation files: ``MSRVTT_data.json``, the 9k / 7k training lists and the 1k-A test csv.

Files (``annotations`` folder): ``MSRVTT_data.json`` (videos with "split" train/validate/test and
20 sentences each; its "start time"/"end time" — with spaces — locate the clip in the source
YouTube video and are not needed: the distributed mp4s are already cut), ``MSRVTT_train.9k.csv`` /
``MSRVTT_train.7k.csv`` (column ``video_id``), ``MSRVTT_JSFUSION_test.csv`` (1k-A: one caption per
video). Videos: ``root/<video_id>.mp4`` or pre-extracted frames ``frames_dir/<video_id>/*.jpg``.

Which files make which named split (and the validation hold-out) is the DataModule's choice:
:class:`~twostream.data.datamodules.msrvtt.MSRVTTDataModule`.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

from twostream.data.formats.retrieval_split import RetrievalSplit
from twostream.data.formats.video_io import video_path
from twostream.data.health import Skip, SkipReason

DATA_JSON = "MSRVTT_data.json"
TRAIN_CSV = {"9k": "MSRVTT_train.9k.csv", "7k": "MSRVTT_train.7k.csv"}
TEST_1KA_CSV = "MSRVTT_JSFUSION_test.csv"
Items = list[tuple[str, list[str]]]  # (video_id, captions) in file order


def read_msrvtt_json(path: str | Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``MSRVTT_data.json`` -> (video_id -> official split, video_id -> captions in sen_id order)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MSR-VTT annotation file not found: {path}")
    with path.open(encoding="utf-8") as f:
        data = json.load(f)
    if not (isinstance(data, dict) and all(isinstance(data.get(k), list) for k in ("videos", "sentences"))):
        raise ValueError(f"{path}: expected MSRVTT_data.json with top-level 'videos' and 'sentences' lists")
    split_of = {}
    for i, video in enumerate(data["videos"]):
        if "video_id" not in video or "split" not in video:
            raise ValueError(f"{path}: videos[{i}] lacks 'video_id' or 'split'")
        split_of[video["video_id"]] = video["split"]
    sentences = sorted(data["sentences"], key=lambda s: s.get("sen_id", 0))
    captions: dict[str, list[str]] = {}
    for s in sentences:
        if "video_id" not in s:
            raise ValueError(f"{path}: sentence {s.get('sen_id')} lacks 'video_id'")
        captions.setdefault(s["video_id"], []).append(str(s.get("caption", "")))
    return split_of, captions


def read_csv_rows(path: str | Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a csv with a header that must contain ``columns``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MSR-VTT split file not found: {path}")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; header is {reader.fieldnames}")
        return list(reader)


def build_split(items: Items, root: str | Path, frames_dir: str | Path | None, drop_missing: bool,
                ext: str = ".mp4") -> tuple[RetrievalSplit, list[Skip]]:
    """The split of ``items``, without empty captions, and the ``(reason, video_id)`` dropped.

    ``drop_missing`` (training): videos whose file/folder is absent or that have no caption left
    are dropped too. Evaluation keeps every listed video, so protocol sizes stay fixed (1k-A: 1,000
    videos): an unreadable one is scored as a blank clip and reported when it is loaded.
    """
    paths, captions, text_to_image, ids, skips = [], [], [], [], []
    for video_id, raw in items:
        kept = [c.strip() for c in raw if c.strip()]
        empty = len(raw) - len(kept) if raw else 1  # a listed video without any sentence counts once
        skips += [(SkipReason.EMPTY_CAPTION, video_id)] * empty
        path = video_path(root, video_id, frames_dir, ext)
        if drop_missing and not kept:
            continue
        if drop_missing and not path.exists():
            skips.append((SkipReason.MISSING_FILE, video_id))
            continue
        captions += kept
        text_to_image += [len(paths)] * len(kept)
        paths.append(str(path))
        ids.append(int(re.sub(r"\D", "", video_id) or len(ids)))
    return RetrievalSplit(paths, captions, text_to_image, ids), skips


def holdout_ids(video_ids: list[str], n: int) -> set[str]:
    """``n`` ids chosen by a hash of the id: the same whatever the order of the list."""
    return set(sorted(video_ids, key=lambda v: hashlib.sha1(v.encode()).hexdigest())[:n])
