"""Search an index with text or an image: ``Retriever.from_index(dir).search(text=..., k=10)``.

The query goes through the same model that embedded the gallery (the index records its checkpoint's
SHA-256 and a different one is refused: two models' embedding spaces are unrelated), then FAISS
returns the top k with their metadata, and optionally a cross-encoder re-ranks the first
``k_test`` (:mod:`twostream.retrieval.rerank`). Each stage is timed.
"""
from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from twostream.errors import ConfigError
from twostream.retrieval.index import FAISS_FILE, INFO, METADATA, set_search_params
from twostream.retrieval.model import LoadedRun, file_sha256, find_config, load_run

ImageQuery = str | Path | bytes | Image.Image


@dataclasses.dataclass
class Hit:
    rank: int
    id: int
    score: float
    path: str | None
    caption: str | None
    source_index: int
    rerank_score: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class SearchResult:
    hits: list[Hit]
    timings_ms: dict[str, float]
    reranked: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"hits": [h.as_dict() for h in self.hits], "timings_ms": self.timings_ms, "reranked": self.reranked}


def read_index_info(index_dir: str | Path) -> dict:
    """``index.json`` of a finished build; errors say what is wrong with a missing or half-written index."""
    root = Path(index_dir)
    if not root.is_dir():
        raise ConfigError(f"--index {root} does not exist; `twostream index --embeddings DIR --out {root}` builds one")
    if not (root / INFO).is_file():
        state = "half-written (an interrupted `twostream index`?)" if (root / FAISS_FILE).exists() else "not an index"
        raise ConfigError(f"--index {root} is {state}: it has no {INFO}; rebuild it with "
                          f"`twostream index --embeddings DIR --out {root} --overwrite`")
    info = json.loads((root / INFO).read_text())
    for name in (FAISS_FILE, METADATA):
        if not (root / name).is_file():
            raise ConfigError(f"--index {root} lacks {name} (deleted or half-copied?); rebuild it with --overwrite")
    size = (root / FAISS_FILE).stat().st_size
    if size != info["faiss_bytes"]:
        raise ConfigError(f"--index {root}: {FAISS_FILE} is {size:,} bytes, the build wrote {info['faiss_bytes']:,} "
                          f"(truncated or replaced?); rebuild it with --overwrite")
    return info


def _model_for(info: dict, ckpt: str | Path | None, configs: list[str] | None) -> LoadedRun:
    """The index's own model, or ``ckpt`` if it is the same checkpoint (by SHA-256, so a copy works)."""
    recorded = info["model"]
    path = Path(ckpt) if ckpt is not None else Path(recorded["checkpoint"])
    if not path.is_file():
        raise ConfigError(f"the index's model {path} is gone; pass --ckpt with that checkpoint (SHA-256 "
                          f"{recorded['sha256'][:12]}…) or a copy of it")
    sha = file_sha256(path)
    if sha != recorded["sha256"]:
        raise ConfigError(f"--ckpt {path} (SHA-256 {sha[:12]}…) is not the model this index was built with "
                          f"({recorded['checkpoint']}, SHA-256 {recorded['sha256'][:12]}…): its queries would land in "
                          f"another embedding space. Use that checkpoint, or re-embed and re-index with this one")
    if not configs:
        config = Path(recorded.get("config", ""))
        configs = [config] if config.is_file() else [find_config(path)]
    run = load_run(path, configs)
    if int(run.model.embed_dim) != int(info["embed_dim"]):
        raise ConfigError(f"the model embeds {run.model.embed_dim}-d vectors but the index holds {info['embed_dim']}-d "
                          f"ones; pass the --config the gallery was embedded with")
    return run


