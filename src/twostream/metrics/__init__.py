"""Retrieval metrics: exact, chunked cross-modal ranks and a DDP-aware torchmetrics wrapper."""
from twostream.metrics.ranking import rank_folds, rank_retrieval
from twostream.metrics.retrieval_recall import RetrievalRecall

__all__ = ["RetrievalRecall", "rank_folds", "rank_retrieval"]
