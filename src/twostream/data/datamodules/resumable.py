"""A training DataLoader that resumes mid-epoch at the exact batch.

Why: Lightning restores its loop counters from a mid-epoch checkpoint (the epoch, the batch index),
but for a map-style dataset it cannot know which samples the first ``k`` batches held; it warns
and restarts the epoch's data from the beginning, so a resumed run trains on a different order.
Lightning's own remedy, a loader with ``state_dict``/``load_state_dict`` (saved under the fit
loop's ``combined_loader``), is not restored when ``configure_optimizers`` asks for
``trainer.estimated_stepping_batches`` (every model here does, for its schedule): that builds the
train loader before the checkpoint is read, and the fit loop then never loads the saved state.

So the position lives in a :class:`LoaderPosition` that the datamodule owns and checkpoints
(``LightningDataModule.state_dict``, restored before any loader is built) and that every train
loader it makes shares: Lightning re-creates loaders (e.g. with a ``DistributedSampler`` under
DDP) from their constructor arguments, and the position object goes along. When the resumed
epoch's iteration starts (after Lightning's ``set_epoch``; the iterator is only created at the
first batch), the first ``k`` index lists of the batch sampler are dropped without loading their
samples. Under DDP each rank drops its own ``k`` batches of its own shard, so the ranks stay
aligned. The order itself must be a function of (seed, epoch), which
:class:`~twostream.data.datamodules.retrieval_datasets.EpochKeySampler` guarantees.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader


class _SkipFirst:
    """The loader's batch sampler, minus its first ``skip`` batches on the next iteration only."""

    def __init__(self, batch_sampler, owner: ResumableLoader) -> None:
        self.batch_sampler, self.owner = batch_sampler, owner

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.owner._skip = self.owner._skip, 0
        for n, indices in enumerate(self.batch_sampler):
            if n >= skip:
                yield indices


def sampler_epoch(loader: DataLoader) -> int:
    """The epoch Lightning last set on the loader's sampler (``DistributedSampler`` included)."""
    for sampler in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if isinstance(getattr(sampler, "epoch", None), int):
            return sampler.epoch
    return 0


class LoaderPosition:
    """Epoch and batches consumed by the train loader: saved by the datamodule, shared by its loaders."""

    def __init__(self) -> None:
        self.epoch, self.batches = 0, 0
        self.pending: tuple[int, int] | None = None  # restored, applied when that epoch's iteration starts

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.epoch), "batches": int(self.batches)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.pending = (int(state.get("epoch", 0)), int(state.get("batches", 0)))

    def start(self, epoch: int, length: int) -> int:
        """An iteration of ``epoch`` (``length`` batches) begins: how many of its batches were already
        consumed according to a restored position (0 unless it is that epoch's, mid-way)."""
        pending, self.pending = self.pending, None
        skip = pending[1] if pending is not None and pending[0] == epoch and pending[1] < length else 0
        self.epoch, self.batches = epoch, skip
        return skip


class ResumableLoader(DataLoader):
    """A map-style ``DataLoader`` (with a batch sampler) that records and resumes its position.

    ``position``: the :class:`LoaderPosition` to record into (the datamodule's). A restored
    position applies only if the loop resumes in that epoch (a position at an epoch's end resumes
    at the start of the next one, where there is nothing to skip).
    """

    def __init__(self, *args: Any, position: LoaderPosition | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.position = position if position is not None else LoaderPosition()
        self._skip = 0  # batches the next iteration drops (read by _SkipFirst)

    @property
    def _index_sampler(self):
        """What torch's iterator draws index lists from (read when an iterator is created or a
        persistent one reset): the batch sampler behind :class:`_SkipFirst`."""
        sampler = super()._index_sampler
        if self._auto_collation and not isinstance(sampler, _SkipFirst):
            return _SkipFirst(sampler, self)
        return sampler

    def __iter__(self) -> Iterator[Any]:
        self._skip = self.position.start(sampler_epoch(self), len(self))
        for batch in super().__iter__():
            self.position.batches += 1
            yield batch

    # Lightning's stateful-loader protocol (it saves these too, and stops warning that the loader
    # cannot resume); the datamodule's copy of the same position is what is restored in practice.
    def state_dict(self) -> dict[str, int]:
        return self.position.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position.load_state_dict(state)
