"""The synthetic shapes dataset on disk: generated on first use as a Karpathy file plus PNGs.

Why: the files are written in the Karpathy format under a folder named by a hash of the
generation parameters, so a changed parameter regenerates, a finished folder is reused, and the
DataModule (:class:`~twostream.data.datamodules.synthetic_shapes.SyntheticShapesDataModule`) reads
them through the same ``read_karpathy`` path that COCO/Flickr30K use. Each caption's meaning is
stored next to it (``meanings``), for the oracle ceiling.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from tqdm.auto import tqdm

from twostream.data.formats.karpathy import write_karpathy
from twostream.data.formats.retrieval_split import RetrievalSplit
from twostream.data.synthetic.generated import generate_once
from twostream.data.synthetic.shapes import GENERATOR_VERSION, SceneRecord, ShapesConfig, generate_all, render_scene
from twostream.data.synthetic.shapes_captions import freeze

JSON_NAME = "dataset_shapes.json"
IMAGES_DIR = "images"


def dataset_dir(root: str | os.PathLike, cfg: ShapesConfig) -> Path:
    return Path(root) / f"shapes-{cfg.fingerprint()}"


def ensure_shapes_dataset(root: str | os.PathLike, cfg: ShapesConfig, progress: bool = True) -> Path:
    """Return the dataset folder for ``cfg``, generating it first if it does not exist yet.

    Generation writes into a temporary sibling folder that is renamed into place at the end, so an
    interrupted run never leaves a half dataset that a later run would take for a finished one.
    """
    return generate_once(dataset_dir(root, cfg), JSON_NAME, lambda tmp: _write_dataset(tmp, cfg, progress))


def _write_dataset(out: Path, cfg: ShapesConfig, progress: bool) -> None:
    images = out / IMAGES_DIR
    images.mkdir()
    records = generate_all(cfg)
    splits: dict[str, RetrievalSplit] = {}
    extras: dict[str, list[dict]] = {}
    next_id = 0
    total = sum(len(r) for r in records.values())
    with tqdm(total=total, desc="generating synthetic shapes", unit="img", disable=not progress) as bar:
        for name, recs in records.items():
            splits[name] = RetrievalSplit([], [], [], [], [])
            extras[name] = [_provenance(rec, next_id) for rec in recs]
            for position, rec in enumerate(recs):
                path = images / f"{next_id + position:06d}.png"
                render_scene(rec.scene, cfg.image_size, rec.render_seed).save(path, compress_level=6)
                _append(splits[name], rec, str(path), next_id + position)
                bar.update()
            next_id += len(recs)
    write_karpathy(out / JSON_NAME, splits, images, dataset="shapes", extras=extras)
    params = {**dataclasses.asdict(cfg), "version": GENERATOR_VERSION}
    (out / "params.json").write_text(json.dumps(params, indent=1) + "\n")


def _append(split: RetrievalSplit, rec: SceneRecord, path: str, imgid: int) -> None:
    position = split.num_images
    split.image_paths.append(path)
    split.image_ids.append(imgid)
    split.scenes.append(rec.scene.description())
    split.captions.extend(rec.captions)
    split.text_to_image.extend([position] * len(rec.captions))


def _provenance(rec: SceneRecord, first_id: int) -> dict:
    """Extra annotation: what each caption asserts (``meanings``, in caption order) and, for
    distractors, the image id of their source scene and what changed."""
    extra: dict = {"meanings": [list(m) for m in rec.meanings]}
    if rec.distractor_of is not None:
        extra.update(distractor_of=first_id + rec.distractor_of, change=rec.change)
    return extra


def read_meanings(json_path: Path) -> dict[str, tuple]:
    """Caption text -> meaning, over the whole file (a caption's words determine its meaning)."""
    data = json.loads(json_path.read_text())
    out: dict[str, tuple] = {}
    for entry in data["images"]:
        for sentence, meaning in zip(entry["sentences"], entry.get("meanings", ())):
            out[sentence["raw"]] = freeze(meaning)
    return out