class Retriever:
    """A loaded index, its metadata and its model; ``search`` is thread-safe (one query at a time)."""

    def __init__(self, index, info: dict, metadata: dict[str, list], run: LoadedRun, reranker=None) -> None:
        self.index, self.info, self.metadata, self.run, self.reranker = index, info, metadata, run, reranker
        self._lock = threading.Lock()
        from twostream.retrieval.gallery import file_reader

        self._image_reader = file_reader(run, "image")

    @classmethod
    def from_index(cls, index_dir: str | Path, ckpt: str | Path | None = None, configs: list[str] | None = None,
                   rerank: str | Path | None = None, ef_search: int | None = None, nprobe: int | None = None,
                   gpu: bool | None = None) -> Retriever:
        import faiss
        import pyarrow.parquet as pq

        root = Path(index_dir)
        info = read_index_info(root)
        run = _model_for(info, ckpt, configs)
        index = faiss.read_index(str(root / FAISS_FILE))
        set_search_params(index, ef_search, nprobe)
        if (gpu or gpu is None) and hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0 \
                and "HNSW" not in info["factory"]:
            index = faiss.index_cpu_to_all_gpus(index)  # GPU FAISS where present (it has no HNSW)
        table = pq.read_table(root / METADATA)
        metadata = {name: table.column(name).to_pylist() for name in ("path", "caption", "source_index")}
        reranker = None
        if rerank is not None:
            from twostream.retrieval.rerank import CrossEncoderReranker

            reranker = CrossEncoderReranker.from_checkpoint(rerank)
        return cls(index, info, metadata, run, reranker)

    # ------------------------------------------------------------------ queries
    def load_image(self, image: ImageQuery, name: str = "--image") -> Image.Image:
        """A PIL image from a path, bytes or an image; anything that does not decode is a clear error."""
        if isinstance(image, Image.Image):
            return image.convert("RGB")
        try:
            with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as im:
                return im.convert("RGB")
        except FileNotFoundError:
            raise ConfigError(f"{name} {image} does not exist") from None
        except Exception as err:  # noqa: BLE001 - PIL raises several types for undecodable data
            what = f"{len(image):,} bytes" if isinstance(image, bytes) else str(image)
            raise ConfigError(f"{name} {what} does not decode as an image ({type(err).__name__}: {err}); give a "
                              f"PNG, JPEG, WebP, GIF, BMP or TIFF file") from None

    @torch.no_grad()
    def embed_query(self, text: str | None = None, image: ImageQuery | None = None) -> np.ndarray:
        """The query's normalised embedding [1, dim], float32 (what FAISS takes)."""
        model = self.run.model
        if image is not None:
            x = self._image_reader.transform(self.load_image(image)).unsqueeze(0)
            emb, _ = model.encode_image(x.to(model.device))
        else:
            tokens = model.text.tokenize([text])
            emb, _ = model.encode_text(tokens["input_ids"].to(model.device), tokens.get("attention_mask"))
        return emb.float().cpu().numpy()

    def search(self, text: str | None = None, image: ImageQuery | None = None, k: int = 10,
               rerank: bool | None = None, k_test: int = 16) -> SearchResult:
        """Top ``k`` of the gallery for a text or an image query (exactly one), scores descending.

        ``rerank`` (default: whenever a cross-encoder is loaded): the first ``k_test`` candidates are
        re-scored by the cross-encoder and lead the list in its order (the papers' k-test re-ranking)."""
        text = text.strip() if isinstance(text, str) else text
        if (not text) == (image is None):
            raise ConfigError("a query is a non-empty text or an image (exactly one of them); got "
                              + ("neither" if image is None else "both"))
        if k < 1 or k_test < 1:
            raise ConfigError(f"k and k_test must be >= 1 (got k={k}, k_test={k_test})")
        rerank = self.reranker is not None if rerank is None else rerank
        if rerank and self.reranker is None:
            raise ConfigError("re-ranking needs a cross-encoder: start with --rerank path/to/single_stream.ckpt")
        with self._lock:
            return self._search(text, image, k, rerank, k_test)

    def _search(self, text, image, k: int, rerank: bool, k_test: int) -> SearchResult:
        t0 = time.perf_counter()
        query = self.embed_query(text, image)
        t1 = time.perf_counter()
        want = min(self.index.ntotal, max(k, k_test) if rerank else k)
        scores, ids = self.index.search(query, want)
        t2 = time.perf_counter()
        hits = [Hit(r + 1, int(i), float(s), self.metadata["path"][i], self.metadata["caption"][i],
                    int(self.metadata["source_index"][i])) for r, (s, i) in enumerate(zip(scores[0], ids[0])) if i >= 0]
        timings = {"encode": (t1 - t0) * 1e3, "search": (t2 - t1) * 1e3}
        reranked = 0
        if rerank:
            query_image = None if image is None else self.load_image(image)
            hits, reranked = self.reranker.rerank(hits, self.info["modality"], text=text, image=query_image,
                                                  k_test=k_test)
            timings["rerank"] = (time.perf_counter() - t2) * 1e3
        timings["total"] = (time.perf_counter() - t0) * 1e3
        return SearchResult(hits[:k], {key: round(v, 3) for key, v in timings.items()}, reranked)
