"""Tiny datasets in the real public formats, broken members included (none can be downloaded here).

Writers for: Karpathy ``dataset_coco.json`` / ``dataset_flickr30k.json``, ALBEF/LAVIS retrieval
JSON, img2dataset webdataset shards (``.tar`` + ``.parquet`` + ``_stats.json``) and img2dataset's
parquet output. Each writer returns what a reader must find, so tests assert exact skip counts.
"""
from __future__ import annotations

import io
import json
import random
import tarfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

GOOD, TRUNCATED, CORRUPT, MISSING = "good", "truncated", "corrupt", "missing"


def jpeg_bytes(seed: int, size: tuple[int, int] = (48, 40)) -> bytes:
    """A small random-colour JPEG (smooth gradient + noise, so it compresses like a photo)."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 256, 3)
    grad = np.linspace(0, 60, w)[None, :, None]
    pixels = np.clip(base + grad + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def truncated_jpeg(seed: int) -> bytes:
    """A valid JPEG cut in half: the header parses, decoding fails (PIL: 'image file is truncated')."""
    data = jpeg_bytes(seed, (64, 64))
    return data[: len(data) // 2]


def corrupt_jpeg(seed: int) -> bytes:
    """Random bytes (a .jpg name, no JPEG inside): PIL cannot identify it."""
    return random.Random(seed).randbytes(700)


def image_payload(kind: str, seed: int) -> bytes | None:
    return {GOOD: jpeg_bytes, TRUNCATED: truncated_jpeg, CORRUPT: corrupt_jpeg}[kind](seed) if kind != MISSING else None


@dataclass
class ImageSpec:
    split: str  # Karpathy split name (train | restval | val | test)
    relpath: str  # below the image root
    kind: str  # GOOD | TRUNCATED | CORRUPT | MISSING
    captions: list[str]
    cocoid: int = 0


@dataclass
class Expected:
    """What a reader must report for a fixture (train split unless named otherwise)."""

    load_skips: Counter = field(default_factory=Counter)  # reason -> count, found when splits are read
    train_images: int = 0  # images kept in train after load-time checks
    train_runtime_bad: int = 0  # of those, how many fail to decode (skipped once per epoch)
    split_images: dict = field(default_factory=dict)  # split -> images
    split_captions: dict = field(default_factory=dict)  # split -> captions kept


def coco_specs(test_images: int = 10) -> list[ImageSpec]:
    """COCO-like: a 7-caption image, empty/whitespace captions, restval, truncated/corrupt/missing."""
    caps = [f"a photo number {i} of a {w}" for i, w in enumerate(("dog", "cat", "bus", "tree", "boat"))]
    specs = [
        ImageSpec("train", "train2014/COCO_train2014_000000000001.jpg", GOOD, [f"seven {i}" for i in range(7)], 1),
        ImageSpec("train", "train2014/COCO_train2014_000000000002.jpg", GOOD, caps[:3] + ["", "   \n"], 2),
        ImageSpec("restval", "val2014/COCO_val2014_000000000003.jpg", GOOD, caps, 3),
        ImageSpec("train", "train2014/COCO_train2014_000000000004.jpg", TRUNCATED, caps, 4),
        ImageSpec("train", "train2014/COCO_train2014_000000000005.jpg", CORRUPT, caps, 5),
        ImageSpec("train", "train2014/COCO_train2014_000000000006.jpg", MISSING, caps, 6),
        ImageSpec("train", "train2014/COCO_train2014_000000000007.jpg", GOOD, [" ", "\t", "", "  ", "\n"], 7),
    ]
    specs += [ImageSpec("train", f"train2014/COCO_train2014_0000000000{i}.jpg", GOOD, caps, i) for i in (10, 11, 12)]
    specs += [ImageSpec("val", f"val2014/COCO_val2014_0000000001{i:02d}.jpg", GOOD,
                        [f"val {i} caption {j}" for j in range(5)], 100 + i) for i in range(5)]
    specs += [ImageSpec("test", f"val2014/COCO_val2014_0000000002{i:02d}.jpg", GOOD,
                        [f"test {i} caption {j}" for j in range(5)], 200 + i) for i in range(test_images)]
    return specs


def expected_for(specs: list[ImageSpec]) -> Expected:
    exp = Expected()
    for name in ("train", "val", "test"):
        of_split = [s for s in specs if {"restval": "train"}.get(s.split, s.split) == name]
        if name == "train":
            for s in of_split:
                empty = sum(not c.strip() for c in s.captions)
                exp.load_skips["empty_caption"] += empty
                if s.kind == MISSING:
                    exp.load_skips["missing_file"] += 1
                    exp.load_skips["empty_caption"] -= empty  # a missing image's captions are never looked at
                    continue
                if empty == len(s.captions):
                    continue
                exp.train_images += 1
                exp.train_runtime_bad += s.kind in (TRUNCATED, CORRUPT)
            exp.split_images[name] = exp.train_images
        else:
            exp.split_images[name] = len(of_split)
            exp.load_skips["empty_caption"] += sum(not c.strip() for s in of_split for c in s.captions)
        kept = [s for s in of_split if not (name == "train" and s.kind == MISSING)]
        exp.split_captions[name] = sum(bool(c.strip()) for s in kept for c in s.captions)
    exp.load_skips = Counter({k: v for k, v in exp.load_skips.items() if v})
    return exp


def write_images(root: Path, specs: list[ImageSpec]) -> None:
    for i, s in enumerate(specs):
        data = image_payload(s.kind, i)
        if data is not None:
            (root / s.relpath).parent.mkdir(parents=True, exist_ok=True)
            (root / s.relpath).write_bytes(data)


def write_karpathy_json(path: Path, specs: list[ImageSpec], dataset: str) -> None:
    """Karpathy layout: COCO entries carry ``filepath`` + ``cocoid``, Flickr entries only ``filename``."""
    images, sentid = [], 0
    for imgid, s in enumerate(specs):
        folder, _, filename = s.relpath.rpartition("/")
        entry = {"filename": filename, "imgid": imgid, "split": s.split,
                 "sentids": list(range(sentid, sentid + len(s.captions))),
                 "sentences": [{"tokens": c.lower().split(), "raw": c, "imgid": imgid, "sentid": sentid + j}
                               for j, c in enumerate(s.captions)]}
        if dataset == "coco":
            entry.update(filepath=folder, cocoid=s.cocoid)
        images.append(entry)
        sentid += len(s.captions)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "dataset": dataset}))


def write_coco_karpathy(root: Path, test_images: int = 10) -> tuple[Path, Expected]:
    """``root/{train2014,val2014}/*.jpg`` + ``root/dataset_coco.json``."""
    specs = coco_specs(test_images)
    write_images(root, specs)
    write_karpathy_json(root / "dataset_coco.json", specs, "coco")
    return root / "dataset_coco.json", expected_for(specs)


def flickr_specs() -> list[ImageSpec]:
    caps = [f"people {w} in the park" for w in ("walk", "run", "sit", "talk", "eat")]
    specs = [ImageSpec("train", f"{1000 + i}.jpg", GOOD, caps) for i in range(4)]
    specs += [ImageSpec("train", "1004.jpg", CORRUPT, caps), ImageSpec("train", "1005.jpg", GOOD, caps[:4] + [""])]
    specs += [ImageSpec("val", f"{2000 + i}.jpg", GOOD, [f"val {i} {c}" for c in caps]) for i in range(3)]
    specs += [ImageSpec("test", f"{3000 + i}.jpg", GOOD, [f"test {i} {c}" for c in caps]) for i in range(4)]
    return specs


def write_flickr_karpathy(root: Path) -> tuple[Path, Expected]:
    """``root/<id>.jpg`` (flat, as flickr30k-images/) + ``root/dataset_flickr30k.json``."""
    specs = flickr_specs()
    write_images(root, specs)
    write_karpathy_json(root / "dataset_flickr30k.json", specs, "flickr30k")
    return root / "dataset_flickr30k.json", expected_for(specs)


def write_albef(root: Path, test_images: int = 10, prefix: str = "coco_karpathy") -> tuple[Path, Expected]:
    """ALBEF/LAVIS: ``{prefix}_train.json`` one entry per caption with ``image_id``; val/test one
    entry per image with a caption list. Same images and dirt as :func:`write_coco_karpathy`."""
    specs = coco_specs(test_images)
    write_images(root, specs)
    ann = root / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    train = [{"image": s.relpath, "caption": c, "image_id": f"coco_{s.cocoid}"}
             for s in specs if s.split in ("train", "restval") for c in s.captions]
    (ann / f"{prefix}_train.json").write_text(json.dumps(train))
    for split in ("val", "test"):
        rows = [{"image": s.relpath, "caption": s.captions} for s in specs if s.split == split]
        (ann / f"{prefix}_{split}.json").write_text(json.dumps(rows))
    return ann, expected_for(specs)


# ----------------------------------------------------------------------------- img2dataset
@dataclass
class WebSample:
    key: str
    kind: str  # GOOD | TRUNCATED | CORRUPT | MISSING (no .jpg member)
    caption: str


def web_samples(num_shards: int, per_shard: int, dirty: bool = True) -> list[list[WebSample]]:
    """Keys as img2dataset writes them (5-digit shard + 4-digit row, gaps where downloads failed).

    With ``dirty``: shard 0 holds a truncated and a corrupt JPEG, shard 1 an empty and a
    whitespace caption and a sample without its .jpg, all after the 5 samples HF reads for types.
    """
    shards = []
    for s in range(num_shards):
        rows = [WebSample(f"{s:05d}{2 * i:04d}", GOOD, f"web caption {s}-{i}") for i in range(per_shard)]
        if dirty and s == 0 and per_shard >= 7:
            rows[5].kind, rows[6].kind = TRUNCATED, CORRUPT
        if dirty and s == 1 and per_shard >= 8:
            rows[5].caption, rows[6].caption, rows[7].kind = "", "  \n", MISSING
        shards.append(rows)
    return shards


def expected_web(shards: list[list[WebSample]], parquet: bool = False) -> Counter:
    """Skip counts a reader must report. In parquet output a row without image bytes is a failed
    download (status != success), which img2dataset already counts: not dirty data, not counted."""
    bad: Counter = Counter()
    for row in (r for shard in shards for r in shard):
        if row.kind == MISSING:
            bad["missing_file"] += not parquet
        elif not row.caption.strip():
            bad["empty_caption"] += 1
        elif row.kind != GOOD:
            bad["corrupt_image"] += 1
    return bad


def _meta(row: WebSample, status: str = "success") -> dict:
    return {"url": f"http://example.com/{row.key}.jpg", "caption": row.caption, "key": row.key, "status": status,
            "error_message": None, "width": 48, "height": 40, "original_width": 480, "original_height": 400,
            "exif": "{}", "sha256": "0" * 64}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uname, info.gname = len(data), 0o444, time.time(), "bigdata", "bigdata"
    tar.addfile(info, io.BytesIO(data))


def write_img2dataset_webdataset(out: Path, shards: list[list[WebSample]]) -> list[Path]:
    """``{shard}.tar`` (members per sample in sorted order: json, jpg, txt) + ``.parquet`` + ``_stats.json``.

    Each shard also had failed downloads (odd row numbers): in the parquet and stats, not the tar.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for s, rows in enumerate(shards):
        path = out / f"{s:05d}.tar"
        with tarfile.open(path, "w") as tar:
            for i, row in enumerate(rows):
                _add(tar, f"{row.key}.json", json.dumps(_meta(row)).encode())
                if row.kind != MISSING:
                    _add(tar, f"{row.key}.jpg", image_payload(row.kind, 1000 * s + i))
                _add(tar, f"{row.key}.txt", row.caption.encode())
        failed = [_meta(WebSample(f"{s:05d}{2 * i + 1:04d}", GOOD, "dead link"), "failed_to_download")
                  for i in range(len(rows))]
        pq.write_table(pa.Table.from_pylist([_meta(r) for r in rows] + failed), out / f"{s:05d}.parquet")
        stats = {"count": 2 * len(rows), "successes": len(rows), "failed_to_download": len(rows),
                 "failed_to_resize": 0, "duration": 1.0, "status_dict": {"success": len(rows)}}
        (out / f"{s:05d}_stats.json").write_text(json.dumps(stats))
        paths.append(path)
    return paths


def write_img2dataset_parquet(out: Path, shards: list[list[WebSample]]) -> list[Path]:
    """``output_format=parquet``: one row per URL with ``key``, ``jpg`` (bytes, null on failure), ``txt``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for s, rows in enumerate(shards):
        table = [{**_meta(r, "success" if r.kind != MISSING else "failed_to_download"),
                  "jpg": image_payload(r.kind, 1000 * s + i), "txt": r.caption}
                 for i, r in enumerate(rows)]
        path = out / f"{s:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(table), path)
        stats = {"count": len(rows), "successes": sum(r.kind != MISSING for r in rows), "failed_to_download": 0}
        (out / f"{s:05d}_stats.json").write_text(json.dumps(stats))
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- CLI
TINY_OVERRIDES = """\
trainer:
  accelerator: cpu
  devices: 1
  precision: 32-true
  max_epochs: 1
  log_every_n_steps: 1
  enable_progress_bar: false
  enable_model_summary: false
  logger:
    class_path: lightning.pytorch.loggers.TensorBoardLogger
    init_args: {{save_dir: {save_dir}, name: tiny}}
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{monitor: val/rsum, mode: max, save_top_k: 1, save_last: true}}
    - class_path: twostream.callbacks.DataHealth
      init_args: {{max_bad_fraction: {max_bad_fraction}}}
    - class_path: twostream.callbacks.RunSummary
model:
  class_path: twostream.encoder.TwoStreamEncoder
  init_args:
    vision:
      class_path: twostream.towers.OpenCLIPVisionTower
      init_args:
        model_name: null
        embed_dim: 32
        config: {{image_size: 64, patch_size: 16, width: 32, layers: 1, head_width: 16}}
    text:
      class_path: twostream.towers.OpenCLIPTextTower
      init_args:
        model_name: null
        embed_dim: 32
        config: {{context_length: 16, width: 32, heads: 2, layers: 1}}
    embed_dim: 32
    warmup_steps: 1
"""


def write_tiny_overrides(path: Path, save_dir: Path, max_bad_fraction: float = 0.9) -> Path:
    """A second ``--config`` that shrinks a realistic config (towers, CPU, 1 epoch) for tests; the
    data section stays the first config's, so data arguments go on the command line."""
    path.write_text(TINY_OVERRIDES.format(save_dir=save_dir, max_bad_fraction=max_bad_fraction))
    return path
