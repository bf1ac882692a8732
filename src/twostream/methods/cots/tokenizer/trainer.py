"""VisualTokenizerTrainer: trains a :class:`VisualTokenizer` on the image side of retrieval batches.

Why a separate LightningModule: the tokenizer is trained once, before pre-training, and then used
frozen (COTS' masked vision modeling reads its ids). At the end of ``fit`` it is written to
``export_path`` as a standalone file that :meth:`VisualTokenizer.from_file` loads without Lightning.
Dead-code restarts happen here, once per optimizer step (``on_train_batch_end``), so the
tokenizer's ``forward`` stays free of side effects.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torchvision.utils import make_grid, save_image

from twostream.data import CLIP_MEAN, CLIP_STD
from twostream.optim import warmup_cosine
from twostream.methods.cots.tokenizer.vqvae import VisualTokenizer, perplexity, perplexity_of_counts


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


class _EvalStats:
    """Squared error, code histogram and the first images of one evaluation epoch."""

    def __init__(self, codebook_size: int, keep: int) -> None:
        self.sq_err, self.numel = 0.0, 0
        self.counts = torch.zeros(codebook_size)
        self.keep, self.images, self.recons = keep, [], []

    def update(self, images: torch.Tensor, out: dict[str, torch.Tensor]) -> None:
        self.sq_err += F.mse_loss(out["recon"], images, reduction="sum").item()
        self.numel += images.numel()
        self.counts += torch.bincount(out["codes"].flatten(), minlength=self.counts.numel()).cpu().float()
        room = self.keep - sum(len(x) for x in self.images)
        if room > 0:
            self.images.append(images[:room].detach().cpu())
            self.recons.append(out["recon"][:room].detach().cpu())


class VisualTokenizerTrainer(L.LightningModule):
    """Fit a VQ-VAE tokenizer; log losses, codebook health and reconstruction grids; export it.

    Args:
        tokenizer: the :class:`VisualTokenizer` to train.
        lr, weight_decay, betas: AdamW.
        warmup_steps, min_lr_ratio: linear warm-up, then cosine decay to ``lr * min_lr_ratio``.
        dead_code_steps: restart a code after this many optimizer steps without being chosen.
        usage_window: ``train/codebook_usage`` is the fraction of codes chosen in this many steps.
        export_path: where the frozen tokenizer file is written at the end of ``fit`` (the
            reconstruction grid goes beside it as ``<stem>_recon.png``).
        num_grid_images: originals (top) and reconstructions (below) in the logged grid.
    """

    def __init__(self, tokenizer: VisualTokenizer, lr: float = 1e-3, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.99), warmup_steps: int = 50, min_lr_ratio: float = 0.1,
                 dead_code_steps: int = 100, usage_window: int = 100, export_path: str = "runs/tokenizer/vqvae.pt",
                 num_grid_images: int = 16) -> None:
        super().__init__()
        if dead_code_steps < 1 or usage_window < 1:
            raise ValueError(f"dead_code_steps and usage_window: expected >= 1, got {dead_code_steps}, {usage_window}")
        if num_grid_images < 0:
            raise ValueError(f"num_grid_images: expected >= 0, got {num_grid_images}")
        self.save_hyperparameters(ignore=["tokenizer"])
        self.tokenizer = tokenizer
        self.register_buffer("codes_restarted", torch.zeros((), dtype=torch.long))  # in checkpoints
        self._seen_step = -1
        self._eval: _EvalStats | None = None

    # ---------------------------------------------------------------- training
    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        images = batch["image"]
        out = self.tokenizer(images)
        bs = images.shape[0]
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=bs)
        for key in ("recon_loss", "vq_loss", "codebook_loss", "commit_loss"):
            self.log(f"train/{key}", out[key].detach(), batch_size=bs)
        self.log("train/perplexity", perplexity(out["codes"], self.tokenizer.codebook_size), batch_size=bs)
        return {"loss": out["loss"], "codes": out["codes"].detach(), "latents": out["latents"]}

    def on_train_start(self) -> None:
        self._seen_step = self.trainer.global_step

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """Record code usage every batch; restart dead codes once per optimizer step."""
        if not isinstance(outputs, dict) or "codes" not in outputs:
            return
        q = self.tokenizer.quantizer
        used = q.used_mask(outputs["codes"])
        if _distributed():  # a code used on any rank is alive, so every rank sees the same dead set
            used = _sum_over_ranks(used.long()) > 0
        q.mark_used(used)
        if self.trainer.global_step == self._seen_step:
            return  # gradient accumulation: no optimizer step yet
        self._seen_step = self.trainer.global_step
        restarted = q.restart_dead(outputs["latents"], self.hparams.dead_code_steps)
        if restarted and _distributed():  # rank 0's batch seeds the new codes everywhere
            dist.broadcast(q.codebook.data, src=0)
        self.codes_restarted += restarted
        self.log("train/codebook_usage", q.usage(self.hparams.usage_window))
        self.log("train/codes_restarted", self.codes_restarted.float())

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.AdamW(self.tokenizer.parameters(), lr=hp.lr, betas=tuple(hp.betas),
                                weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, hp.warmup_steps, total, hp.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ---------------------------------------------------------------- evaluation
    def _eval_step(self, batch: dict) -> None:
        if "image" not in batch:  # the captions loader of the retrieval layout: nothing to tokenize
            return
        if self._eval is None:
            self._eval = _EvalStats(self.tokenizer.codebook_size, self.hparams.num_grid_images)
        self._eval.update(batch["image"], self.tokenizer(batch["image"]))

    def _eval_end(self, stage: str) -> torch.Tensor | None:
        """Log ``{stage}/recon_loss|codebook_usage|perplexity``; return the grid (rank 0) or None."""
        stats, self._eval = self._eval, None
        if stats is None:
            return None
        sums = _sum_over_ranks(torch.tensor([stats.sq_err, float(stats.numel)], dtype=torch.float64,
                                            device=self.device))
        counts = _sum_over_ranks(stats.counts.to(self.device))
        self.log_dict({f"{stage}/recon_loss": float(sums[0] / sums[1].clamp(min=1)),
                       f"{stage}/codebook_usage": float((counts > 0).float().mean()),
                       f"{stage}/perplexity": perplexity_of_counts(counts)}, sync_dist=False)
        if not stats.images or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return None
        grid = self.recon_grid(torch.cat(stats.images), torch.cat(stats.recons))
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(f"{stage}/reconstructions", grid, global_step=self.global_step)
        return grid

    @staticmethod
    def recon_grid(images: torch.Tensor, recons: torch.Tensor, nrow: int = 8) -> torch.Tensor:
        """[3, H, W] grid in [0, 1]: originals in the top row(s), their reconstructions below."""
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        pixels = (torch.cat([images, recons]).float().cpu() * std + mean).clamp(0, 1)
        return make_grid(pixels, nrow=min(nrow, len(images)), padding=2, pad_value=1.0)

    def _write_png(self, grid: torch.Tensor, name: str, beside_export: bool) -> None:
        paths = [Path(self.hparams.export_path).with_name(Path(self.hparams.export_path).stem + "_recon.png")] \
            if beside_export else []
        if self.logger is not None and self.logger.log_dir:
            paths.append(Path(self.logger.log_dir) / name)
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_image(grid, str(path))

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        grid = self._eval_end("val")
        if grid is not None:
            self._write_png(grid, "recon.png", beside_export=True)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        grid = self._eval_end("test")
        if grid is not None:
            self._write_png(grid, "recon_test.png", beside_export=False)

    # ---------------------------------------------------------------- export
    def on_fit_end(self) -> None:
        if not self.trainer.is_global_zero or self.trainer.fast_dev_run:
            return
        path = Path(self.hparams.export_path)
        self.tokenizer.save(path)
        print(f"visual tokenizer written to {path} (load with VisualTokenizer.from_file)")
