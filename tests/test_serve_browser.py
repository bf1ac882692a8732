"""The search page in a real browser: Debian's headless Chromium driven through chromedriver's W3C WebDriver
HTTP API (plain httpx calls, no Selenium): type a query, click Search, see thumbnails, captions and the
latency line; upload an image and find it first; save a screenshot.

Run by `make test-browser` (installs chromium + chromium-driver with apt when missing); skipped in `make
test`. TWOSTREAM_BROWSER_SHOT: where the screenshot goes; TWOSTREAM_BROWSER_INDEX: serve that index (e.g.
one built from the `make pretrain` model) instead of a tiny one; TWOSTREAM_BROWSER_QUERY: the text typed.
"""
from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.environ.get("TWOSTREAM_BROWSER"),
                                 reason="`make test-browser` runs this (Debian chromium + chromium-driver)")]

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1200,1000"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, what: str, timeout: float = 30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Browser:
    """The few WebDriver commands the test needs."""

    def __init__(self, driver: str, profile: Path) -> None:
        self.http = httpx.Client(base_url=driver, timeout=60)
        caps = {"browserName": "chrome", "goog:chromeOptions": {
            "binary": shutil.which("chromium"), "args": [*FLAGS, f"--user-data-dir={profile}"]}}
        self.session = self.http.post("/session", json={"capabilities": {"alwaysMatch": caps}}).json()["value"]["sessionId"]

    def cmd(self, method: str, path: str, body: dict | None = None):
        r = self.http.request(method, f"/session/{self.session}{path}", json=body)
        value = r.json()["value"]
        assert r.status_code == 200, value
        return value

    def find(self, css: str) -> str:
        found = self.cmd("POST", "/element", {"using": "css selector", "value": css})
        return next(iter(found.values()))  # {the W3C element key: the element's id}

    def js(self, script: str):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": []})

    def close(self) -> None:
        self.http.delete(f"/session/{self.session}")


@pytest.fixture()
def served(tmp_path):
    import uvicorn

    from twostream.retrieval import Retriever, create_app
    from twostream.retrieval.serve import bind

    index = os.environ.get("TWOSTREAM_BROWSER_INDEX")
    if not index:
        from retrieval_utils import tiny_run
        from twostream.cli import main

        ckpt = tiny_run(tmp_path)
        main(["embed", "--ckpt", str(ckpt), "--split", "test", "--out", str(tmp_path / "emb"), "--no-progress"])
        main(["index", "--embeddings", str(tmp_path / "emb"), "--out", str(tmp_path / "idx"), "--no-progress"])
        index = tmp_path / "idx"
    retriever = Retriever.from_index(index)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(retriever), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    _wait(lambda: server.started, "uvicorn to start")
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/", retriever
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def browser(tmp_path):
    port = _free_port()
    driver = subprocess.Popen([shutil.which("chromedriver") or "chromedriver", f"--port={port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _ready(url), "chromedriver to start")
        b = Browser(url, tmp_path / "profile")
        yield b
        b.close()
    finally:
        driver.terminate()
        driver.wait(timeout=10)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/status", timeout=2).json()["value"]["ready"]
    except (httpx.HTTPError, KeyError, ValueError):
        return False


def test_search_page_in_headless_chromium(served, browser):
    page, retriever = served
    query = os.environ.get("TWOSTREAM_BROWSER_QUERY", "a big red circle left of a small blue square")
    browser.cmd("POST", "/url", {"url": page})
    _wait(lambda: "embeddings" in browser.js("return document.getElementById('info').textContent"), "/api/info")
    browser.cmd("POST", f"/element/{browser.find('#text')}/value", {"text": query})
    browser.cmd("POST", f"/element/{browser.find('#go')}/click", {})
    _wait(lambda: browser.js("return document.body.dataset.searches") == "1", "the text search")
    assert browser.js("return document.querySelectorAll('.hit').length") == 12
    _wait(lambda: browser.js("return [...document.querySelectorAll('.hit img')].every(i => i.complete && "
                             "i.naturalWidth > 0) && document.querySelectorAll('.hit img').length == 12"),
          "12 thumbnails to load")
    latency = browser.js("return document.getElementById('latency').textContent")
    assert "encode" in latency and "search" in latency and "ms" in latency
    shot = Path(os.environ.get("TWOSTREAM_BROWSER_SHOT", "runs/test-browser/search_page.png"))
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.write_bytes(base64.b64decode(browser.cmd("GET", "/screenshot")))
    image = retriever.metadata["path"][3]  # an image query through the file input finds that image first
    browser.cmd("POST", f"/element/{browser.find('#image')}/value", {"text": str(Path(image).resolve())})
    browser.cmd("POST", f"/element/{browser.find('#go')}/click", {})
    _wait(lambda: browser.js("return document.body.dataset.searches") == "2", "the image search")
    first = browser.js("return document.querySelector('.hit .score').textContent")
    assert first.startswith("#1 · 1.000") or first.startswith("#1 · 0.999"), first
    print(f"screenshot: {shot} ({shot.stat().st_size:,} bytes)")
