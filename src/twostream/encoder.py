"""TwoStreamEncoder: two towers, a shared embedding space, and a list of objectives.

The module wires plain ``nn.Module``s (towers, heads, state) to optimisation and logging; it holds
no objective-specific logic. Which objectives run is configuration: adding one is a new head file
plus a YAML entry, never a change here.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from twostream.errors import ConfigError
from twostream.metrics import RetrievalRecall
from twostream.objectives.base import LossHead
from twostream.objectives.in_batch_contrastive import InBatchContrastive
from twostream.optim import adamw_warmup_cosine
from twostream.state import AdaptiveMomentumFilter, MomentumQueue
from twostream.towers.base import TowerOutput


@dataclass
class EncoderOutput:
    """What heads read. Embeddings are L2-normalised; ``None`` where the batch lacks that modality.

    Training adds: momentum keys of this batch (with a momentum queue), the filter's 0/1 pair
    weights ``keep`` and the pair similarities it judged, and ``generator``, the step's seeded
    CPU generator every random mask is drawn from (so masks survive a resume exactly)."""

    image_emb: torch.Tensor | None
    text_emb: torch.Tensor | None
    image: TowerOutput | None
    text: TowerOutput | None
    temperature: torch.Tensor
    image_key: torch.Tensor | None = None
    text_key: torch.Tensor | None = None
    keep: torch.Tensor | None = None
    similarity: torch.Tensor | None = None
    generator: torch.Generator | None = None


def _projection(kind: str, in_dim: int, out_dim: int, which: str) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_dim, out_dim, bias=False)
    if kind == "none":
        if in_dim != out_dim:
            raise ConfigError(f"projection: 'none' needs the {which} tower's output_dim ({in_dim}) == embed_dim ({out_dim})")
        return nn.Identity()
    raise ConfigError(f"projection: {kind!r}; valid: 'linear', 'none'")


class TwoStreamEncoder(L.LightningModule):
    """Dual encoder trained by a weighted sum of objectives, evaluated by exact recall@K.

    Args:
        vision / text: towers (``twostream.towers``); the text tower also tokenizes, so every
            caption, synthetic or real, goes through the tokenizer that matches the model.
        heads: objectives; default a single :class:`InBatchContrastive`.
        embed_dim: shared embedding size; ``projection`` maps each tower's pooled output to it.
        temperature: initial softmax temperature, learnable unless ``learn_temperature=False``,
            clamped to ``>= min_temperature`` after each optimizer step (CLIP's 100 logit-scale cap).
        lr, weight_decay, betas, eps: AdamW; no decay on biases, norms, embeddings, temperature.
        warmup_steps, min_lr_ratio: linear warm-up then cosine decay over the run's optimizer steps
            (``total_steps`` if set, else the trainer's estimate: set it to keep one schedule across
            runs of different lengths, e.g. a run stopped and resumed).
        momentum_queue: momentum towers + negative queues (COTS); needs the MomentumQueueCallback.
        noise_filter: adaptive momentum filter of noisy pairs (COTS); needs the MomentumQueueCallback.
        init_from: a checkpoint (Lightning ``.ckpt`` or a plain state dict) whose towers, projections
            and temperature initialise this model, e.g. ``make pretrain``'s for fine-tuning.
        shared: a module applied with the same weights to both towers' token sequences before
            projection (COOKIE's :class:`~twostream.towers.SharedTransformer`); its pooled output
            replaces the towers'.
        unimodal_eval: also report image→image recall (images of the same scene as positives, where
            the data knows scenes) and text→text recall (captions of the same image as positives).
        save_embeddings: write the test split's embeddings to ``<run dir>/test_embeddings.pt``
            (the shortlist a cross-encoder re-ranks, or for analysis).
    """

    def __init__(self, vision: nn.Module, text: nn.Module, heads: list[LossHead] | None = None,
                 embed_dim: int = 256, projection: Literal["linear", "none"] = "linear",
                 temperature: float = 0.07, learn_temperature: bool = True, min_temperature: float = 0.01,
                 lr: float = 5e-4, weight_decay: float = 0.2, betas: tuple[float, float] = (0.9, 0.98),
                 eps: float = 1e-6, warmup_steps: int = 100, min_lr_ratio: float = 0.0,
                 total_steps: int | None = None, momentum_queue: MomentumQueue | None = None,
                 noise_filter: AdaptiveMomentumFilter | None = None, init_from: str | None = None,
                 shared: nn.Module | None = None, unimodal_eval: bool = True, save_embeddings: bool = False,
                 recall_ks: tuple[int, ...] = (1, 5, 10)):
        super().__init__()
        self.save_hyperparameters(ignore=["vision", "text", "heads", "momentum_queue", "noise_filter", "shared", "transformer"])
        self.vision, self.text, self.shared, self.embed_dim = vision, text, shared, embed_dim
        dims = (vision.output_dim, text.output_dim)
        if shared is not None:
            shared.bind(vision.token_dim, text.token_dim)
            dims = (shared.output_dim, shared.output_dim)
        self.image_proj = _projection(projection, dims[0], embed_dim, "vision")
        self.text_proj = _projection(projection, dims[1], embed_dim, "text")
        log_t = torch.tensor(math.log(temperature))
        if learn_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)
        self.heads = nn.ModuleList(heads if heads is not None else [InBatchContrastive()])
        names = [h.name for h in self.heads]
        if len(set(names)) != len(names):
            raise ConfigError(f"heads: names must be unique, got {names}; set `name:` on duplicates")
        if init_from:
            from twostream.checkpoints import load_encoder_weights

            load_encoder_weights(self, init_from)
        self.state = nn.ModuleDict()
        if momentum_queue is not None:  # copies the towers: after init_from, so it starts from those weights
            momentum_queue.build(self, embed_dim)
            self.state["momentum"] = momentum_queue
        if noise_filter is not None:
            self.state["filter"] = noise_filter
        for head in self.heads:
            head.attach(self, self.state)
        self.val_recall = RetrievalRecall(ks=tuple(recall_ks), unimodal=unimodal_eval)
        self.test_recall = RetrievalRecall(ks=tuple(recall_ks), unimodal=unimodal_eval)

    # ---------------------------------------------------------------- encoding
    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    def encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, TowerOutput]:
        out = self.vision(images)
        if self.shared is not None:
            out = self.shared(out, "image")
        return F.normalize(self.image_proj(out.pooled), dim=-1), out

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        out = self.text(input_ids, attention_mask)
        if self.shared is not None:
            out = self.shared(out, "text")
        return F.normalize(self.text_proj(out.pooled), dim=-1), out

    def forward(self, batch: dict) -> EncoderOutput:
        image_emb = text_emb = image_out = text_out = None
        if "image" in batch:
            image_emb, image_out = self.encode_image(batch["image"])
        if "input_ids" in batch:
            text_emb, text_out = self.encode_text(batch["input_ids"], batch.get("attention_mask"))
        return EncoderOutput(image_emb, text_emb, image_out, text_out, self.temperature)

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Tokenize captions with the text tower's own tokenizer (before the batch moves to device)."""
        if "caption" in batch and "input_ids" not in batch:
            batch.update(self.text.tokenize(list(batch["caption"])))
        if self.training:
            for head in self.heads:
                head.prepare_batch(batch)
        return batch

    # ---------------------------------------------------------------- training
    def step_generator(self, batch_idx: int) -> torch.Generator:
        """A CPU generator seeded from (run seed, optimizer step, batch, rank): reproducible masks."""
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        mixed = ((seed * 1_000_003 + self.global_step) * 100_003 + batch_idx) * 1_009 + self.global_rank
        return torch.Generator().manual_seed(mixed % (2**63 - 1))

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        out = self(batch)
        out.generator = self.step_generator(batch_idx)
        carry = self._momentum_and_filter(out, batch)
        total, logs = self.objective(out, batch)
        bs = batch["image"].shape[0]
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, batch_size=bs, sync_dist=False)
        self.log("train/loss", total, prog_bar=True, batch_size=bs)
        self.log("train/temperature", self.temperature.detach(), batch_size=bs)
        result = {"loss": total}
        if carry:
            result["momentum_state"] = carry  # consumed by MomentumQueueCallback after the optimizer step
        return result

    def _momentum_and_filter(self, out: EncoderOutput, batch: dict) -> dict[str, torch.Tensor]:
        """Momentum keys and filter weights for this batch; returns what the callback must enqueue/record."""
        carry: dict[str, torch.Tensor] = {}
        if "momentum" in self.state:
            out.image_key, out.text_key = self.state["momentum"].encode(batch)
            carry.update(image_key=out.image_key, text_key=out.text_key, ids=batch["image_index"])
        if "filter" in self.state:
            keys = (out.image_key, out.text_key) if out.image_key is not None else (out.image_emb, out.text_emb)
            out.similarity = self.state["filter"].pair_scores(keys[0].detach(), keys[1].detach())
            out.keep = self.state["filter"].keep_mask(out.similarity)
            carry.update(similarity=out.similarity, keep=out.keep)
            self._log_filter(out, batch)
        return carry

    def _log_filter(self, out: EncoderOutput, batch: dict) -> None:
        bs, f = out.keep.shape[0], self.state["filter"]
        self.log_dict({"train/filter_kept_fraction": out.keep.mean(), "train/filter_threshold": f.threshold.detach(),
                       "train/filter_mean": f.mean.detach()}, batch_size=bs)
        if "noisy" in batch:  # injected noise (caption_noise > 0): how well does the filter find it?
            noisy = batch["noisy"].bool()
            dropped = 1.0 - out.keep
            self.log_dict({"train/filter_dropped_noisy": (dropped * noisy).sum() / noisy.sum().clamp(min=1),
                           "train/filter_dropped_clean": (dropped * ~noisy).sum() / (~noisy).sum().clamp(min=1)},
                          batch_size=bs)

    def configure_model(self) -> None:
        """FSDP2 under Lightning's ModelParallelStrategy (which sets ``device_mesh``); otherwise, and
        when already sharded (Lightning calls this again for ``test`` after ``fit``), nothing."""
        if self.device_mesh is not None:
            from twostream.sharding import shard_encoder

            shard_encoder(self, self.device_mesh["data_parallel"])

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

    def on_fit_start(self) -> None:
        from twostream.callbacks.momentum_queue import MomentumQueueCallback

        needs = [key for key in ("momentum", "filter") if key in self.state]
        has = any(isinstance(cb, MomentumQueueCallback) for cb in self.trainer.callbacks)
        if needs and not has:
            raise ConfigError(f"the model has {' and '.join(needs)} state but no callback updates it: add "
                              f"`- class_path: twostream.callbacks.MomentumQueueCallback` to trainer.callbacks")

    def objective(self, out: EncoderOutput, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted sum of every head's ``*_loss`` entries, plus everything the heads report."""
        total = out.image_emb.new_zeros(())
        logs: dict[str, torch.Tensor] = {}
        for head in self.heads:
            for key, value in head(out, batch, self.state).items():
                logs[key] = value.detach()
                if key.endswith("_loss"):
                    total = total + head.weight * value
        return total, logs

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if isinstance(self.log_temperature, nn.Parameter):
            with torch.no_grad():
                self.log_temperature.clamp_(min=math.log(self.hparams.min_temperature))

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_warmup_cosine(self.named_parameters(), hp.lr, hp.weight_decay, hp.warmup_steps,
                                   hp.total_steps or int(self.trainer.estimated_stepping_batches), hp.min_lr_ratio,
                                   betas=hp.betas, eps=hp.eps)

    # ---------------------------------------------------------------- evaluation
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
