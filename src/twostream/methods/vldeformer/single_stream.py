"""SingleStreamModel: a cross-encoder trained by image-text matching (and optionally MLM).

[choice] ITM as in ViLT/ALBEF: a linear head on the pooled [CLS] gives one matching logit per
pair; each step scores every positive pair, one negative caption per image and one negative image
per caption (binary cross-entropy over the 3B pairs). ``itm_negatives: mined`` samples those negatives
from the batch in proportion to softmax(ITM logit) of a no-grad scoring of every in-batch pair
(within pools of ``mining_pool`` pairs a side, which bounds its B*pool extra passes);
``uniform`` draws them uniformly. MLM (``mlm_weight > 0``): 15 % of caption tokens of the positive pairs, BERT's
80/10/10, predicted by ViLT's MLM head tied to the word embeddings.

ITC (``itc_weight > 0``) [choice, ALBEF's "align before fuse"]: in-batch contrastive learning of the same
transformer's caption-only and image-only passes (``itc_pooling``, fixed ``itc_temperature``). Why:
whether a pair matches is a pure interaction of the two inputs (neither alone says anything), so at
initialisation ITM's gradient is nearly zero and a from-scratch cross-encoder can sit on the 1:2
prior (BCE 0.637) for its whole schedule; ITC gives each modality a first-order signal, aligned
features the joint pass can then compare. It also pre-aligns the unimodal passes VLDeformer later
decomposes, which is why the VLDeformer experiment reports those passes before decomposition too.

Evaluation scores pairs: ``eval_mode="full"`` every pair of the split; ``"rerank"`` k-test
re-ranking of a two-stream shortlist read from ``shortlist`` (a ``test_embeddings.pt`` written by a
TwoStreamEncoder run with ``save_embeddings: true`` on the same split). Single process only.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from twostream import seeding
from twostream.errors import ConfigError
from twostream.metrics.score_ranking import recall_from_scores
from twostream.masking import mask_tokens
from twostream.optim import adamw_warmup_cosine
from twostream.methods.vldeformer.scoring import full_scores, rerank_scores
from twostream.contrastive import InBatchContrastive
from twostream.methods.vldeformer.vl_transformer import Pooling, VLTransformer, pool


class SingleStreamModel(L.LightningModule):
    def __init__(self, transformer: VLTransformer, itm_negatives: Literal["mined", "uniform"] = "mined", mining_pool: int = 16,
                 mlm_weight: float = 0.0, itc_weight: float = 0.0, itc_temperature: float = 0.05,
                 itc_pooling: Pooling = "mean_tanh", lr: float = 1e-3, weight_decay: float = 0.01, warmup_steps: int = 100,
                 min_lr_ratio: float = 0.0, total_steps: int | None = None,
                 eval_mode: Literal["full", "rerank"] = "full", rerank_k: int = 16, shortlist: str | None = None,
                 score_batch_size: int = 128, recall_ks: tuple[int, ...] = (1, 5, 10)):
        super().__init__()
        self.save_hyperparameters(ignore=["transformer"])
        if itm_negatives not in ("mined", "uniform"):
            raise ConfigError(f"itm_negatives: {itm_negatives!r}; valid: 'mined', 'uniform'")
        if eval_mode not in ("full", "rerank"):
            raise ConfigError(f"eval_mode: {eval_mode!r}; valid: 'full', 'rerank'")
        if eval_mode == "rerank" and not shortlist:
            raise ConfigError("eval_mode 'rerank' needs `shortlist`: the test_embeddings.pt of a two-stream run "
                              "(TwoStreamEncoder with save_embeddings: true) on the same split")
        self.transformer = transformer
        self.itm_head = nn.Linear(transformer.hidden, 1)
        self.mlm_head = None
        if mlm_weight > 0:
            from transformers.models.vilt.modeling_vilt import ViltMLMHead

            self.mlm_head = ViltMLMHead(transformer.vilt.config)
            self.mlm_head.decoder.weight = transformer.vilt.embeddings.text_embeddings.word_embeddings.weight
        self.itc = InBatchContrastive(weight=itc_weight, name="itc") if itc_weight > 0 else None
        self._eval: dict[str, list] = {}

    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Matching logit of each (caption, image) row pair."""
        return self.itm_head(self.transformer.forward_pair(input_ids, attention_mask, images)[1]).squeeze(-1)

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if "caption" in batch and "input_ids" not in batch:
            batch.update(self.transformer.tokenize(list(batch["caption"])))
        return batch

    # ------------------------------------------------------------------ training
    def _generator(self, batch_idx: int) -> torch.Generator:
        """(run seed, step, batch, rank): each DDP rank draws its own negatives and masks."""
        return seeding.step_generator(self.global_step, batch_idx, self.global_rank)

    @torch.no_grad()
    def _negatives(self, ids, mask, images, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """For each pair: a negative caption index and a negative image index from the batch."""
        b = images.shape[0]
        if b < 2:
            raise ConfigError("image-text matching needs batches of at least 2 pairs (negatives come from the batch)")
        weights = torch.ones(b, b)  # [image, caption]
        if self.hparams.itm_negatives == "mined":
            weights.zero_()
            pool = max(2, self.hparams.mining_pool)
            for s in range(0, b, pool):
                rows = torch.arange(s, min(b, s + pool))
                ii, tt = (g.flatten() for g in torch.meshgrid(rows, rows, indexing="ij"))
                weights[ii, tt] = self.score(ids[tt], mask[tt], images[ii]).float().cpu().exp().clamp(1e-6, 1e6)
        weights.fill_diagonal_(0)
        return _sample(weights, gen).to(images.device), _sample(weights.T, gen).to(images.device)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        ids, mask, images = batch["input_ids"], batch["attention_mask"], batch["image"]
        b, gen = images.shape[0], self._generator(batch_idx)
        neg_text, neg_image = self._negatives(ids, mask, images, gen)
        all_ids = torch.cat([ids, ids[neg_text], ids])
        all_mask = torch.cat([mask, mask[neg_text], mask])
        all_images = torch.cat([images, images, images[neg_image]])
        hidden, pooled = self.transformer.forward_pair(all_ids, all_mask, all_images)
        logits = self.itm_head(pooled).squeeze(-1)
        labels = torch.cat([torch.ones(b), torch.zeros(2 * b)]).to(logits)
        itm = F.binary_cross_entropy_with_logits(logits, labels)
        self.log("train/itm_loss", itm, batch_size=b)
        self.log("train/itm_acc", ((logits > 0).float() == labels).float().mean(), batch_size=b)
        loss, self.loss_terms = itm, {"itm_loss": itm.detach()}  # NonFiniteGuard names a bad one
        if self.mlm_head is not None:
            loss = loss + self.hparams.mlm_weight * self._mlm(ids, mask, images, gen, b)
        if self.itc is not None:
            loss = loss + self._itc(ids, mask, images, b)
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        return loss

    def _mlm(self, ids, mask, images, gen, b) -> torch.Tensor:
        t = self.transformer
        maskable = mask.bool() & ~torch.isin(ids, torch.tensor(t.special_ids, device=ids.device))
        masked, selected = mask_tokens(ids, maskable, t.mask_id, (1, t.mask_id), gen)
        hidden, _ = t.forward_pair(masked, mask, images)
        logits = self.mlm_head(hidden[:, : ids.shape[1]])
        loss = F.cross_entropy(logits[selected], ids[selected]) if selected.any() else logits.sum() * 0
        self.log("train/mlm_loss", loss, batch_size=b)
        self.loss_terms["mlm_loss"] = loss.detach()
        return loss

    def _itc(self, ids, mask, images, b) -> torch.Tensor:
        """In-batch contrastive loss of the caption-only and image-only passes (the positives of the batch)."""
        t, how, m = self.transformer, self.hparams.itc_pooling, mask.bool()
        hidden = t.forward_image(images)
        image = pool(hidden, torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device), how)
        text = pool(t.forward_text(ids, m), m, how)
        outputs = SimpleNamespace(image_emb=F.normalize(image, dim=-1), text_emb=F.normalize(text, dim=-1),
                                  temperature=self.hparams.itc_temperature, pair_weight=None)
        terms = self.itc(outputs, {})
        self.log("train/itc_loss", terms["itc_loss"], batch_size=b)
        self.loss_terms["itc_loss"] = terms["itc_loss"].detach()
        return self.itc.weight * terms["itc_loss"]

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_warmup_cosine(self.named_parameters(), hp.lr, hp.weight_decay, hp.warmup_steps,
                                   hp.total_steps or int(self.trainer.estimated_stepping_batches), hp.min_lr_ratio)

    # ------------------------------------------------------------------ evaluation
    def _collect(self, batch: dict) -> None:
        if "image" in batch:
            self._eval.setdefault("image", []).append((batch["image_index"], batch["image"]))
        else:
            self._eval.setdefault("text", []).append((batch["text_index"], batch["input_ids"], batch["attention_mask"],
                                                       batch["image_index"]))

    def _evaluate(self, stage: str) -> None:
        if self.trainer.world_size > 1:
            raise ConfigError("SingleStreamModel evaluates in one process; run validate/test with devices=1")
        img_idx = torch.cat([x[0] for x in self._eval["image"]])
        images = torch.cat([x[1] for x in self._eval["image"]])[img_idx.argsort()]
        txt_idx = torch.cat([x[0] for x in self._eval["text"]])
        order = txt_idx.argsort()
        ids, mask, t2i = (torch.cat([x[k] for x in self._eval["text"]])[order] for k in (1, 2, 3))
        self._eval = {}
        hp = self.hparams
        if hp.eval_mode == "full" or stage == "val":
            s = full_scores(self.score, images, ids, mask, hp.score_batch_size, progress=stage == "test")
            results = recall_from_scores(s, t2i, tuple(hp.recall_ks))
        else:
            shortlist = self._shortlist(images.shape[0], ids.shape[0]).to(images.device)
            s_i2t, s_t2i = rerank_scores(self.score, images, ids, mask, shortlist, hp.rerank_k,
                                         hp.score_batch_size, progress=True)
            results = recall_from_scores(s_i2t, t2i, tuple(hp.recall_ks), scores_t2i=s_t2i)
        self.log_dict({f"{stage}/{k}": float(v) for k, v in results.items()})

    def _shortlist(self, n: int, m: int) -> torch.Tensor:
        blob = torch.load(self.hparams.shortlist, map_location="cpu", weights_only=True)  # ours: a dict of tensors
        sim = blob["image_emb"].float() @ blob["text_emb"].float().T
        if sim.shape != (n, m):
            raise ConfigError(f"shortlist {self.hparams.shortlist} scores {tuple(sim.shape)} pairs but this split has "
                              f"{n} images x {m} captions: write it from a run on the same split")
        return sim

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._collect(batch)

    def on_validation_epoch_end(self) -> None:
        if self._eval and not self.trainer.sanity_checking:
            self._evaluate("val")
        self._eval = {}

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._collect(batch)

    def on_test_epoch_end(self) -> None:
        self._evaluate("test")


def _sample(weights: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One column per row in proportion to ``weights``; rows with no weight (a pool of one) uniformly."""
    empty = weights.sum(1, keepdim=True) == 0
    uniform = 1.0 - torch.eye(weights.shape[0], weights.shape[1])
    return torch.multinomial(torch.where(empty, uniform, weights).contiguous(), 1, generator=gen).squeeze(1)
