"""Synthetic shapes generation, the Karpathy reader/writer and the retrieval DataModule contract."""
from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import seed_everything
from PIL import Image

from twostream.data import RetrievalSplit, SyntheticShapesDataModule, read_karpathy, write_karpathy
from twostream.data.formats.karpathy import tokenize_caption
from twostream.data.synthetic import shapes as synthetic_shapes
from twostream.data.synthetic import shapes_dataset
from twostream.data.synthetic.shapes import COLOURS, SHAPE_WORDS, Scene, ShapesConfig, generate_all, make_captions

SMALL = dict(num_train=40, num_val=8, num_test=16, image_size=32)
SHAPE_TOKENS = {w: s for s, phrases in SHAPE_WORDS.items() for p in phrases for w in p.split() if w != "sign"}
COUNTS = {"one": 1, "single": 1, "two": 2, "three": 3}


@pytest.fixture(scope="module")
def datamodule(tmp_path_factory) -> SyntheticShapesDataModule:
    dm = SyntheticShapesDataModule(root=str(tmp_path_factory.mktemp("shapes")), batch_size=8, eval_batch_size=5,
                                   progress=False, **SMALL)
    dm.prepare_data()
    dm.setup()
    return dm


def _differences(a: Scene, b: Scene) -> list[str]:
    """Attribute-level changes between scenes; a swap of two objects' cells counts as one."""
    if a.background != b.background or len(a.objects) != len(b.objects):
        return ["structure"]
    looks = lambda s: Counter((o.shape, o.colour, o.size) for o in s.objects)  # noqa: E731
    if looks(a) == looks(b):
        return [] if set(a.objects) == set(b.objects) else ["position"]
    by_cell = {(o.col, o.row): o for o in b.objects}
    diffs = []
    for o in a.objects:
        other = by_cell.get((o.col, o.row))
        if other is None:
            return ["structure"]
        diffs += [f for f in ("shape", "colour", "size") if getattr(o, f) != getattr(other, f)]
    return diffs


def test_generation_is_deterministic_per_seed():
    cfg = ShapesConfig(**SMALL)
    first, again = generate_all(cfg), generate_all(cfg)
    other = generate_all(ShapesConfig(**{**SMALL, "seed": 1}))
    for split in ("train", "val", "test"):
        assert [r.captions for r in first[split]] == [r.captions for r in again[split]]
        assert [r.captions for r in first[split]] != [r.captions for r in other[split]]
    rec = first["train"][0]
    pixels = [np.asarray(synthetic_shapes.render_scene(rec.scene, 32, rec.render_seed)) for _ in range(2)]
    assert np.array_equal(pixels[0], pixels[1])
    other_rec = other["train"][0]
    other_pixels = synthetic_shapes.render_scene(other_rec.scene, 32, other_rec.render_seed)
    assert not np.array_equal(pixels[0], np.asarray(other_pixels))


def test_stored_pixels_identical_across_generations(tmp_path, datamodule):
    again = SyntheticShapesDataModule(root=str(tmp_path), progress=False, **SMALL)
    again.setup("test")
    a, b = datamodule.get_split("test"), again.get_split("test")
    assert a.captions == b.captions
    for p, q in zip(a.image_paths[:5], b.image_paths[:5]):
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(q)))


def test_at_least_five_distinct_captions_per_image(datamodule):
    for name in ("train", "val", "test"):
        split = datamodule.get_split(name)
        per_image = Counter(split.text_to_image)
        assert all(per_image[i] == 5 for i in range(split.num_images))
        for i in range(split.num_images):
            assert len({c for c, j in zip(split.captions, split.text_to_image) if j == i}) == 5
    rng = random.Random(0)
    scene = synthetic_shapes.sample_scene(rng)
    assert len(set(make_captions(scene, rng, 12)[0])) == 12  # more captions per image is configurable


