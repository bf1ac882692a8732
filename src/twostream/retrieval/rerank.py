"""The second stage of the papers' retrieval: a single-stream cross-encoder re-scores the two-stream shortlist.

A cross-encoder (:class:`~twostream.methods.vldeformer.SingleStreamModel`) sees caption and image
together, so each candidate costs a joint forward pass: affordable for the ``k_test`` candidates of
one query, never for the gallery. Pair scoring is the k-test code of evaluation
(:func:`~twostream.methods.vldeformer.scoring.score_pairs`), imported only when used: the generic
core does not load paper code at import time.
"""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from twostream.errors import ConfigError
from twostream.retrieval.model import LoadedRun, load_run
from twostream.retrieval.sources import ImageReader


class CrossEncoderReranker:
    """Re-scores hits of a text query on an image gallery, or of an image query on a text gallery."""

    def __init__(self, run: LoadedRun, batch_size: int = 64) -> None:
        self.run, self.batch_size = run, batch_size
        data = run.datamodule
        if not hasattr(data, "image_transform"):
            raise ConfigError(f"--rerank {run.checkpoint}: its datamodule {type(data).__name__} has no image "
                              f"transform to prepare gallery images with")
        self.reader = ImageReader(data.image_transform())

    @classmethod
    def from_checkpoint(cls, ckpt: str | Path, configs: list[str] | None = None) -> CrossEncoderReranker:
        return cls(load_run(ckpt, configs, kind="cross-encoder"))

    @torch.no_grad()
    def rerank(self, hits: list, gallery: str, *, text: str | None = None, image: Image.Image | None = None,
               k_test: int = 16) -> tuple[list, int]:
        """(hits with the first ``k_test`` re-scored and re-ordered by the cross-encoder, how many were re-scored).

        Candidates that cannot be scored (a gallery image that no longer decodes) keep their
        two-stream order after the re-scored ones, like the candidates outside the shortlist."""
        from twostream.methods.vldeformer.scoring import score_pairs

        model = self.run.model
        head, tail = hits[:k_test], hits[k_test:]
        if text is not None and gallery in ("image", "video"):
            if gallery == "video":
                raise ConfigError("re-ranking a video gallery: the cross-encoder scores images, not clips")
            scorable, images = self._gallery_images(head)
            tokens = model.transformer.tokenize([text])
            image_idx, text_idx = torch.arange(len(scorable)), torch.zeros(len(scorable), dtype=torch.long)
        elif image is not None and gallery == "text":
            scorable = [h for h in head if h.caption]
            images = self.reader.transform(image).unsqueeze(0)
            tokens = model.transformer.tokenize([h.caption for h in scorable])
            image_idx, text_idx = torch.zeros(len(scorable), dtype=torch.long), torch.arange(len(scorable))
        else:
            raise ConfigError(f"re-ranking scores (caption, image) pairs: a text query on an image gallery or an image "
                              f"query on a text gallery; this is a {'text' if text else 'image'} query on a "
                              f"{gallery} gallery")
        if not scorable:
            return hits, 0
        device = model.device
        scores = score_pairs(model.score, images.to(device), tokens["input_ids"].to(device),
                             tokens["attention_mask"].to(device), image_idx.to(device), text_idx.to(device),
                             self.batch_size)
        for hit, s in zip(scorable, scores.tolist()):
            hit.rerank_score = float(s)
        ordered = sorted(scorable, key=lambda h: -h.rerank_score)
        rest = [h for h in head if h.rerank_score is None]
        out = ordered + rest + tail
        for rank, hit in enumerate(out, 1):
            hit.rank = rank
        return out, len(scorable)

    def _gallery_images(self, hits: list) -> tuple[list, torch.Tensor]:
        scorable, tensors = [], []
        for hit in hits:
            try:
                tensors.append(self.reader(hit.path))
                scorable.append(hit)
            except Exception:  # noqa: BLE001 - a gallery file that went bad keeps its two-stream place
                continue
        return scorable, (torch.stack(tensors) if tensors else torch.zeros(0))
