"""Retrieval metrics: exact, chunked cross-modal ranks, a DDP-aware torchmetrics wrapper, ranks
from precomputed score matrices (cross-encoders, re-ranking) and within-modality recall."""
from twostream.metrics.ranking import rank_folds, rank_retrieval
from twostream.metrics.retrieval_recall import RetrievalRecall
from twostream.metrics.score_ranking import recall_from_scores
from twostream.metrics.unimodal import group_ids, unimodal_recall

__all__ = ["RetrievalRecall", "group_ids", "rank_folds", "rank_retrieval", "recall_from_scores", "unimodal_recall"]
