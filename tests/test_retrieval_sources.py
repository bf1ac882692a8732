"""`twostream embed` on the other sources: an image folder with bad files (skipped, counted, limit), caption
files (.txt, .csv, .parquet), a video folder with a video run; FAISS index kinds on random shards."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from fixtures_video import write_corrupt, write_numbered_video
from retrieval_utils import TOWERS, saved_run, tiny_config, tiny_run
from twostream.cli import main
from twostream.data.health import DataQualityError
from twostream.errors import ConfigError
from twostream.retrieval import build_index, embed, shards
from twostream.retrieval.index import choose_kind


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("sources"))  # the session's one tiny trained run


def _folder(tmp, good=6):
    folder = tmp / "photos"
    (folder / "sub").mkdir(parents=True)
    for i in range(good):
        Image.new("RGB", (40 + i, 30), (40 * i, 20, 200)).save(folder / ("sub" if i % 2 else ".") / f"p{i}.png")
    (folder / "p0.txt").write_text("a blue picture\n")  # img2dataset's caption beside the image
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.md").write_text("not an image: ignored, not counted")
    return folder


def test_image_folder_skips_and_counts_bad_files_and_keeps_sidecar_captions(ckpt, tmp_path):
    folder = _folder(tmp_path)
    manifest = embed(tmp_path / "emb", ckpt, source=str(folder), shard_size=3, batch_size=2, max_bad_fraction=0.5,
                     progress=False)
    assert manifest["num_rows"] == 8 and manifest["num_embedded"] == 6
    assert manifest["skipped"] == {"corrupt_image": 2}
    meta = pa.concat_tables(s.metadata for s in shards.iter_shards(tmp_path / "emb")).to_pydict()
    assert len(meta["path"]) == 6 and not any("broken" in p or "empty" in p for p in meta["path"])
    assert meta["caption"][meta["path"].index(str(folder / "p0.png"))] == "a blue picture"
    with pytest.raises(DataQualityError, match=r"2 of 8 rows .* --max-bad-fraction 0.1 .*broken.jpg"):
        embed(tmp_path / "emb2", ckpt, source=str(folder), max_bad_fraction=0.1, progress=False)


def test_a_captions_file_embeds_as_text_and_empty_captions_are_counted(ckpt, tmp_path):
    path = tmp_path / "captions.txt"
    path.write_text("a red circle\n\ntwo blue squares\na green star\n")
    main(["embed", "--ckpt", str(ckpt), "--source", str(path), "--out", str(tmp_path / "emb"), "--no-progress",
          "--max-bad-fraction", "0.3"])
    manifest = json.loads((tmp_path / "emb" / "embeddings.json").read_text())
    assert manifest["modality"] == "text" and manifest["num_embedded"] == 3 and manifest["skipped"] == {"empty_caption": 1}
    assert shards.read_shard(tmp_path / "emb", "text", 0).metadata.column("caption").to_pylist() == \
        ["a red circle", "two blue squares", "a green star"]


def test_csv_and_parquet_rows_text_or_image_paths_relative_to_the_file(ckpt, tmp_path):
    from twostream.retrieval.gallery import open_gallery
    from twostream.retrieval.model import load_run

    run = load_run(ckpt)
    (tmp_path / "a.csv").write_text('id,text\n0,"a red circle"\n1,""\n')
    text = open_gallery(run, source=str(tmp_path / "a.csv"), caption_column="text")
    assert text.modality == "text" and text.rows["caption"] == ["a red circle", ""]
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    pq.write_table(pa.table({"image": ["x.png"], "caption": ["black"]}), tmp_path / "b.parquet")
    images = open_gallery(run, source=str(tmp_path / "b.parquet"))
    assert images.modality == "image" and images.rows["path"] == [str(tmp_path / "x.png")]
    assert images.dataset(0, 1)[0]["ok"] and images.rows["caption"] == ["black"]


def test_a_wrong_column_or_source_names_the_fix(ckpt, tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("text\nhello\n")
    with pytest.raises(ConfigError, match="--caption-column 'caption' is not a column .* columns: text"):
        embed(tmp_path / "o", ckpt, source=str(path), progress=False)
    with pytest.raises(ConfigError, match="exactly one of --split"):
        embed(tmp_path / "o", ckpt, progress=False)


def test_video_folder_with_a_video_run(tmp_path):
    config = yaml.safe_load(tiny_config(tmp_path, "video").read_text())
    frame = {**TOWERS["vision"], "init_args": {**TOWERS["vision"]["init_args"], "image_size": 32, "embed_dim": 16}}
    config["model"]["init_args"]["vision"] = {"class_path": "twostream.towers.VideoTower",
                                              "init_args": {"aggregation": "mean", "num_frames": 2,
                                                            "frame_tower": frame}}
    config["data"] = {"class_path": "twostream.data.SyntheticVideoDataModule",
                      "init_args": {"root": str(tmp_path / "vdata"), "num_frames": 2, "image_size": 32}}
    ckpt = saved_run(tmp_path, config, "video")
    videos = tmp_path / "clips"
    videos.mkdir()
    for i in range(3):
        write_numbered_video(videos / f"v{i}.mp4", 6 + i)
    write_corrupt(videos / "bad.mp4")
    manifest = embed(tmp_path / "emb", ckpt, source=str(videos), max_bad_fraction=0.5, progress=False)
    assert manifest["modality"] == "video" and manifest["num_embedded"] == 3
    assert manifest["skipped"] == {"undecodable_video": 1}
    with pytest.raises(ConfigError, match="this run's vision tower embeds videos"):
        embed(tmp_path / "emb2", ckpt, source=str(videos), modality="image", progress=False)


def _random_gallery(root, n=3000, dim=32, shard=1000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for s in range(0, n, shard):
        rows = {"source_index": list(range(s, min(n, s + shard))), "path": [None] * len(x[s:s + shard]),
                "caption": [f"item {i}" for i in range(s, min(n, s + shard))]}
        shards.write_shard(root, "text", s // shard, x[s:s + shard], rows, seen=len(rows["caption"]), skips=[])
    shards.write_manifest(root, {"modality": "text", "num_shards": -(-n // shard), "embed_dim": dim,
                                 "normalized": True, "model": {"checkpoint": "none", "sha256": "0" * 64}})
    return x


@pytest.mark.parametrize("kind,floor", [("flat", 1.0), ("hnsw", 0.9), ("ivfpq", 0.2)])
def test_index_kinds_record_their_recall_against_exact_search(tmp_path, kind, floor):
    _random_gallery(tmp_path / "emb")
    info = build_index(tmp_path / "emb", tmp_path / "idx", kind, nlist=16, nprobe=16, recall_queries=200,
                       progress=False)
    assert info["count"] == 3000 and info["kind"] == kind and info["recall_at_10"] >= floor
    assert info["bytes_per_vector"] < (40 if kind == "ivfpq" else 1000)  # 8 code bytes + codebooks over 3K
    assert choose_kind(99_999) == "flat" and choose_kind(100_000) == "hnsw" and choose_kind(5_000_000) == "ivfpq"
    with pytest.raises(ConfigError, match="already holds an index"):
        build_index(tmp_path / "emb", tmp_path / "idx", kind, progress=False)
