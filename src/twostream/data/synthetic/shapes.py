"""Synthetic shapes: procedural compositional scenes, their captions and rendering.

Why: a tiny image-text dataset that needs no download, is exactly reproducible from a seed, and
still has the structure retrieval must learn (attributes, positions, relations). A fraction of
scenes are near-duplicates of another scene (one attribute changed), so Recall@K is not trivial.
No torch here: generation is plain Python + numpy + PIL.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Set
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from twostream.data.formats.retrieval_split import VALID_SPLITS
from twostream.data.synthetic.shapes_captions import COLUMNS, ROWS, SHAPE_WORDS, SIZE_WORDS, make_captions
from twostream.data.synthetic.shapes_captions import relations  # noqa: F401  (re-exported: scenes' relations)
from twostream.errors import ConfigError

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS = {"red": (220, 30, 30), "green": (30, 160, 50), "blue": (30, 70, 225), "yellow": (235, 200, 0),
           "purple": (135, 45, 180), "orange": (245, 125, 15), "pink": (245, 110, 185), "brown": (125, 75, 30)}
SIZES = ("small", "large")
BACKGROUNDS = {"light": 225, "dark": 35}
CHANGES = ("colour", "shape", "size", "position")
# The caption vocabulary, grouped by what a word names, for hard-negative captions (a word is replaced
# by another of its group). "a|b" entries are synonyms (one meaning): a word is never swapped for
# its own synonym, or the "negative" would still describe the image. "plus sign" (two words) is
# left out; "left"/"right" also occur in relations ("to the left of"), where a swap is still false.
CAPTION_WORD_GROUPS: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": tuple("|".join(w for w in words if " " not in w) for words in SHAPE_WORDS.values()),
    "size": tuple("|".join(words) for words in SIZE_WORDS.values()),
    "position": ("top", "middle|centre|center", "bottom", "left", "right"),
}
# Bump when sampling/captions/rendering change, so stored datasets regenerate. 2: every caption is
# stored with its meaning (``shapes_captions``), for the oracle ceiling; ``specific_captions``.
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class ShapeObject:
    shape: str
    colour: str
    size: str
    col: int  # 0..2, index into COLUMNS
    row: int  # 0..2, index into ROWS


@dataclass(frozen=True)
class Scene:
    objects: tuple[ShapeObject, ...]  # each in its own grid cell
    background: str

    def description(self) -> str:
        """Canonical, order-free text: equal descriptions mean semantically identical images."""
        parts = sorted(f"{o.size} {o.colour} {o.shape} at {ROWS[o.row]} {COLUMNS[o.col]}" for o in self.objects)
        return f"{self.background} background: " + "; ".join(parts)


@dataclass(frozen=True)
class SceneRecord:
    scene: Scene
    captions: tuple[str, ...]
    render_seed: int
    meanings: tuple[tuple, ...] = ()  # what each caption asserts (``shapes_captions.is_true_of``)
    distractor_of: int | None = None  # position (in the same split) of the scene this one copies
    change: str | None = None  # which of CHANGES made it differ from that scene


@dataclass(frozen=True)
class ShapesConfig:
    """Every parameter that changes the generated files (so their hash names the folder)."""

    num_train: int = 10_000
    num_val: int = 500
    num_test: int = 1_000
    captions_per_image: int = 5
    distractor_fraction: float = 0.3
    seed: int = 0
    image_size: int = 64
    specific_captions: bool = True

    def __post_init__(self) -> None:
        for key in ("num_train", "num_val", "num_test"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.captions_per_image < 1:
            raise ConfigError(f"captions_per_image must be >= 1, got {self.captions_per_image}")
        if not 0.0 <= self.distractor_fraction <= 1.0:
            raise ConfigError(f"distractor_fraction must be in [0, 1], got {self.distractor_fraction}")
        if self.image_size < 16:
            raise ConfigError(f"image_size must be >= 16 pixels, got {self.image_size}")

    def split_size(self, split: str) -> int:
        return {"train": self.num_train, "val": self.num_val, "test": self.num_test}[split]

    def fingerprint(self) -> str:
        blob = json.dumps({**dataclasses.asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]


# ----------------------------------------------------------------------------- sampling
def sample_scene(rng: random.Random) -> Scene:
    cells = rng.sample(range(9), rng.randint(1, 3))
    objects = tuple(
        ShapeObject(rng.choice(SHAPES), rng.choice(tuple(COLOURS)), rng.choice(SIZES), c % 3, c // 3) for c in cells
    )
    return Scene(objects, rng.choice(tuple(BACKGROUNDS)))


def mutate_scene(scene: Scene, rng: random.Random) -> tuple[Scene, str]:
    """Copy ``scene`` with exactly one attribute changed; returns (new scene, change name).

    "position" swaps the cells of two objects that look different; a scene without such a pair
    has one object moved to a free cell instead.
    """
    objects = list(scene.objects)
    change = rng.choice(CHANGES)
    i = rng.randrange(len(objects))
    o = objects[i]
    if change == "colour":
        objects[i] = dataclasses.replace(o, colour=rng.choice([c for c in COLOURS if c != o.colour]))
    elif change == "shape":
        objects[i] = dataclasses.replace(o, shape=rng.choice([s for s in SHAPES if s != o.shape]))
    elif change == "size":
        objects[i] = dataclasses.replace(o, size="large" if o.size == "small" else "small")
    else:
        looks = [(x.shape, x.colour, x.size) for x in objects]
        pairs = [(a, b) for a in range(len(objects)) for b in range(a + 1, len(objects)) if looks[a] != looks[b]]
        if pairs:
            a, b = rng.choice(pairs)
            objects[a] = dataclasses.replace(objects[a], col=objects[b].col, row=objects[b].row)
            objects[b] = dataclasses.replace(objects[b], col=scene.objects[a].col, row=scene.objects[a].row)
        else:
            free = sorted(set(range(9)) - {x.row * 3 + x.col for x in objects})
            cell = rng.choice(free)
            objects[i] = dataclasses.replace(o, col=cell % 3, row=cell // 3)
    return Scene(tuple(objects), scene.background), change


def _stream_seed(seed: int, split: str) -> int:
    """Independent, stable seed stream per split (stable across Python runs, unlike hash())."""
    return int.from_bytes(hashlib.sha256(f"synthetic-shapes/{seed}/{split}".encode()).digest()[:8], "big")


def generate_split(split: str, cfg: ShapesConfig, forbidden: Set[str] = frozenset()) -> list[SceneRecord]:
    """Sample one split; scenes whose description is in ``forbidden`` (other splits) are rejected."""
    rng = random.Random(_stream_seed(cfg.seed, split))
    records: list[SceneRecord] = []
    for _ in range(cfg.split_size(split)):
        scene, source, change = None, None, None
        if records and rng.random() < cfg.distractor_fraction:
            source = rng.randrange(len(records))
            for _attempt in range(10):
                candidate, change = mutate_scene(records[source].scene, rng)
                if candidate.description() not in forbidden:
                    scene = candidate
                    break
            if scene is None:
                source, change = None, None
        while scene is None:
            candidate = sample_scene(rng)
            scene = None if candidate.description() in forbidden else candidate
        captions, meanings = make_captions(scene, rng, cfg.captions_per_image, cfg.specific_captions)
        records.append(SceneRecord(scene, captions, rng.getrandbits(63), meanings, source, change))
    return records


def generate_all(cfg: ShapesConfig) -> dict[str, list[SceneRecord]]:
    """All splits, with no scene description shared between splits (test first, then val, train)."""
    seen: set[str] = set()
    out: dict[str, list[SceneRecord]] = {}
    for split in ("test", "val", "train"):
        out[split] = generate_split(split, cfg, seen)
        seen |= {r.scene.description() for r in out[split]}
    return {split: out[split] for split in VALID_SPLITS}


# ----------------------------------------------------------------------------- rendering
def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + 0.8 * r), (cx - r, cy + 0.8 * r)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.75 * r, cy), (cx, cy + r), (cx - 0.75 * r, cy)]
    if shape == "star":
        angles = np.pi * (np.arange(10) / 5 - 0.5)
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        return list(zip(cx + radii * np.cos(angles), cy + radii * np.sin(angles)))
    if shape == "cross":
        w = 0.35 * r
        pts = [(w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r),
               (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w), (-w, -r)]
        return [(cx + x, cy + y) for x, y in pts]
    raise ValueError(f"no polygon for shape {shape!r}")


def render_scene(scene: Scene, size: int, seed: int) -> Image.Image:
    """Draw ``scene`` on a noisy plain background; ``seed`` fixes noise and small position jitter."""
    rng = np.random.default_rng(seed)
    base = BACKGROUNDS[scene.background] + int(rng.integers(-8, 9))
    noise = rng.integers(-4, 5, size=(size, size, 1), dtype=np.int16)  # grey noise: keeps PNGs small
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8).repeat(3, axis=2)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    cell = size / 3
    for o in scene.objects:
        jx, jy = rng.uniform(-0.08, 0.08, size=2) * cell
        cx, cy = (o.col + 0.5) * cell + jx, (o.row + 0.5) * cell + jy
        r = cell * (0.40 if o.size == "large" else 0.22)
        colour = COLOURS[o.colour]
        if o.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        elif o.shape == "square":
            draw.rectangle((cx - 0.85 * r, cy - 0.85 * r, cx + 0.85 * r, cy + 0.85 * r), fill=colour)
        else:
            draw.polygon(_polygon(o.shape, cx, cy, r), fill=colour)
    return image


def scene_from_description(text: str) -> Scene:
    """Inverse of :meth:`Scene.description` (the canonical text stored in the dataset files)."""
    background, _, rest = text.partition(" background: ")
    objects = []
    for part in rest.split("; "):
        words, _, cell = part.partition(" at ")
        size, colour, shape = words.split(" ")
        row, col = cell.split(" ")
        objects.append(ShapeObject(shape, colour, size, COLUMNS.index(col), ROWS.index(row)))
    return Scene(tuple(objects), background)
