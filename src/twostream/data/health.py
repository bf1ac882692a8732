"""Dirty-data bookkeeping shared by every reader: skip a bad sample, say why, never crash.

Why: real web data has dead links, truncated JPEGs, empty captions and annotation paths that do
not exist on disk. A reader that crashes on the first one wastes a run; one that silently drops
them hides a broken download. So readers skip a bad sample and attach ``(reason, sample key)`` to
an item they do return, under one of two keys, because the two cases count differently:

- ``SKIPPED``: the bad sample was dropped and the item is the next sample of the stream (web
  shards). Samples read = items + dropped ones.
- ``REPLACED``: the item *stands in* for the bad sample, in its slot (a map-style training set
  substitutes the next good image so batches keep their size; evaluation scores a blank image).
  Samples read = items; the stand-in is not a good sample of its own.

So the bad fraction is (dropped + replaced) / (items + dropped), exactly the share of bad samples
in what was read (10 bad of 12 is 83 %, not the 10 / 22 of counting stand-ins as good).
:func:`collate_with_skips` carries both lists into the batch, where the
:class:`~twostream.callbacks.DataHealth` callback counts, logs and, past a limit, stops the run
with :class:`DataQualityError`.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from torch.utils.data import default_collate

SKIPPED = "skipped"  # batch key: list[tuple[str, str]] of (reason, sample key) dropped since the previous item
REPLACED = "replaced"  # batch key: (reason, sample key) of bad samples whose slot holds a stand-in


class SkipReason:
    """Why a sample was skipped; the strings appear in logs (``data/skipped_<reason>``)."""

    CORRUPT_IMAGE = "corrupt_image"
    MISSING_FILE = "missing_file"
    EMPTY_CAPTION = "empty_caption"
    UNDECODABLE_VIDEO = "undecodable_video"
    EMPTY_VIDEO = "empty_video"


class DataQualityError(RuntimeError):
    """Too much of the data is bad: the message names examples and the setting that allows more."""


Skip = tuple[str, str]


def collate_with_skips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate`` the items; their ``SKIPPED`` / ``REPLACED`` lists become one list each.

    A key is only added when some item carried it, so clean sources keep their exact batch keys.
    The lists of tuples survive Lightning's device transfer unchanged (strings are not moved).
    """
    lists: dict[str, list[Skip]] = {}
    rest = []
    for item in items:
        for key in (SKIPPED, REPLACED):
            if key in item:
                lists.setdefault(key, []).extend((str(reason), str(k)) for reason, k in item[key])
        rest.append({k: v for k, v in item.items() if k not in (SKIPPED, REPLACED)})
    batch = default_collate(rest) if rest else {}
    batch.update(lists)
    return batch


def check_bad_fraction(
    bad: int, seen: int, max_bad_fraction: float, examples: Sequence[Skip], where: str
) -> None:
    """Raise :class:`DataQualityError` when ``bad / seen`` exceeds ``max_bad_fraction``.

    ``seen`` counts every sample looked at, good or bad. The message names a few ``examples``
    (``reason:key``) and the ``max_bad_fraction`` setting, so the user can fix the data or accept it.
    """
    if seen <= 0 or bad / seen <= max_bad_fraction:
        return
    shown = ", ".join(f"{reason}:{key}" for reason, key in list(examples)[:5]) or "none recorded"
    raise DataQualityError(
        f"{where}: {bad:,} of {seen:,} samples ({100.0 * bad / seen:.1f}%) were bad, more than "
        f"max_bad_fraction={max_bad_fraction} allows; e.g. {shown}. Fix or re-download the data, or raise "
        f"max_bad_fraction (init_args of twostream.callbacks.DataHealth in the config) to accept it."
    )


def format_counts(counts: Counter[str]) -> str:
    """``corrupt_image 10, empty_caption 2`` (most frequent first, then by name)."""
    return ", ".join(f"{reason} {n:,}" for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def pick_examples(skips: Sequence[Skip], n: int) -> list[Skip]:
    """Up to ``n`` examples, one per reason first (a rare reason is not hidden by a common one)."""
    first_of: dict[str, Skip] = {}
    for skip in skips:
        first_of.setdefault(skip[0], skip)
    picked = list(first_of.values())[:n]
    return picked + [s for s in skips if s not in picked][: n - len(picked)]


class SkipLog:
    """Skips collected while producing one item; ``attach`` puts them on the item (if any), under
    ``SKIPPED`` (dropped samples) or, with ``replaced=True``, ``REPLACED`` (the item stands in)."""

    def __init__(self) -> None:
        self.skips: list[Skip] = []

    def add(self, reason: str, key: str) -> None:
        self.skips.append((reason, key))

    def attach(self, item: dict[str, Any], replaced: bool = False) -> dict[str, Any]:
        if self.skips:
            item[REPLACED if replaced else SKIPPED] = self.skips
            self.skips = []
        return item


__all__ = [
    "REPLACED",
    "SKIPPED",
    "DataQualityError",
    "Skip",
    "SkipLog",
    "SkipReason",
    "check_bad_fraction",
    "collate_with_skips",
    "format_counts",
    "pick_examples",
]
