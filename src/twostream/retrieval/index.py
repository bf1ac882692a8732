"""``twostream index``: a FAISS index over an embedded gallery, built shard by shard.

Which index (``kind="auto"``; override with ``--kind`` or a FAISS ``--factory`` string):

* fewer than ``exact_below`` (100,000) vectors: ``Flat`` — exact inner product. At 100K x 128-d a
  query scans 51 MB in a few ms on one core, so an approximation buys little and costs recall.
* up to ``ivfpq_from`` (5,000,000): ``HNSW32`` — graph search, 784 bytes per 128-d vector (the floats
  plus the graph), the lowest latency at high recall; efSearch is set at search time.
* from ``ivfpq_from`` on: ``IVF<nlist>,PQ<m>`` — inverted lists of product-quantised codes (m bytes
  per vector, nlist = 4·sqrt(N)), the only one of the three whose memory stays small at 10^8.

Embeddings are L2-normalised, so inner product is cosine similarity. The index records the model
it came from (checkpoint path and SHA-256, embedding size) and its recall@10 against exact search,
measured on ``recall_queries`` gallery vectors held out as queries (each query's own entry is not
counted). ``index.json`` is written last: a folder without it is an interrupted build.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from twostream.errors import ConfigError
from twostream.retrieval import shards

INFO = "index.json"
FAISS_FILE = "index.faiss"
METADATA = "metadata.parquet"
KINDS = ("auto", "flat", "hnsw", "ivfpq")
EXACT_BELOW = 100_000
IVFPQ_FROM = 5_000_000
ADD_CHUNK = 50_000


def choose_kind(n: int, exact_below: int = EXACT_BELOW, ivfpq_from: int = IVFPQ_FROM) -> str:
    """``auto``'s choice for ``n`` vectors (see the module docstring)."""
    return "flat" if n < exact_below else "hnsw" if n < ivfpq_from else "ivfpq"


