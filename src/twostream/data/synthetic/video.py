"""Synthetic moving shapes: tiny mp4 clips whose captions describe a motion.

Why: text-video retrieval that runs on a CPU in minutes, reproducible from a seed, and that needs
*temporal* modelling. A shape moves left/right/up/down, grows/shrinks or changes colour; each path
is drawn at random and the two directions of a pair play the same frames in opposite order, so a
single frame (or any order-free pooling of frames) cannot tell "moves left" from "moves right",
"grows" from "shrinks", or "red to blue" from "blue to red"; frame order can.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from twostream.data.synthetic.shapes import BACKGROUNDS, COLOURS
from twostream.errors import ConfigError

SHAPES = ("circle", "square", "triangle", "diamond")  # legible at 32-64 px
MOTIONS = ("left", "right", "up", "down", "grows", "shrinks", "recolours")
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
GENERATOR_VERSION = 1  # bump when sampling/captions/rendering change, so stored datasets regenerate


@dataclass(frozen=True)
class MotionClip:
    shape: str
    colour: str
    motion: str  # one of MOTIONS
    background: str
    colour_to: str | None = None  # for "recolours"
    still: tuple[str, str] | None = None  # (shape, colour) of a second object that does not move

    def description(self) -> str:
        """Canonical text: equal descriptions mean the same content up to positions."""
        what = f"{self.colour} {self.shape} {self.motion}" + (f" to {self.colour_to}" if self.colour_to else "")
        still = f"; still {self.still[1]} {self.still[0]}" if self.still else ""
        return f"{self.background} background: {what}{still}"


@dataclass(frozen=True)
class VideoShapesConfig:
    """Every parameter that changes the generated files (their hash names the folder)."""

    num_train: int = 1000
    num_val: int = 100
    num_test: int = 200
    captions_per_video: int = 3
    frames_per_video: int = 16
    image_size: int = 64
    fps: int = 8
    gop: int = 8  # keyframe interval, so readers really seek
    second_object_fraction: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("num_train", "num_val", "num_test", "captions_per_video"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not 4 <= self.frames_per_video <= 64:
            raise ConfigError(f"frames_per_video must be in [4, 64], got {self.frames_per_video}")
        if self.image_size < 16 or self.image_size % 2:
            raise ConfigError(f"image_size must be an even number >= 16 (H.264 4:2:0), got {self.image_size}")

    def split_size(self, split: str) -> int:
        return {"train": self.num_train, "val": self.num_val, "test": self.num_test}[split]

    def fingerprint(self) -> str:
        blob = json.dumps({**dataclasses.asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]


# ----------------------------------------------------------------------------- sampling
def sample_clip(rng: random.Random, second_object_fraction: float) -> MotionClip:
    shape, colour, motion = rng.choice(SHAPES), rng.choice(tuple(COLOURS)), rng.choice(MOTIONS)
    colour_to = rng.choice([c for c in COLOURS if c != colour]) if motion == "recolours" else None
    still = None
    if rng.random() < second_object_fraction:
        still = (rng.choice([s for s in SHAPES if s != shape]), rng.choice([c for c in COLOURS if c != colour]))
    return MotionClip(shape, colour, motion, rng.choice(tuple(BACKGROUNDS)), colour_to, still)


def _noun(shape: str, colour: str | None) -> str:
    phrase = f"{colour} {shape}" if colour else shape
    return f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"


def _motion_phrase(clip: MotionClip, rng: random.Random) -> str:
    m = clip.motion
    if m in ("left", "right"):
        return rng.choice((f"moves {m}", f"moving to the {m}", f"slides to the {m}", f"goes from {OPPOSITE[m]} to {m}",
                           f"travels {m}wards"))
    if m in ("up", "down"):
        return rng.choice((f"moves {m}", f"moving {m}", f"goes {m}wards", "rises" if m == "up" else "falls",
                           f"goes from {'bottom to top' if m == 'up' else 'top to bottom'}"))
    if m in ("grows", "shrinks"):
        bigger = m == "grows"
        return rng.choice((m, "gets bigger" if bigger else "gets smaller", "growing larger" if bigger else "shrinking",
                           "expands" if bigger else "contracts"))
    return rng.choice((f"turns {clip.colour_to}", f"changes colour to {clip.colour_to}",
                       f"changes from {clip.colour} to {clip.colour_to}"))


def _caption(clip: MotionClip, rng: random.Random) -> str:
    colour = clip.colour if clip.motion == "recolours" or rng.random() < 0.85 else None
    text = f"{_noun(clip.shape, colour)} {_motion_phrase(clip, rng)}"
    if clip.still and rng.random() < 0.5:
        text += rng.choice((" while {} stays still", " next to {}", " and {} does not move")).format(_noun(*clip.still))
    elif rng.random() < 0.2:
        text += f" on a {clip.background} background"
    return text


def make_captions(clip: MotionClip, rng: random.Random, k: int) -> tuple[str, ...]:
    """``k`` distinct captions, all true of ``clip``."""
    captions: list[str] = []
    for _ in range(200 * k):
        caption = _caption(clip, rng)
        if caption not in captions:
            captions.append(caption)
            if len(captions) == k:
                return tuple(captions)
    raise ConfigError(f"could not find {k} distinct captions for {clip.description()!r}; lower captions_per_video")


# ----------------------------------------------------------------------------- rendering
def _draw(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, colour: tuple[int, int, int]) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif shape == "square":
        draw.rectangle((cx - 0.85 * r, cy - 0.85 * r, cx + 0.85 * r, cy + 0.85 * r), fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + 0.8 * r), (cx - r, cy + 0.8 * r)], fill=colour)
    else:
        draw.polygon([(cx, cy - r), (cx + 0.8 * r, cy), (cx, cy + r), (cx - 0.8 * r, cy)], fill=colour)


def _trajectory(clip: MotionClip, n: int, size: int, rng: np.random.Generator) -> list[tuple[float, float, float, str]]:
    """(x, y, radius, colour) per frame. Paths are drawn direction-free, then played forwards or
    backwards, so every frame is equally likely under both directions of a pair."""
    r, travel = 0.13 * size, 0.45 * size
    low, high = rng.uniform(0.08, 0.12) * size, rng.uniform(0.2, 0.24) * size
    a = rng.uniform(r + 1, size - r - 1 - travel)
    fixed = rng.uniform(0.25, 0.75) * size
    t = np.linspace(0.0, 1.0, n)
    forward = clip.motion in ("right", "down", "grows")
    t = t if forward else t[::-1]
    if clip.motion in ("left", "right"):
        return [(a + travel * u, fixed, r, clip.colour) for u in t]
    if clip.motion in ("up", "down"):
        return [(fixed, a + travel * u, r, clip.colour) for u in t]
    cx, cy = rng.uniform(0.3, 0.7, size=2) * size
    if clip.motion in ("grows", "shrinks"):
        return [(cx, cy, low + (high - low) * u, clip.colour) for u in t]
    switch = int(rng.integers(n // 3, 2 * n // 3 + 1))
    return [(cx, cy, r, clip.colour if i < switch else clip.colour_to) for i in range(n)]


def render_clip(clip: MotionClip, n_frames: int, size: int, seed: int) -> list[np.ndarray]:
    """``n_frames`` RGB frames [size, size, 3] of ``clip``; ``seed`` fixes positions and the still object."""
    rng = np.random.default_rng(seed)
    level = BACKGROUNDS[clip.background] + int(rng.integers(-8, 9))
    still_at = rng.uniform(0.2, 0.8, size=2) * size
    frames = []
    for x, y, r, colour in _trajectory(clip, n_frames, size, rng):
        image = Image.new("RGB", (size, size), (level, level, level))
        draw = ImageDraw.Draw(image)
        if clip.still:
            _draw(draw, clip.still[0], *still_at, 0.11 * size, COLOURS[clip.still[1]])
        _draw(draw, clip.shape, x, y, r, COLOURS[colour])
        frames.append(np.asarray(image))
    return frames


def _stream_seed(seed: int, split: str) -> int:
    return int.from_bytes(hashlib.sha256(f"synthetic-video/{seed}/{split}".encode()).digest()[:8], "big")


def generate_split(split: str, cfg: VideoShapesConfig) -> list[tuple[MotionClip, tuple[str, ...], int]]:
    """(clip, captions, render seed) for every video of ``split``; independent seed stream per split."""
    rng = random.Random(_stream_seed(cfg.seed, split))
    out = []
    for _ in range(cfg.split_size(split)):
        clip = sample_clip(rng, cfg.second_object_fraction)
        out.append((clip, make_captions(clip, rng, cfg.captions_per_video), rng.getrandbits(63)))
    return out
