"""``twostream serve``: a JSON search API and a one-file search page (FastAPI + uvicorn).

Endpoints: ``GET /`` the page (static/index.html: plain HTML and JS, no build step);
``GET /api/info`` the index (size, model, kind, recall@10, whether re-ranking is on);
``POST /api/search`` ``{"text": ...}`` or ``{"image": "data:image/png;base64,..."}`` with ``k``,
``rerank``, ``k_test`` -> hits with metadata and the latency of each stage;
``GET /api/thumb/{id}`` a small PNG of gallery item ``id`` (images only; by id, so no path from a
request ever reaches the file system). User mistakes (empty query, undecodable image) are 400s
carrying the same message the CLI prints.

No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at run
time, and the request model is local to :func:`create_app` (so importing this module stays cheap).
"""
import base64
import binascii
import errno
import io
import socket
from pathlib import Path

from twostream.errors import ConfigError

PAGE = Path(__file__).with_name("static") / "index.html"
THUMB_PX = 160


def create_app(retriever):
    """The FastAPI app over a loaded :class:`~twostream.retrieval.retriever.Retriever`."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from pydantic import BaseModel, Field

    class Query(BaseModel):
        text: str | None = None
        image: str | None = Field(None, description="a data URL or plain base64 of the image file")
        k: int = Field(10, ge=1, le=1000)
        rerank: bool | None = None
        k_test: int = Field(16, ge=1, le=1000)

    app = FastAPI(title="twostream search", docs_url="/api/docs")

    @app.exception_handler(ConfigError)
    def _user_error(request, err: ConfigError):
        return JSONResponse(status_code=400, content={"detail": str(err)})

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text()

    @app.get("/api/info")
    def info() -> dict:
        i = retriever.info
        return {"count": i["count"], "modality": i["modality"], "kind": i["kind"], "factory": i["factory"],
                "embed_dim": i["embed_dim"], "recall_at_10": i["recall_at_10"],
                "model": {"checkpoint": i["model"]["checkpoint"], "sha256": i["model"]["sha256"][:12]},
                "rerank": retriever.reranker is not None}

    @app.post("/api/search")
    def search(q: Query) -> dict:
        image = retriever.load_image(decode_image_field(q.image), "uploaded image") if q.image else None
        result = retriever.search(text=q.text, image=image, k=q.k, rerank=q.rerank, k_test=q.k_test)
        out = result.as_dict()
        for hit in out["hits"]:
            hit["thumb"] = f"/api/thumb/{hit['id']}" if hit["path"] else None
        return out

    @app.get("/api/thumb/{item}")
    def thumb(item: int) -> Response:
        paths = retriever.metadata["path"]
        if not 0 <= item < len(paths) or not paths[item]:
            raise HTTPException(404, f"no image for gallery item {item}")
        try:
            return Response(thumbnail_png(paths[item]), media_type="image/png")
        except Exception:  # noqa: BLE001 - a file gone bad since embedding: no thumbnail
            raise HTTPException(404, f"gallery item {item} has no displayable image") from None

    return app


def decode_image_field(value: str) -> bytes:
    """The bytes of a ``data:...;base64,`` URL or plain base64 string; a clear error otherwise."""
    payload = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("image: not base64 (send the file as a data URL, as FileReader.readAsDataURL gives)") from None


def thumbnail_png(path: str) -> bytes:
    """A PNG of at most THUMB_PX a side: the image, or a video's middle frame."""
    from PIL import Image

    from twostream.retrieval.sources import VIDEO_EXTENSIONS

    if Path(path).suffix.lower() in VIDEO_EXTENSIONS:
        from twostream.data.formats.video_io import read_clip

        image = Image.fromarray(read_clip(path, 1)[0])
    else:
        with Image.open(path) as im:
            image = im.convert("RGB")
    image.thumbnail((THUMB_PX, THUMB_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; a port in use is a clear error (port 0 picks a free one)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is in use (another `twostream serve`?): pass --port N, or "
                              f"--port 0 for any free port") from None
        raise ConfigError(f"cannot listen on {host}:{port} ({err.strerror}); check --host") from None
    sock.listen(128)
    return sock


def serve(retriever, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          sock: socket.socket | None = None) -> None:
    """Serve until interrupted on ``sock`` (or a new socket on host:port); prints the address (the real port
    when ``port`` is 0)."""
    import uvicorn

    sock = sock or bind(host, port)
    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn.Config(create_app(retriever), log_level=log_level))
    print(f"serving {retriever.info['count']:,} {retriever.info['modality']}s on http://{host}:{port}/", flush=True)
    server.run(sockets=[sock])
