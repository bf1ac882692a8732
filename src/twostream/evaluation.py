"""Retrieval evaluation of a dual encoder: embed the split's images and captions, exact recall@K.

A mixin of :class:`~twostream.encoder.TwoStreamEncoder` (kept apart so the encoder file holds the
model and its training): the datamodule decides the protocol (COCO 1K folds, which images show the
same scene), :class:`~twostream.metrics.RetrievalRecall` computes it, DDP-exact.
"""
from __future__ import annotations

import os

import torch

from twostream.errors import ConfigError
from twostream.metrics import RetrievalRecall


class RetrievalEvaluation:
    """``val_recall`` / ``test_recall`` (RetrievalRecall) and ``hparams.unimodal_eval`` /
    ``hparams.save_embeddings`` come from the LightningModule this is mixed into."""

    def setup(self, stage: str) -> None:
        """Evaluation protocol from the data: COCO 1K = mean over five 1K folds of the test split;
        which images show the same scene, for image→image recall."""
        dm = self.trainer.datamodule
        for split, metric in (("val", self.val_recall), ("test", self.test_recall)):
            if split != ("test" if stage == "test" else "val"):
                continue
            if hasattr(dm, "eval_num_folds"):
                metric.num_folds = dm.eval_num_folds(split)
            if self.hparams.unimodal_eval and hasattr(dm, "image_groups"):
                metric.image_groups = dm.image_groups(split)

    def _eval_step(self, metric: RetrievalRecall, batch: dict) -> None:
        out = self(batch)
        if out.text_emb is not None:
            metric.update(text_emb=out.text_emb, text_index=batch["text_index"],
                          text_image_index=batch["image_index"])
        elif out.image_emb is not None:
            metric.update(image_emb=out.image_emb, image_index=batch["image_index"])

    def _eval_end(self, metric: RetrievalRecall, stage: str) -> None:
        if stage == "test" and self.hparams.save_embeddings:
            self._save_embeddings(metric)
        results = metric.compute()
        metric.reset()
        self.log_dict({f"{stage}/{k}": v for k, v in results.items()}, sync_dist=False)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(self.val_recall, batch)

    def on_validation_epoch_end(self) -> None:
        if self.val_recall.update_count:
            self._eval_end(self.val_recall, "val")

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(self.test_recall, batch)

    def on_test_epoch_end(self) -> None:
        self._eval_end(self.test_recall, "test")

    def _save_embeddings(self, metric: RetrievalRecall) -> None:
        if self.trainer.world_size > 1:
            raise ConfigError("save_embeddings: supported in single-process evaluation (devices=1) only")
        image_emb, text_emb, t2i = metric.ordered()
        path = os.path.join(self.trainer.log_dir or ".", "test_embeddings.pt")
        torch.save({"image_emb": image_emb.cpu(), "text_emb": text_emb.cpu(), "text_to_image": t2i.cpu()}, path)
        print(f"test embeddings -> {path}")