def test_captions_are_true_of_their_scene():
    records = generate_all(ShapesConfig(**{**SMALL, "num_train": 300}))["train"]
    for rec in records:
        colours = {o.colour for o in rec.scene.objects}
        shapes = {o.shape for o in rec.scene.objects}
        for caption in rec.captions:
            tokens = tokenize_caption(caption)
            assert {t for t in tokens if t in COLOURS} <= colours, caption
            assert {SHAPE_TOKENS[t] for t in tokens if t in SHAPE_TOKENS} <= shapes, caption
            counts = {COUNTS[t] for t in tokens if t in COUNTS}
            assert counts <= {len(rec.scene.objects)}, caption
            assert ("dark" in tokens) <= (rec.scene.background == "dark"), caption


def test_relations_follow_positions():
    a = synthetic_shapes.ShapeObject("circle", "red", "small", col=0, row=0)
    b = synthetic_shapes.ShapeObject("square", "blue", "large", col=1, row=0)
    c = synthetic_shapes.ShapeObject("star", "green", "large", col=2, row=2)
    assert set(synthetic_shapes.relations(a, b)) == {"to the left of", "left of", "next to", "beside"}
    assert set(synthetic_shapes.relations(c, a)) == {"to the right of", "right of", "below", "underneath"}


def test_distractors_differ_from_source_in_exactly_one_attribute():
    records = generate_all(ShapesConfig(**{**SMALL, "num_train": 400}))["train"]
    distractors = [r for r in records if r.distractor_of is not None]
    assert 0.2 < len(distractors) / len(records) < 0.4
    assert {r.change for r in distractors} == {"colour", "shape", "size", "position"}
    for rec in distractors:
        assert _differences(records[rec.distractor_of].scene, rec.scene) == [rec.change]


def test_distractor_source_is_recorded_in_annotation(datamodule):
    data = json.loads((datamodule.dataset_dir / "dataset_shapes.json").read_text())
    entries = {e["imgid"]: e for e in data["images"]}
    marked = [e for e in data["images"] if "distractor_of" in e]
    assert marked and all(entries[e["distractor_of"]]["split"] == e["split"] for e in marked)


def test_splits_are_disjoint(datamodule):
    splits = {name: datamodule.get_split(name) for name in ("train", "val", "test")}
    assert [s.num_images for s in splits.values()] == [40, 8, 16]
    for x, y in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not set(splits[x].image_ids) & set(splits[y].image_ids)
        assert not set(splits[x].image_paths) & set(splits[y].image_paths)
        assert not set(splits[x].scenes) & set(splits[y].scenes)


def test_karpathy_round_trip(tmp_path):
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png"):
        Image.new("RGB", (4, 4)).save(tmp_path / "imgs" / name)
    root = tmp_path / "imgs"
    train = RetrievalSplit([str(root / "a.png")], ["A dog.", "a cat"], [0, 0], [7], ["s1"])
    test = RetrievalSplit([str(root / "sub/b.png")], ["two birds"], [0], [9], ["s2"])
    write_karpathy(tmp_path / "d.json", {"train": train, "test": test}, root, dataset="toy")
    assert read_karpathy(tmp_path / "d.json", root, "train") == train
    assert read_karpathy(tmp_path / "d.json", root, "test") == test
    assert read_karpathy(tmp_path / "d.json", root, "val").num_images == 0
    data = json.loads((tmp_path / "d.json").read_text())
    assert data["images"][1]["filepath"] == "sub"
    assert data["images"][0]["sentences"][0]["tokens"] == ["a", "dog"]
    assert [s["sentid"] for e in data["images"] for s in e["sentences"]] == [0, 1, 2]


def test_restval_counts_as_train_and_scenes_optional(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "x.jpg")
    entry = {"filename": "x.jpg", "imgid": 3, "split": "restval", "sentences": [{"raw": " a b \n"}] * 6}
    (tmp_path / "d.json").write_text(json.dumps({"images": [entry]}))
    split = read_karpathy(tmp_path / "d.json", tmp_path, "train")
    assert split.image_ids == [3] and split.captions == ["a b"] * 6 and split.scenes is None


