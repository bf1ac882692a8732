"""`twostream serve` over HTTP: the JSON API and page through FastAPI's TestClient, a real uvicorn on a free
loopback port, clear 400s for user mistakes, a port in use; cross-encoder re-ranking of the shortlist."""
from __future__ import annotations

import base64
import socket
import threading
import time

import httpx
import pytest
import torch
from fastapi.testclient import TestClient

from retrieval_utils import saved_run, tiny_config, tiny_run
from twostream.cli import main
from twostream.errors import ConfigError
from twostream.retrieval import Retriever, create_app
from twostream.retrieval.serve import bind

CROSS = {"class_path": "twostream.methods.vldeformer.SingleStreamModel",
         "init_args": {"transformer": {"class_path": "twostream.methods.vldeformer.VLTransformer", "init_args": {
             "config": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                        "image_size": 32, "patch_size": 8, "max_position_embeddings": 16},
             "context_length": 16}}}}


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    ckpt = tiny_run(tmp)
    main(["embed", "--ckpt", str(ckpt), "--split", "test", "--out", str(tmp / "emb"), "--no-progress"])
    main(["index", "--embeddings", str(tmp / "emb"), "--out", str(tmp / "idx"), "--no-progress"])
    return tmp


@pytest.fixture(scope="module")
def client(index):
    return TestClient(create_app(Retriever.from_index(index / "idx")))


def test_page_info_and_text_search(client):
    page = client.get("/")
    assert page.status_code == 200 and '<form id="form">' in page.text and "/api/search" in page.text
    info = client.get("/api/info").json()
    assert info["count"] == 24 and info["modality"] == "image" and info["rerank"] is False
    result = client.post("/api/search", json={"text": "a small green square", "k": 5}).json()
    assert len(result["hits"]) == 5 and {"encode", "search", "total"} <= set(result["timings_ms"])
    hit = result["hits"][0]
    assert hit["caption"] and hit["path"].endswith(".png") and hit["thumb"] == f"/api/thumb/{hit['id']}"
    thumb = client.get(hit["thumb"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png" and thumb.content[:4] == b"\x89PNG"


def test_image_upload_finds_itself_and_mistakes_are_400s(client):
    first = client.post("/api/search", json={"text": "a star", "k": 1}).json()["hits"][0]
    data = base64.b64encode(open(first["path"], "rb").read()).decode()
    found = client.post("/api/search", json={"image": f"data:image/png;base64,{data}", "k": 1}).json()["hits"][0]
    assert found["id"] == first["id"] and found["score"] == pytest.approx(1.0, abs=1e-3)
    for body, message in [({"text": "  "}, "non-empty text or an image"),
                          ({"image": base64.b64encode(b"GIF89a broken").decode()}, "does not decode as an image"),
                          ({"image": "data:image/png;base64,***"}, "not base64"),
                          ({"text": "a", "k": 0}, "greater than or equal to 1")]:
        r = client.post("/api/search", json=body)
        assert r.status_code in (400, 422) and message in r.text
    assert client.get("/api/thumb/99999").status_code == 404


def test_a_real_server_on_a_free_port_and_a_port_in_use(index, capsys):
    import uvicorn

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(Retriever.from_index(index / "idx")), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        r = httpx.post(f"http://127.0.0.1:{port}/api/search", json={"text": "a blue circle", "k": 3}, timeout=10)
        assert r.status_code == 200 and len(r.json()["hits"]) == 3
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is in use"):
            bind("127.0.0.1", port)
        with pytest.raises(SystemExit):
            main(["serve", "--index", str(index / "idx"), "--port", str(port)])
        assert "--port 0 for any free port" in capsys.readouterr().err
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_cross_encoder_reranks_the_first_k_test_hits(index, tmp_path):
    import yaml

    config = yaml.safe_load(tiny_config(index, "tiny").read_text())
    config["model"] = CROSS
    cross = saved_run(tmp_path, config, "cross")
    retriever = Retriever.from_index(index / "idx", rerank=cross)
    result = retriever.search(text="a big red circle", k=6, k_test=4)
    head, tail = result.hits[:4], result.hits[4:]
    assert result.reranked == 4 and "rerank" in result.timings_ms
    assert all(h.rerank_score is not None for h in head) and all(h.rerank_score is None for h in tail)
    assert [h.rerank_score for h in head] == sorted((h.rerank_score for h in head), reverse=True)
    model = retriever.reranker.run.model  # the scores are the cross-encoder's own pair scores
    tokens = model.transformer.tokenize(["a big red circle"])
    image = retriever.reranker.reader(head[0].path).unsqueeze(0)
    with torch.no_grad():
        expected = model.score(tokens["input_ids"], tokens["attention_mask"], image).item()
    assert head[0].rerank_score == pytest.approx(expected, abs=1e-5)
    plain = retriever.search(text="a big red circle", k=6, rerank=False)
    assert {h.id for h in plain.hits[:4]} == {h.id for h in head}  # re-ranking reorders the shortlist only
    with pytest.raises(ConfigError, match="a text query on an image gallery"):
        retriever.search(image=head[0].path, k=3)
