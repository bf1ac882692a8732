"""COCO / Flickr30K readers on fixtures in the real formats (Karpathy and ALBEF/LAVIS JSON), dirty
entries included: exact split sizes and skip counts, id-aware train batches, protocols, the CLI."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from fixtures_realdata import write_albef, write_coco_karpathy, write_flickr_karpathy, write_tiny_overrides

import twostream.data.formats.albef_json as albef_json
from twostream.cli import run
from twostream.data import CocoDataModule, Flickr30kDataModule
from twostream.data.health import REPLACED, SKIPPED

ROOT = Path(__file__).resolve().parents[1]
COCO_YAML = str(ROOT / "experiments" / "finetune" / "coco.yaml")
WRITERS = {"karpathy": write_coco_karpathy, "albef": write_albef}


def coco(root: Path, annotations, **kwargs) -> CocoDataModule:
    args = dict(batch_size=4, eval_batch_size=8, image_size=32, num_workers=0)
    return CocoDataModule(root=str(root), annotations=annotations, **{**args, **kwargs})


@pytest.fixture(scope="module", params=sorted(WRITERS))
def coco_fixture(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"coco_{request.param}")
    annotations, expected = WRITERS[request.param](root)
    return request.param, root, str(annotations), expected


def test_splits_and_load_time_skips_are_exact(coco_fixture, monkeypatch):
    fmt, root, annotations, expected = coco_fixture
    parses = []
    real_load = albef_json.load_json
    monkeypatch.setattr(albef_json, "load_json", lambda p, what: parses.append(p) or real_load(p, what))
    dm = coco(root, annotations)
    dm.setup()
    assert len(parses) == (1 if fmt == "karpathy" else 3)  # the big Karpathy file is parsed once for 3 splits
    for name in ("train", "val", "test"):
        split = dm.get_split(name)
        assert (split.num_images, split.num_captions) == (expected.split_images[name], expected.split_captions[name])
    assert Counter(reason for reason, _ in dm.load_skips) == expected.load_skips
    train = dm.get_split("train")
    assert Counter(train.text_to_image)[0] == 7  # the 7-caption image keeps all of them
    assert any("val2014/COCO_val2014_000000000003.jpg" in p for p in train.image_paths)  # restval -> train
    assert ("missing_file", "COCO_train2014_000000000006.jpg") in dm.load_skips
    assert all(c.strip() == c and c for s in ("train", "val", "test") for c in dm.get_split(s).captions)


def test_train_epoch_substitutes_and_reports_corrupt_images(coco_fixture):
    _, root, annotations, expected = coco_fixture
    dm = coco(root, annotations)
    dm.setup("fit")
    split = dm.get_split("train")
    batches = list(dm.train_dataloader())
    assert sum(b["image"].shape[0] for b in batches) == expected.train_images  # fixed batch shapes, no drop
    skipped = [s for b in batches for s in b.get(REPLACED, [])]  # each substituted slot, once
    assert not any(SKIPPED in b for b in batches)
    assert Counter(r for r, _ in skipped) == Counter({"corrupt_image": expected.train_runtime_bad})
    assert {k for _, k in skipped} == {"COCO_train2014_000000000004.jpg", "COCO_train2014_000000000005.jpg"}
    bad = {i for i, p in enumerate(split.image_paths) if Path(p).name in {k for _, k in skipped}}
    for b in batches:
        assert not bad & set(b["image_index"].tolist())  # substitutes are good images...
        for caption, image, text in zip(b["caption"], b["image_index"].tolist(), b["text_index"].tolist()):
            assert split.text_to_image[text] == image and split.captions[text] == caption  # ...with their captions
    again = [b["image_index"].tolist() for b in dm.train_dataloader()]
    assert again == [b["image_index"].tolist() for b in batches]  # deterministic substitution


def test_eval_loaders_keep_protocol_order(coco_fixture):
    _, root, annotations, expected = coco_fixture
    dm = coco(root, annotations, test_protocol="1k")
    dm.setup("test")
    images, captions = ([b for b in loader] for loader in dm.test_dataloader())
    assert torch.cat([b["image_index"] for b in images]).tolist() == list(range(expected.split_images["test"]))
    assert torch.cat([b["image_index"] for b in captions]).tolist() == dm.get_split("test").text_to_image
    assert not any(SKIPPED in b or REPLACED in b for b in images)
    assert dm.eval_num_folds("test") == 5


def test_missing_eval_image_is_scored_blank_and_reported(tmp_path):
    annotations, _ = write_coco_karpathy(tmp_path)
    victim = next((tmp_path / "val2014").glob("COCO_val2014_0000000002*.jpg"))
    victim.unlink()
    dm = coco(tmp_path, str(annotations))
    images = list(dm.test_dataloader()[0])
    assert sum(b["image"].shape[0] for b in images) == 10  # the protocol keeps all 10 test images
    assert [s for b in images for s in b.get(REPLACED, [])] == [("missing_file", victim.name)]


def test_flickr_karpathy_paths_and_counts(tmp_path):
    annotations, expected = write_flickr_karpathy(tmp_path)
    dm = Flickr30kDataModule(root=str(tmp_path), annotations=str(annotations), batch_size=2, image_size=32,
                             num_workers=0)
    dm.setup()
    assert dm.get_split("test").image_paths[0] == str(tmp_path / "3000.jpg")  # root/filename, no filepath
    assert Counter(r for r, _ in dm.load_skips) == expected.load_skips == Counter({"empty_caption": 1})
    skipped = [s for b in dm.train_dataloader() for s in b.get(REPLACED, [])]
    assert skipped == [("corrupt_image", "1004.jpg")]
    assert dm.eval_num_folds("test") == 1


def test_clear_errors(tmp_path):
    annotations, _ = write_coco_karpathy(tmp_path / "coco")
    with pytest.raises(ValueError, match=r"format='albef'.*expected a list of"):
        coco(tmp_path / "coco", str(annotations), format="albef").setup()
    with pytest.raises(FileNotFoundError, match="image file not found.*is the image root right"):
        (tmp_path / "elsewhere").mkdir()
        coco(tmp_path / "elsewhere", str(annotations)).setup()
    with pytest.raises(ValueError, match=r"test_protocol='1k'.*7 test images"):
        small, _ = write_coco_karpathy(tmp_path / "small", test_images=7)
        coco(tmp_path / "small", str(small), test_protocol="1k").setup("test")
    bad = json.loads(Path(annotations).read_text())
    for entry in bad["images"]:
        if entry["split"] in ("train", "restval"):
            entry["sentences"] = [{"raw": "  "}]
    (tmp_path / "blank.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"split 'train' of .*blank.json is empty"):
        coco(tmp_path / "coco", str(tmp_path / "blank.json")).setup("fit")


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_cli_fit_and_test_on_coco_formats(fmt, tmp_path, capsys):
    annotations, _ = WRITERS[fmt](tmp_path / "coco")
    overrides = write_tiny_overrides(tmp_path / "tiny.yaml", tmp_path / "runs")
    cli = run(["fit", "--config", COCO_YAML, "--config", str(overrides), f"--data.init_args.root={tmp_path / 'coco'}",
               f"--data.init_args.annotations={annotations}", "--data.init_args.test_protocol=1k",
               "--data.init_args.image_size=64", "--data.init_args.batch_size=4", "--data.init_args.eval_batch_size=8",
               "--data.init_args.num_workers=0"])
    out = capsys.readouterr().out
    metrics = json.loads((Path(cli.trainer.logger.log_dir) / "metrics.json").read_text())
    assert {"i2t_r1", "t2i_r10", "rsum", "i2t_medr", "t2i_medr"} <= set(metrics)
    assert cli.model.test_recall.num_folds == 5 and cli.model.val_recall.num_folds == 1  # COCO 1K: mean of 5 folds
    assert "data: dropped 8 annotation entries while reading splits — empty_caption 7, missing_file 1" in out
    # 8 training images read + 8 entries dropped at load; the 2 corrupt images are counted once, not also their stand-ins
    assert "epoch 0: skipped 10 of 16 samples (62.5%) — empty_caption 7, corrupt_image 2, missing_file 1" in out
    assert (Path(cli.trainer.logger.log_dir) / "checkpoints" / "last.ckpt").is_file()


def test_albef_files_as_a_split_mapping(tmp_path):
    folder, expected = write_albef(tmp_path)
    mapping = {split: str(folder / f"coco_karpathy_{split}.json") for split in ("train", "val", "test")}
    dm = coco(tmp_path, mapping, format="albef")
    dm.setup()
    assert [dm.get_split(s).num_images for s in ("train", "val", "test")] == [
        expected.split_images[s] for s in ("train", "val", "test")]
    assert dm.split_source("val").endswith("coco_karpathy_val.json")