def test_clear_errors(tmp_path, datamodule):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_karpathy(tmp_path / "nope.json", tmp_path, "train")
    json_path = datamodule.dataset_dir / "dataset_shapes.json"
    with pytest.raises(FileNotFoundError, match="no_images_here"):
        read_karpathy(json_path, tmp_path / "no_images_here", "train")
    with pytest.raises(FileNotFoundError, match="image file not found"):
        read_karpathy(json_path, tmp_path, "train")
    with pytest.raises(ValueError, match="'dev'.*train, val, test"):
        read_karpathy(json_path, datamodule.dataset_dir / "images", "dev")
    with pytest.raises(ValueError, match="distractor_fraction"):
        SyntheticShapesDataModule(root=str(tmp_path), distractor_fraction=1.5)


def test_generation_is_reused_and_keyed_by_parameters(tmp_path, monkeypatch):
    dm = SyntheticShapesDataModule(root=str(tmp_path), progress=False, **SMALL)
    dm.prepare_data()
    stamp = (dm.dataset_dir / "dataset_shapes.json").stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("regenerated")

    monkeypatch.setattr(shapes_dataset, "_write_dataset", fail)
    SyntheticShapesDataModule(root=str(tmp_path), progress=False, **SMALL).prepare_data()
    assert (dm.dataset_dir / "dataset_shapes.json").stat().st_mtime_ns == stamp
    changed = SyntheticShapesDataModule(root=str(tmp_path), progress=False, **{**SMALL, "seed": 3})
    assert changed.dataset_dir != dm.dataset_dir
    with pytest.raises(AssertionError, match="regenerated"):
        changed.prepare_data()


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(shapes_dataset, "render_scene", boom)
    dm = SyntheticShapesDataModule(root=str(tmp_path), progress=False, **SMALL)
    with pytest.raises(KeyboardInterrupt):
        dm.prepare_data()
    assert list(tmp_path.iterdir()) == []


def test_train_batches(datamodule):
    batch = next(iter(datamodule.train_dataloader()))
    assert set(batch) == {"image", "caption", "image_index", "text_index"}
    assert batch["image"].shape == (8, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert isinstance(batch["caption"], list) and isinstance(batch["caption"][0], str)
    assert batch["image_index"].dtype == batch["text_index"].dtype == torch.int64
    split = datamodule.get_split("train")
    for caption, i, t in zip(batch["caption"], batch["image_index"].tolist(), batch["text_index"].tolist()):
        assert split.text_to_image[t] == i and split.captions[t] == caption
    assert len(datamodule.train_dataloader()) == 40 // 8  # drop_last


def test_train_caption_choice_is_reproducible(datamodule):
    def captions() -> list[str]:
        seed_everything(5, workers=True, verbose=False)
        return [c for b in datamodule.train_dataloader() for c in b["caption"]]

    assert captions() == captions()


@pytest.mark.parametrize("stage", ["val", "test"])
def test_eval_loaders(datamodule, stage):
    loaders = getattr(datamodule, f"{stage}_dataloader")()
    assert isinstance(loaders, list) and len(loaders) == 2
    images, captions = ([b for b in loader] for loader in loaders)
    assert set(images[0]) == {"image", "image_index"} and images[0]["image"].shape[1:] == (3, 32, 32)
    assert set(captions[0]) == {"caption", "text_index", "image_index"}
    n_images, n_captions = datamodule.eval_split_sizes(stage)
    assert torch.cat([b["image_index"] for b in images]).tolist() == list(range(n_images))
    assert torch.cat([b["text_index"] for b in captions]).tolist() == list(range(n_captions))
    assert torch.cat([b["image_index"] for b in captions]).tolist() == datamodule.get_split(stage).text_to_image


def test_image_normalisation_and_hparams(datamodule):
    image = datamodule.val_dataloader()[0].dataset[0]["image"]
    assert image.min() < -1.0 or image.max() > 1.0  # normalised, not raw [0, 1]
    assert datamodule.hparams["root"].endswith(Path(datamodule.root).name)
    assert datamodule.hparams["batch_size"] == 8 and datamodule.hparams["num_train"] == 40
