"""Using a trained two-stream model: embed a gallery, index it, search it, re-rank, serve a search page.

``twostream embed`` (:mod:`.embedding`) -> float16 shards + parquet metadata; ``twostream index``
(:mod:`.index`) -> a FAISS index that records its model; ``twostream search`` / :class:`Retriever`
(:mod:`.retriever`) -> top-k hits, optionally re-ranked by a cross-encoder (:mod:`.rerank`);
``twostream serve`` (:mod:`.serve`) -> JSON API + page. Exports resolve lazily, so importing the
package does not import torch, FAISS or FastAPI.
"""
from __future__ import annotations

_EXPORTS = {"Retriever": "twostream.retrieval.retriever", "SearchResult": "twostream.retrieval.retriever",
            "Hit": "twostream.retrieval.retriever", "embed": "twostream.retrieval.embedding",
            "build_index": "twostream.retrieval.index", "CrossEncoderReranker": "twostream.retrieval.rerank",
            "create_app": "twostream.retrieval.serve"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'twostream.retrieval' has no attribute {name!r}")