def factory_string(kind: str, n: int, dim: int, hnsw_m: int = 32, nlist: int | None = None,
                   pq_m: int | None = None) -> str:
    """The FAISS ``index_factory`` string of a kind at this size."""
    if kind == "flat":
        return "Flat"
    if kind == "hnsw":
        return f"HNSW{hnsw_m},Flat"
    if kind == "ivfpq":
        nlist = nlist or max(1, min(65536, int(4 * math.sqrt(n))))
        pq_m = pq_m or next(m for m in (dim // 4, dim // 8, dim // 2, dim) if m >= 1 and dim % m == 0)
        if dim % pq_m:
            raise ConfigError(f"--pq-m {pq_m} must divide the embedding size {dim}")
        return f"IVF{nlist},PQ{pq_m}"
    raise ConfigError(f"--kind {kind!r}; valid: {', '.join(KINDS)}")


def gallery_vectors(root: Path, manifest: dict, ids: np.ndarray) -> np.ndarray:
    """Rows ``ids`` (positions in the whole gallery) as float32, read from the memory-mapped shards."""
    out = np.empty((len(ids), manifest["embed_dim"]), np.float32)
    offset = 0
    for shard in shards.iter_shards(root, manifest):
        n = len(shard.embeddings)
        hit = (ids >= offset) & (ids < offset + n)
        out[hit] = shard.embeddings[ids[hit] - offset]
        offset += n
    return out


def exact_top(root: Path, manifest: dict, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact inner-product top-``k`` ids of ``queries`` over every shard, one shard in memory at a time."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    offset = 0
    for shard in shards.iter_shards(root, manifest):
        scores = queries @ np.asarray(shard.embeddings, np.float32).T
        ids = np.broadcast_to(np.arange(offset, offset + scores.shape[1]), scores.shape)
        s, i = np.concatenate([best_s, scores], 1), np.concatenate([best_i, ids], 1)
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
        offset += scores.shape[1]
    order = np.argsort(-best_s, axis=1)
    return np.take_along_axis(best_i, order, 1)


def recall_at_k(found: np.ndarray, exact: np.ndarray, query_ids: np.ndarray, k: int = 10) -> float:
    """Mean |found ∩ exact| / k over queries, each query's own id removed from both lists first."""
    hits = 0
    for f, e, q in zip(found, exact, query_ids):
        f, e = [x for x in f if x != q and x >= 0][:k], [x for x in e if x != q][:k]
        hits += len(set(f) & set(e)) / max(1, len(e))
    return hits / max(1, len(query_ids))


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, size=min(n, size), replace=False))


def _train(index, root: Path, manifest: dict, n: int, spec: str, seed: int) -> None:
    if index.is_trained:
        return
    nlist = int(spec.split(",")[0][3:])
    needed = max(nlist, 256 if "PQ" in spec else 1)  # k-means: one vector per list, 256 per PQ codebook
    if n < needed:
        raise ConfigError(f"{spec} needs at least {needed:,} vectors to train (one per list, 256 per PQ codebook); "
                          f"the gallery has {n:,}: use --kind flat or hnsw, or a smaller --nlist")
    if hasattr(index, "do_polysemous_training"):
        index.do_polysemous_training = False  # Hamming-filter training, for polysemous search only: 20x the time
    index.train(gallery_vectors(root, manifest, _sample(n, max(39 * nlist, 10_000), seed)))


def _add_all(index, root: Path, manifest: dict, n: int, progress: bool) -> None:
    bar = tqdm(total=n, desc="indexing", unit="vec", disable=not progress)
    for shard in shards.iter_shards(root, manifest):
        for s in range(0, len(shard.embeddings), ADD_CHUNK):
            chunk = np.asarray(shard.embeddings[s:s + ADD_CHUNK], np.float32)
            index.add(chunk)
            bar.update(len(chunk))
    bar.close()


def set_search_params(index, ef_search: int | None = None, nprobe: int | None = None) -> None:
    """efSearch of an HNSW index, nprobe of an IVF one (no-ops for the others)."""
    import faiss

    if ef_search and hasattr(index, "hnsw"):
        index.hnsw.efSearch = int(ef_search)
    ivf = faiss.try_extract_index_ivf(index)
    if nprobe and ivf is not None:
        ivf.nprobe = int(nprobe)


def _metadata(root: Path, manifest: dict) -> pa.Table:
    tables = [s.metadata.replace_schema_metadata(None) for s in shards.iter_shards(root, manifest)]
    table = pa.concat_tables(tables)
    return table.add_column(0, "id", pa.array(np.arange(table.num_rows), pa.int64()))


def _prepare(out: Path, overwrite: bool) -> None:
    if (out / INFO).is_file() and not overwrite:
        raise ConfigError(f"--out {out} already holds an index; pass --overwrite to replace it, or another --out")
    for name in (INFO, FAISS_FILE, METADATA):  # an interrupted build's leftovers, or the index being replaced
        (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def build_index(embeddings: str | Path, out: str | Path, kind: str = "auto", *, factory: str | None = None,
                exact_below: int = EXACT_BELOW, ivfpq_from: int = IVFPQ_FROM, hnsw_m: int = 32,
                ef_construction: int = 80, ef_search: int = 128, nlist: int | None = None, pq_m: int | None = None,
                nprobe: int = 32, recall_queries: int = 1000, threads: int | None = None, seed: int = 0,
                overwrite: bool = False, progress: bool = True) -> dict:
    """Build the index of the gallery in ``embeddings`` into ``out``; returns what ``index.json`` records."""
    import faiss

    root, out = Path(embeddings), Path(out)
    manifest = shards.read_manifest(root)
    n, dim = sum(len(s.metadata) for s in shards.iter_shards(root, manifest)), manifest["embed_dim"]
    if n == 0:
        raise ConfigError(f"{root} holds no embeddings (every row was skipped?); nothing to index")
    if threads:
        faiss.omp_set_num_threads(int(threads))
    chosen = kind if kind != "auto" or factory else choose_kind(n, exact_below, ivfpq_from)
    spec = factory or factory_string(chosen, n, dim, hnsw_m, nlist, pq_m)
    _prepare(out, overwrite)
    start = time.perf_counter()
    index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    if hasattr(index, "hnsw"):
        index.hnsw.efConstruction = int(ef_construction)
    if spec.startswith("IVF"):
        _train(index, root, manifest, n, spec, seed)
    _add_all(index, root, manifest, n, progress)
    set_search_params(index, ef_search, nprobe)
    build_s = time.perf_counter() - start
    recall = _measure(index, root, manifest, n, recall_queries, spec, seed)
    _write(out, index, _metadata(root, manifest))
    info = {"format": 1, "kind": chosen if not factory else "factory", "factory": spec, "count": n, "embed_dim": dim,
            "metric": "inner_product", "normalized": manifest["normalized"], "modality": manifest["modality"],
            "model": manifest["model"], "embeddings": str(root.resolve()),
            "params": {"hnsw_m": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search,
                       "nprobe": nprobe, "exact_below": exact_below, "ivfpq_from": ivfpq_from},
            "recall_at_10": recall, "recall_queries": min(recall_queries, n), "build_seconds": round(build_s, 3),
            "faiss_bytes": (out / FAISS_FILE).stat().st_size,
            "created": datetime.datetime.now().isoformat(timespec="seconds")}
    info["bytes_per_vector"] = round(info["faiss_bytes"] / n, 1)
    (out / INFO).write_text(json.dumps(info, indent=1) + "\n")  # last: its presence marks a finished build
    print(f"index: {n:,} x {dim} {manifest['modality']} vectors, {spec} -> {out} (built in {build_s:.1f} s, "
          f"recall@10 vs exact {recall:.3f} on {info['recall_queries']} held-out queries, "
          f"{info['bytes_per_vector']} bytes/vector)")
    return info


def _measure(index, root: Path, manifest: dict, n: int, queries: int, spec: str, seed: int) -> float:
    """recall@10 against exact search (1.0 by construction for a flat index)."""
    if spec == "Flat" or queries <= 0:
        return 1.0
    ids = _sample(n, queries, seed + 1)
    q = gallery_vectors(root, manifest, ids)
    k = min(11, n)
    _, found = index.search(q, k)
    return round(recall_at_k(found, exact_top(root, manifest, q, k), ids, k - 1), 4)


def _write(out: Path, index, metadata: pa.Table) -> None:
    import faiss
    import pyarrow.parquet as pq

    tmp = out / f".{FAISS_FILE}.tmp{os.getpid()}"
    faiss.write_index(index, str(tmp))
    os.replace(tmp, out / FAISS_FILE)
    pq.write_table(metadata, out / METADATA)

