"""Tiny videos and MSR-VTT annotation files in the real formats, broken members included.

Every frame k of a fixture video is a flat colour that encodes k (:func:`frame_number` reads it
back), so a test can check exactly which frames a reader decoded. Videos are written with PyAV
(H.264, B-frames on, a fixed keyframe interval) independently of the code under test.
"""
from __future__ import annotations

import csv
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from twostream.data.formats.video_io import write_mp4

WIDTH, HEIGHT = 40, 32  # not square: readers must resize/crop


def frame_colour(k: int) -> tuple[int, int, int]:
    """Steps of 12 survive H.264 (4:2:0, near-lossless) and JPEG with a wide margin; k < 324."""
    return 20 + 12 * (k % 18), 20 + 12 * (k // 18), 128


def frame_number(frame: np.ndarray) -> int:
    """The k a frame [H, W, 3] (uint8-valued) was drawn with."""
    r, g = float(frame[..., 0].mean()), float(frame[..., 1].mean())
    return round((r - 20) / 12) + 18 * round((g - 20) / 12)


def numbered_frames(n: int, width: int = WIDTH, height: int = HEIGHT) -> list[np.ndarray]:
    return [np.broadcast_to(np.array(frame_colour(k), np.uint8), (height, width, 3)).copy() for k in range(n)]


def write_video(path: Path, frames: list[np.ndarray], fps: int = 8, gop: int = 4) -> Path:
    """H.264 mp4 through the project's own writer, near-lossless (crf 1) so frame numbers survive."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, frames, fps=fps, gop=gop, crf=1)
    return path


def write_numbered_video(path: Path, n: int, gop: int = 4) -> Path:
    return write_video(path, numbered_frames(n), gop=gop)


def write_frames_folder(folder: Path, n: int) -> Path:
    """Pre-extracted frames ``000001.jpg ...`` (1-based names, as extraction scripts write them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(numbered_frames(n)):
        Image.fromarray(frame).save(folder / f"{k + 1:06d}.jpg", quality=95)
    return folder


def write_corrupt(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(3000))
    return path


def write_empty(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# ----------------------------------------------------------------------------- MSR-VTT
GOOD, CORRUPT, EMPTY, MISSING = "good", "corrupt", "empty", "missing"
FRAMES_PER_VIDEO = 16


@dataclass
class MSRVTTFixture:
    root: Path  # videos/<id>.mp4
    annotations: Path  # MSRVTT_data.json, MSRVTT_train.9k.csv, MSRVTT_train.7k.csv, MSRVTT_JSFUSION_test.csv
    frames_dir: Path  # frames/<id>/000001.jpg ... (good videos only)
    pool_9k: list[str]
    official: dict[str, list[str]]  # train / validate / test -> ids in MSRVTT_data.json
    kinds: dict[str, str]
    # 9k training with val_split="test" and the 1k-A test:
    train_videos: list[str] = field(default_factory=list)  # kept at load, in order
    train_runtime_bad: dict[str, str] = field(default_factory=dict)  # video_id -> reason at decode time
    load_skips: Counter = field(default_factory=Counter)  # reason -> count (train + 1k-A test)
    test_videos: int = 0
    test_captions: int = 0
    test_runtime_bad: dict[str, str] = field(default_factory=dict)


def _write_kind(root: Path, frames_dir: Path, video_id: str, kind: str) -> None:
    path = root / f"{video_id}.mp4"
    if kind == GOOD:
        write_numbered_video(path, FRAMES_PER_VIDEO)
        write_frames_folder(frames_dir / video_id, FRAMES_PER_VIDEO)
    elif kind == CORRUPT:
        write_corrupt(path, seed=len(video_id))
    elif kind == EMPTY:
        write_empty(path)


def write_msrvtt(tmp: Path) -> MSRVTTFixture:
    """12 videos in the 9k list (video3 corrupt, video6 0 bytes, video9 missing, video1 with an
    empty caption, video10 without any sentence) and a 6-video 1k-A test (video102 corrupt,
    video104 missing, video105 with an empty sentence)."""
    root, annotations, frames_dir = tmp / "videos", tmp / "annotations", tmp / "frames"
    annotations.mkdir(parents=True)
    kinds = {f"video{i}": GOOD for i in range(12)} | {f"video{i}": GOOD for i in range(100, 106)}
    kinds.update(video3=CORRUPT, video6=EMPTY, video9=MISSING, video102=CORRUPT, video104=MISSING)
    for video_id, kind in kinds.items():
        _write_kind(root, frames_dir, video_id, kind)
    official = {"train": [f"video{i}" for i in range(8)], "validate": [f"video{i}" for i in range(8, 12)],
                "test": [f"video{i}" for i in range(100, 106)]}
    videos, sentences = [], []
    for split, ids in official.items():
        for video_id in ids:
            videos.append({"category": 1, "url": "https://www.youtube.com/watch?v=x", "video_id": video_id,
                           "start time": 1.5, "end time": 11.5, "split": split, "id": int(video_id[5:])})
            if video_id == "video10":
                continue
            for j in range(3):
                caption = "   " if (video_id, j) == ("video1", 2) else f"{video_id} caption {j}"
                sentences.append({"caption": caption, "video_id": video_id, "sen_id": len(sentences)})
    (annotations / "MSRVTT_data.json").write_text(json.dumps({"info": {}, "videos": videos, "sentences": sentences}))
    pool_9k = [f"video{i}" for i in range(12)]
    _write_csv(annotations / "MSRVTT_train.9k.csv", ["video_id"], [[v] for v in pool_9k])
    _write_csv(annotations / "MSRVTT_train.7k.csv", ["video_id"], [[v] for v in pool_9k[:8]])
    rows = [[f"ret{i}", f"msr{v[5:]}", v, "" if v == "video105" else f"{v} test sentence"]
            for i, v in enumerate(official["test"])]
    _write_csv(annotations / "MSRVTT_JSFUSION_test.csv", ["key", "vid_key", "video_id", "sentence"], rows)
    fx = MSRVTTFixture(root, annotations, frames_dir, pool_9k, official, kinds)
    fx.train_videos = [v for v in pool_9k if v not in ("video9", "video10")]
    fx.train_runtime_bad = {"video3": "undecodable_video", "video6": "empty_video"}
    fx.load_skips = Counter(empty_caption=3, missing_file=1)  # video1#2, video10 (no sentence), video105; video9
    fx.test_videos, fx.test_captions = 6, 5
    fx.test_runtime_bad = {"video102": "undecodable_video", "video104": "missing_file"}
    return fx


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
