"""The synthetic moving-shapes dataset on disk: generated on first use as MSR-VTT files.

Why the MSR-VTT format: the files are real mp4s plus an ``MSRVTT_data.json`` (official-split
style: train / validate / test, several sentences per video), so the synthetic data goes through
the same reader, decoder and DataModule as MSR-VTT itself (``train_split="full"``,
``test_split="full"``) and the CPU-tested path is the benchmark path. The folder is named by a
hash of the generation parameters: a changed parameter regenerates, a finished folder is reused.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from tqdm.auto import tqdm

from twostream.data.formats.msrvtt import DATA_JSON
from twostream.data.formats.video_io import write_mp4
from twostream.data.synthetic.generated import generate_once
from twostream.data.synthetic.video import GENERATOR_VERSION, VideoShapesConfig, generate_split, render_clip

VIDEOS_DIR = "videos"
OFFICIAL = {"train": "train", "val": "validate", "test": "test"}  # our split -> MSRVTT_data.json "split"


def dataset_dir(root: str | os.PathLike, cfg: VideoShapesConfig) -> Path:
    return Path(root) / cfg.fingerprint()


def ensure_video_dataset(root: str | os.PathLike, cfg: VideoShapesConfig, progress: bool = True) -> Path:
    """The dataset folder for ``cfg``, generated first (into a temporary folder renamed into place,
    so an interrupted run never leaves a half dataset) if it does not exist yet."""
    return generate_once(dataset_dir(root, cfg), DATA_JSON, lambda tmp: _write_dataset(tmp, cfg, progress))


def _write_dataset(out: Path, cfg: VideoShapesConfig, progress: bool) -> None:
    (out / VIDEOS_DIR).mkdir()
    videos, sentences = [], []
    total = cfg.num_train + cfg.num_val + cfg.num_test
    seconds = round(cfg.frames_per_video / cfg.fps, 3)
    with tqdm(total=total, desc="generating synthetic video", unit="video", disable=not progress) as bar:
        for split, official in OFFICIAL.items():
            for clip, captions, seed in generate_split(split, cfg):
                number = len(videos)
                video_id = f"video{number}"
                frames = render_clip(clip, cfg.frames_per_video, cfg.image_size, seed)
                write_mp4(out / VIDEOS_DIR / f"{video_id}.mp4", frames, cfg.fps, cfg.gop)
                videos.append({"video_id": video_id, "category": 0, "url": "", "start time": 0.0,
                               "end time": seconds, "split": official, "id": number, "scene": clip.description()})
                sentences += [{"sen_id": len(sentences) + j, "video_id": video_id, "caption": c}
                              for j, c in enumerate(captions)]
                bar.update()
    info = {"description": "twostream synthetic moving shapes (MSR-VTT format)", "version": GENERATOR_VERSION}
    (out / DATA_JSON).write_text(json.dumps({"info": info, "videos": videos, "sentences": sentences}))
    params = {**dataclasses.asdict(cfg), "version": GENERATOR_VERSION}
    (out / "params.json").write_text(json.dumps(params, indent=1) + "\n")
