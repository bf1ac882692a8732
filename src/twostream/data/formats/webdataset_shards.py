"""img2dataset output (CC3M, or any web image-text crawl): shard files, their sizes, the HF stream.

Why streaming: CC3M-sized data does not fit a map-style index; img2dataset writes tar shards
(``output_format=webdataset``) or parquet files (``output_format=parquet``), which HF datasets
reads as an ``IterableDataset`` without unpacking.

Splitting: ranks get disjoint parts via ``datasets.distributed.split_dataset_by_node`` (whole
shards when their number divides the world size, else every world_size-th example), and HF
shards each rank's part across its dataloader workers itself. Workers are capped at the
number of shards a rank has, so no worker idles.

The torch side (decoding, per-worker quotas, epochs) is
:class:`~twostream.data.datamodules.webdataset.WebImageTextStream`.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from pathlib import Path

_BRACE = re.compile(r"\{([^{}]*)\}")


def expand_shards(shards: str | list[str]) -> list[str]:
    """Shard files from a list, a glob (``data/cc3m/*.tar``) or a brace pattern
    (``data/cc3m/{00000..00331}.tar``, ``{a,b}``), in sorted order; errors name the pattern."""
    patterns = [shards] if isinstance(shards, str) else list(shards)
    files: list[str] = []
    for pattern in patterns:
        for expanded in _expand_braces(str(pattern)):
            matches = sorted(glob.glob(expanded)) if glob.has_magic(expanded) else [expanded]
            files += [m for m in matches if os.path.isfile(m)]
    if not files:
        raise FileNotFoundError(f"shards: no files match {shards!r}; expected img2dataset output "
                                f"(*.tar for output_format=webdataset, *.parquet for output_format=parquet)")
    kinds = {_kind(f) for f in files}
    if len(kinds) != 1:
        raise ValueError(f"shards: mix of .tar and .parquet files in {shards!r}; use one output format")
    return files


def _expand_braces(pattern: str) -> list[str]:
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    body, head, tail = match.group(1), pattern[: match.start()], pattern[match.end():]
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        lo, hi = numeric.groups()
        options = [str(i).zfill(len(lo)) for i in range(int(lo), int(hi) + 1)]
    else:
        options = body.split(",")
    return [out for option in options for out in _expand_braces(head + option + tail)]


def _kind(path: str) -> str:
    if path.endswith(".tar"):
        return "webdataset"
    if path.endswith(".parquet"):
        return "parquet"
    raise ValueError(f"shards: {path} is neither a .tar (webdataset) nor a .parquet file")


def count_samples(files: list[str]) -> int:
    """Sum of ``successes`` in each shard's ``{shard}_stats.json`` (img2dataset writes no sizes file)."""
    total, missing = 0, []
    for f in files:
        stats = Path(f).with_name(Path(f).name.rsplit(".", 1)[0] + "_stats.json")
        if not stats.is_file():
            missing.append(str(stats))
            continue
        total += int(json.loads(stats.read_text())["successes"])
    if missing:
        raise FileNotFoundError(f"no img2dataset stats for {len(missing)} shard(s), e.g. {missing[0]}; "
                                f"set num_samples to the number of training samples")
    return total


def sample_index(key: str) -> int:
    """A unique int per sample for ``image_index``/``text_index``: img2dataset's 9-digit key as a
    number (it encodes shard and row), otherwise a stable 63-bit hash of the key."""
    if key.isdigit() and len(key) < 19:
        return int(key)
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") >> 1


def open_stream(files: list[str], image_field: str, seed: int, shuffle_buffer: int, rank: int, world_size: int):
    """HF streaming dataset over ``files``: shuffled (shards + buffer), split for ``rank``, images undecoded."""
    import datasets
    from datasets.distributed import split_dataset_by_node

    if _kind(files[0]) == "webdataset":
        features = datasets.Features({
            "__key__": datasets.Value("string"), "__url__": datasets.Value("string"),
            image_field: datasets.Image(decode=False), "txt": datasets.Value("string"),
            "json": {"caption": datasets.Value("string")},  # only the caption: other metadata types vary
        })
        ds = datasets.load_dataset("webdataset", data_files=files, split="train", streaming=True, features=features)
    else:
        import pyarrow.parquet as pq

        present = set(pq.read_schema(files[0]).names)
        if image_field not in present:
            raise ValueError(f"{files[0]}: no column {image_field!r} (columns: {sorted(present)}); set image_field")
        columns = [c for c in ("key", image_field, "txt", "caption", "status") if c in present]
        ds = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True, columns=columns)
    if shuffle_buffer > 0:
        ds = ds.shuffle(seed=seed, buffer_size=shuffle_buffer)
    return split_dataset_by_node(ds, rank=rank, world_size=world_size) if world_size > 1 else ds
