"""End to end through `twostream embed | index | search` (twostream.cli.main, the console script's function)
on a tiny run trained by `twostream fit`: shards, resume, metadata, the Retriever API, clear errors."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from retrieval_utils import other_checkpoint, tiny_run
from twostream.cli import main
from twostream.errors import ConfigError
from twostream.retrieval import Retriever
from twostream.retrieval import shards


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retrieval")
    ckpt = tiny_run(tmp)
    main(["embed", "--ckpt", str(ckpt), "--split", "test", "--out", str(tmp / "emb"), "--shard-size", "10",
          "--batch-size", "4", "--no-progress"])
    main(["index", "--embeddings", str(tmp / "emb"), "--out", str(tmp / "idx"), "--no-progress"])
    return tmp, ckpt


def test_embed_writes_float16_shards_with_metadata_of_every_test_image(work):
    tmp, ckpt = work
    manifest = json.loads((tmp / "emb" / "embeddings.json").read_text())
    assert manifest["num_shards"] == 3 and manifest["num_embedded"] == 24 and manifest["num_skipped"] == 0
    assert manifest["model"]["sha256"] and manifest["embed_dim"] == 16
    emb = [np.load(tmp / "emb" / "img_emb" / f"img_emb_{i:04d}.npy") for i in range(3)]
    assert [len(e) for e in emb] == [10, 10, 4] and all(e.dtype == np.float16 for e in emb)
    np.testing.assert_allclose(np.linalg.norm(np.concatenate(emb).astype(np.float32), axis=1), 1.0, atol=2e-3)
    meta = pq.read_table(tmp / "emb" / "metadata" / "metadata_0001.parquet").to_pydict()
    assert meta["source_index"] == list(range(10, 20))
    assert all(p.endswith(".png") for p in meta["path"]) and all(meta["caption"])


def test_an_interrupted_embed_resumes_from_the_missing_shard_only(work):
    tmp, ckpt = work
    out = tmp / "emb_resume"
    shutil.copytree(tmp / "emb", out)
    (out / "metadata" / "metadata_0001.parquet").unlink()  # as if stopped while shard 1 was being written
    before = (out / "img_emb" / "img_emb_0000.npy").stat().st_mtime_ns
    with pytest.raises(ConfigError, match="1 of 3 shards are not written yet"):
        shards.read_manifest(out)
    main(["embed", "--ckpt", str(ckpt), "--split", "test", "--out", str(out), "--shard-size", "10",
          "--batch-size", "4", "--no-progress"])
    assert (out / "img_emb" / "img_emb_0000.npy").stat().st_mtime_ns == before  # not redone
    done = json.loads((out / "embeddings.json").read_text())
    assert done["resumed_shards"] == 2 and done["num_embedded"] == 24
    np.testing.assert_allclose(np.load(out / "img_emb" / "img_emb_0001.npy").astype(np.float32),
                               np.load(tmp / "emb" / "img_emb" / "img_emb_0001.npy").astype(np.float32), atol=2e-3)


def test_resuming_with_another_shard_size_is_refused(work, capsys):
    tmp, ckpt = work
    with pytest.raises(SystemExit):
        main(["embed", "--ckpt", str(ckpt), "--split", "test", "--out", str(tmp / "emb"), "--shard-size", "7"])
    assert "another shard_size" in capsys.readouterr().err
    orphans = tmp / "emb_orphans"
    shutil.copytree(tmp / "emb", orphans)
    (orphans / "embeddings.json").unlink()
    with pytest.raises(SystemExit):
        main(["embed", "--ckpt", str(ckpt), "--split", "test", "--out", str(orphans)])
    assert "has shards but no embeddings.json" in capsys.readouterr().err


def test_search_cli_prints_hits_and_an_image_query_finds_itself_first(work, capsys):
    tmp, _ = work
    main(["search", "--index", str(tmp / "idx"), "a big red circle", "-k", "5", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert len(result["hits"]) == 5 and set(result["timings_ms"]) == {"encode", "search", "total"}
    scores = [h["score"] for h in result["hits"]]
    assert scores == sorted(scores, reverse=True)
    path = pq.read_table(tmp / "idx" / "metadata.parquet").column("path")[7].as_py()
    main(["search", "--index", str(tmp / "idx"), "--image", path, "-k", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("3 hits") and path in lines[1] and " 1.00" in lines[1]


def test_retriever_api_and_text_gallery(work):
    tmp, ckpt = work
    main(["embed", "--ckpt", str(ckpt), "--split", "test", "--modality", "text", "--out", str(tmp / "cap"),
          "--no-progress"])
    main(["index", "--embeddings", str(tmp / "cap"), "--out", str(tmp / "cap_idx"), "--kind", "hnsw",
          "--no-progress"])
    retriever = Retriever.from_index(tmp / "cap_idx")
    assert retriever.info["count"] == 120 and retriever.info["kind"] == "hnsw"
    assert 0.0 <= retriever.info["recall_at_10"] <= 1.0
    image = pq.read_table(tmp / "idx" / "metadata.parquet").column("path")[0].as_py()
    result = retriever.search(image=image, k=4)
    assert [h.rank for h in result.hits] == [1, 2, 3, 4]
    assert all(h.caption and h.path for h in result.hits)  # a caption hit carries its image's path


def test_index_built_by_another_model_is_refused(work, tmp_path):
    tmp, ckpt = work
    other = other_checkpoint(ckpt, tmp_path / "other" / "checkpoints" / "last.ckpt")
    (tmp_path / "other" / "config.yaml").write_text((ckpt.parents[1] / "config.yaml").read_text())
    with pytest.raises(ConfigError, match="is not the model this index was built with"):
        Retriever.from_index(tmp / "idx", ckpt=other)


def test_half_written_or_missing_index_and_bad_queries_are_clear_errors(work, tmp_path):
    tmp, _ = work
    half = tmp_path / "half"
    shutil.copytree(tmp / "idx", half)
    (half / "index.json").unlink()
    with pytest.raises(ConfigError, match="half-written"):
        Retriever.from_index(half)
    with pytest.raises(ConfigError, match="does not exist"):
        Retriever.from_index(tmp_path / "nowhere")
    retriever = Retriever.from_index(tmp / "idx")
    with pytest.raises(ConfigError, match="non-empty text or an image"):
        retriever.search(text="   ")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(ConfigError, match="does not decode as an image"):
        retriever.search(image=str(broken))
    with pytest.raises(ConfigError, match="needs a cross-encoder"):
        retriever.search(text="a red circle", rerank=True)
