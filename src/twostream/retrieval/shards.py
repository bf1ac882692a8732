"""The on-disk layout of an embedded gallery (clip-retrieval's), written so that an interruption loses at most a shard.

::

    <dir>/embeddings.json                 what was embedded, by which model (written first; checked on resume)
    <dir>/img_emb/img_emb_0000.npy        float16 [rows, dim], L2-normalised   (text_emb/text_emb_0000.npy for captions)
    <dir>/metadata/metadata_0000.parquet  one row per embedding: source_index, path, caption;
                                          schema metadata: rows seen and skipped in this shard

Shard ``s`` covers source rows ``[s * shard_size, (s + 1) * shard_size)``; rows that could not be
read are skipped (and counted), so a shard may hold fewer. Both files of a shard are written to a
temporary name and renamed, the parquet last: a shard is complete exactly when its parquet exists.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from twostream.errors import ConfigError

MANIFEST = "embeddings.json"
EMB_DIRS = {"image": ("img_emb", "img_emb"), "video": ("img_emb", "img_emb"), "text": ("text_emb", "text_emb")}
SKIPS_KEY = b"twostream.skips"
COLUMNS = ("source_index", "path", "caption")


@dataclasses.dataclass
class Shard:
    """One finished shard: its embeddings (memory-mapped when read back), metadata and skip record."""

    number: int
    embeddings: np.ndarray
    metadata: pa.Table
    seen: int
    skips: list[tuple[str, str]]


def emb_path(root: Path, modality: str, number: int) -> Path:
    folder, stem = EMB_DIRS[modality]
    return root / folder / f"{stem}_{number:04d}.npy"


def meta_path(root: Path, number: int) -> Path:
    return root / "metadata" / f"metadata_{number:04d}.parquet"


def _atomic(path: Path, write) -> None:
    """Write through ``write(tmp_path)`` and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def write_shard(root: Path, modality: str, number: int, embeddings: np.ndarray, rows: dict[str, list],
                seen: int, skips: list[tuple[str, str]]) -> None:
    """The shard's float16 embeddings, then its metadata (whose presence marks the shard complete)."""
    if len(embeddings) != len(rows["source_index"]):
        raise ValueError(f"shard {number}: {len(embeddings)} embeddings but {len(rows['source_index'])} metadata rows")
    emb = np.ascontiguousarray(embeddings, dtype=np.float16)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to the temporary name
            np.save(f, emb)

    _atomic(emb_path(root, modality, number), save)
    table = pa.table({"source_index": pa.array(rows["source_index"], pa.int64()),
                      "path": pa.array(rows["path"], pa.string()), "caption": pa.array(rows["caption"], pa.string())})
    table = table.replace_schema_metadata({SKIPS_KEY: json.dumps({"seen": seen, "skips": skips}).encode()})
    _atomic(meta_path(root, number), lambda p: pq.write_table(table, p))


def shard_done(root: Path, number: int) -> bool:
    return meta_path(root, number).is_file()


def read_shard(root: Path, modality: str, number: int, mmap: bool = True) -> Shard:
    """A complete shard; ``mmap`` keeps its embeddings on disk until touched (galleries larger than memory)."""
    meta = pq.read_table(meta_path(root, number))
    record = json.loads((meta.schema.metadata or {}).get(SKIPS_KEY, b'{"seen": 0, "skips": []}'))
    path = emb_path(root, modality, number)
    if not path.is_file():
        raise ConfigError(f"{root}: shard {number} has metadata but no {path.name}; delete "
                          f"{meta_path(root, number).name} and re-run `twostream embed` to redo it")
    emb = np.load(path, mmap_mode="r" if mmap else None)
    if emb.shape[0] != meta.num_rows:
        raise ConfigError(f"{path}: {emb.shape[0]} embeddings but {meta.num_rows} metadata rows (a file was replaced "
                          f"by hand?); delete both and re-run `twostream embed` to redo the shard")
    return Shard(number, emb, meta, int(record["seen"]), [tuple(s) for s in record["skips"]])


def read_manifest(root: str | Path) -> dict:
    """``embeddings.json`` of an embedded gallery, checked to be one (and complete)."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{root} is not an embedded gallery (no {MANIFEST}); `twostream embed --out {root} ...` "
                          f"writes one")
    manifest = json.loads(path.read_text())
    missing = [s for s in range(manifest["num_shards"]) if not shard_done(root, s)]
    if missing:
        raise ConfigError(f"{root}: {len(missing)} of {manifest['num_shards']} shards are not written yet (first: "
                          f"{missing[0]}; an interrupted `twostream embed`?): re-run the same embed command, it "
                          f"resumes from the missing shards")
    return manifest


def write_manifest(root: Path, manifest: dict) -> None:
    _atomic(root / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=1) + "\n"))


def iter_shards(root: str | Path, manifest: dict | None = None, mmap: bool = True) -> Iterator[Shard]:
    """Every shard of a complete gallery, in order, one at a time."""
    root = Path(root)
    manifest = manifest or read_manifest(root)
    for number in range(manifest["num_shards"]):
        yield read_shard(root, manifest["modality"], number, mmap)
