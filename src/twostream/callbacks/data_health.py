"""Count the dirty samples the readers skipped, report them each epoch, stop when too many are bad.

Why a callback: readers run in dataloader workers (and on every DDP rank), where nothing can be
logged or stopped; they only attach ``(reason, key)`` tuples to the batch (``batch["skipped"]``
for dropped samples, ``batch["replaced"]`` for those whose slot holds a stand-in; see
:mod:`twostream.data.health` for why they count differently).
This callback sums them over ranks, logs ``data/skipped_<reason>`` and ``data/skipped_fraction``,
prints one line per epoch and raises :class:`DataQualityError` past ``max_bad_fraction``.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import lightning as L
import torch

from twostream.data.health import (REPLACED, SKIPPED, DataQualityError, check_bad_fraction, format_counts,
                                   pick_examples)

Skip = tuple[str, str]


class _Tally:
    """Skips and samples read (good + bad) since the last report, on this rank."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.seen = 0
        self.examples: list[Skip] = []

    def add(self, batch: Any, num_examples: int) -> None:
        """One batch: its items were read, and so were the samples dropped before them; the bad ones
        are the dropped plus those whose slot holds a stand-in."""
        dropped, replaced = _skips(batch, SKIPPED), _skips(batch, REPLACED)
        skips = dropped + replaced
        self.counts.update(reason for reason, _ in skips)
        self.seen += _batch_size(batch) + len(dropped)
        if skips:
            self.examples = pick_examples(self.examples + skips, num_examples)


def _skips(batch: Any, key: str) -> list[Skip]:
    return list(batch.get(key) or []) if isinstance(batch, dict) else []


def _batch_size(batch: Any) -> int:
    """Samples in a batch: the first tensor (or list) among the usual keys."""
    if not isinstance(batch, dict):
        return 0
    for key in ("image_index", "text_index", "image", "video", "video_index", "caption"):
        value = batch.get(key)
        if isinstance(value, torch.Tensor):
            return int(value.shape[0]) if value.ndim else 1
        if isinstance(value, (list, tuple)):
            return len(value)
    return 0


def _gather(trainer: L.Trainer, tally: _Tally) -> tuple[Counter, int, list[Skip]]:
    """Counts, samples and examples summed over DDP ranks (this rank's alone without DDP)."""
    mine = (dict(tally.counts), tally.seen, tally.examples)
    if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        parts: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, mine)
    else:
        parts = [mine]
    counts: Counter = Counter()
    for part_counts, _, _ in parts:
        counts.update(part_counts)
    return counts, sum(p[1] for p in parts), [e for p in parts for e in p[2]]


class DataHealth(L.Callback):
    """Report and bound dirty data.

    Args:
        max_bad_fraction: stop with :class:`DataQualityError` when more than this fraction of the
            samples read in an epoch (load-time drops included in the first) was bad.
        num_examples: ``reason:key`` examples shown in the epoch line and in the error.
        check_every_n_batches: also check mid-epoch (all ranks together) every this many training
            batches, so a hopeless download fails in minutes, not at the end of a CC3M epoch; 0: off.
    """

    def __init__(self, max_bad_fraction: float = 0.05, num_examples: int = 3, check_every_n_batches: int = 1000):
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        self.max_bad_fraction, self.num_examples = max_bad_fraction, num_examples
        self.check_every_n_batches = check_every_n_batches
        self._train, self._eval = _Tally(), _Tally()
        self._load: list[Skip] = []  # load-time drops, counted into the first epoch's line
        self._load_reported = 0

    # ------------------------------------------------------------------ load-time drops
    def _take_load_skips(self, trainer: L.Trainer) -> list[Skip]:
        """Drops the datamodule made while reading splits and not yet reported (identical on
        every rank, so they are added once, not summed)."""
        skips = list(getattr(trainer.datamodule, "load_skips", None) or [])
        new, self._load_reported = skips[self._load_reported:], len(skips)
        if new and trainer.is_global_zero:
            print(f"data: dropped {len(new):,} annotation entries while reading splits — "
                  f"{format_counts(Counter(r for r, _ in new))}; e.g. {self._examples(new)}")
        return new

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._train, self._load = _Tally(), self._take_load_skips(trainer)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_load_skips(trainer)

    # ------------------------------------------------------------------ training
    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._train.add(batch, self.num_examples)
        n = self.check_every_n_batches
        if n and batch_idx and batch_idx % n == 0:
            counts, seen, examples = self._totals(trainer)
            check_bad_fraction(sum(counts.values()), seen, self.max_bad_fraction, examples,
                               f"epoch {trainer.current_epoch} (first {batch_idx + 1:,} batches)")

    def _totals(self, trainer: L.Trainer) -> tuple[Counter, int, list[Skip]]:
        counts, seen, examples = _gather(trainer, self._train)
        counts.update(reason for reason, _ in self._load)
        return counts, seen + len(self._load), pick_examples(self._load + examples, self.num_examples)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        counts, seen, examples = self._totals(trainer)
        self._train, self._load = _Tally(), []
        bad = sum(counts.values())
        where = f"epoch {trainer.current_epoch}"
        if trainer.is_global_zero:
            print(self._line(where, bad, seen, counts, examples))
        metrics = {f"data/skipped_{reason}": float(n) for reason, n in counts.items()}
        metrics["data/skipped_fraction"] = bad / seen if seen else 0.0
        for name, value in metrics.items():
            pl_module.log(name, value, sync_dist=False)  # already summed over ranks
        check_bad_fraction(bad, seen, self.max_bad_fraction, examples, where)

    # ------------------------------------------------------------------ evaluation
    def _eval_batch(self, batch: Any) -> None:
        if isinstance(batch, dict) and ("image" in batch or "video" in batch):
            self._eval.add(batch, self.num_examples)  # bad eval items stay in the batch (scored as blank)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._eval_batch(batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._eval_batch(batch)

    def _eval_end(self, trainer: L.Trainer, stage: str) -> None:
        counts, seen, examples = _gather(trainer, self._eval)
        examples = pick_examples(examples, self.num_examples)
        self._eval = _Tally()
        bad = sum(counts.values())
        if bad and trainer.is_global_zero:
            print(self._line(stage, bad, seen, counts, examples) + " (scored as blank)")
        if not trainer.sanity_checking:
            check_bad_fraction(bad, seen, self.max_bad_fraction, examples, stage)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._eval_end(trainer, "validation")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._eval_end(trainer, "test")

    # ------------------------------------------------------------------ text
    def _examples(self, skips: list[Skip]) -> str:
        return ", ".join(f"{reason}:{key}" for reason, key in pick_examples(skips, self.num_examples))

    def _line(self, where: str, bad: int, seen: int, counts: Counter, examples: list[Skip]) -> str:
        pct = 100.0 * bad / seen if seen else 0.0
        line = f"{where}: skipped {bad:,} of {seen:,} samples ({pct:.1f}%)"
        if bad:
            line += f" — {format_counts(counts)}; e.g. {self._examples(examples)}"
        return line


__all__ = ["DataHealth", "DataQualityError"]
