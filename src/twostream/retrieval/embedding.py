"""``twostream embed``: a gallery through a trained two-stream model into float16 shards (see :mod:`.shards`).

Why Lightning ``predict``: batching, device placement, precision and DDP come from the Trainer the
user configures (``--accelerator gpu --devices 4``), not from a loop of our own. Shards are the unit
of work: each is predicted, written atomically and never redone, so an interrupted run re-run with
the same command continues at the first missing shard (a changed model or source is refused).
"""
from __future__ import annotations

import datetime
import json
import math
import shutil
from collections import Counter
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from twostream.data.health import SKIPPED, DataQualityError, collate_with_skips, format_counts, pick_examples
from twostream.errors import ConfigError
from twostream.retrieval import shards
from twostream.retrieval.gallery import open_gallery
from twostream.retrieval.model import LoadedRun, load_run
from twostream.retrieval.sources import Gallery

FORMAT_VERSION = 1


class EmbeddingModule(L.LightningModule):
    """``predict_step`` of a TwoStreamEncoder: one modality's normalised embeddings, per row."""

    def __init__(self, encoder: L.LightningModule, modality: str) -> None:
        super().__init__()
        self.encoder, self.modality = encoder, modality

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if "caption" in batch:  # the text tower's own tokenizer, on the CPU, as in training
            batch.update(self.encoder.text.tokenize(list(batch["caption"])))
        return batch

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        if self.modality == "text":
            emb, _ = self.encoder.encode_text(batch["input_ids"], batch.get("attention_mask"))
        else:
            emb, _ = self.encoder.encode_image(batch["image"])
        return {"emb": emb.float(), "row": batch["row"], "ok": batch["ok"], "skips": batch.get(SKIPPED, [])}


class ShardCollector(BasePredictionWriter):
    """Keeps this process's predictions of the current shard (CPU, float16) and advances the progress bar."""

    def __init__(self, progress: tqdm | None) -> None:
        super().__init__(write_interval="batch")
        self.progress = progress
        self.reset()

    def reset(self) -> None:
        self.emb: list[np.ndarray] = []
        self.rows: list[np.ndarray] = []
        self.ok: list[np.ndarray] = []
        self.skips: dict[int, tuple[str, str]] = {}

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        rows, ok = prediction["row"].cpu().numpy(), prediction["ok"].cpu().numpy().astype(bool)
        self.emb.append(prediction["emb"].cpu().numpy().astype(np.float16))
        self.rows.append(rows)
        self.ok.append(ok)
        self.skips.update(zip(rows[~ok].tolist(), prediction["skips"]))  # each bad item carries its own skip
        if self.progress is not None:
            self.progress.update(len(rows) * trainer.world_size)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.rows:
            return np.zeros((0, 0), np.float16), np.zeros(0, np.int64), np.zeros(0, bool)
        return np.concatenate(self.emb), np.concatenate(self.rows), np.concatenate(self.ok)


def _trainer(collector: ShardCollector, accelerator: str, devices: int | str, precision: str | None) -> L.Trainer:
    return L.Trainer(accelerator=accelerator, devices=devices, precision=precision, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     callbacks=[collector])


def _manifest(run: LoadedRun, gallery: Gallery, shard_size: int) -> dict:
    return {"format": FORMAT_VERSION, "modality": gallery.modality, "num_rows": len(gallery),
            "num_shards": math.ceil(len(gallery) / shard_size), "shard_size": shard_size,
            "embed_dim": int(run.model.embed_dim), "dtype": "float16", "normalized": True,
            "model": {"checkpoint": str(run.checkpoint.resolve()), "sha256": run.sha256, "config": str(run.config),
                      "class": type(run.model).__name__},
            "source": {**gallery.description, "fingerprint": gallery.fingerprint()}}


def _prepare_out(out: Path, manifest: dict, overwrite: bool) -> None:
    """Refuse to mix two models or two sources in one folder; ``overwrite`` clears a previous gallery first."""
    old_path = out / shards.MANIFEST
    orphans = not old_path.is_file() and any((out / "metadata").glob("metadata_*.parquet"))
    if overwrite:
        for folder in ("img_emb", "text_emb", "metadata"):
            shutil.rmtree(out / folder, ignore_errors=True)
        old_path.unlink(missing_ok=True)
    elif orphans:
        raise ConfigError(f"--out {out} has shards but no {shards.MANIFEST} (what embedded them is unknown); pass "
                          f"--overwrite to replace them, or another --out")
    if old_path.is_file():
        old = json.loads(old_path.read_text())
        for key, what in (("model", "sha256"), ("source", "fingerprint"), ("shard_size", None), ("modality", None)):
            a, b = (old.get(key), manifest.get(key)) if what is None else (old[key].get(what), manifest[key].get(what))
            if a != b:
                raise ConfigError(f"--out {out} holds embeddings with another {key} ({a} there, {b} now); to resume, "
                                  f"re-run the command that wrote them; otherwise pass a new --out or --overwrite")
    else:
        out.mkdir(parents=True, exist_ok=True)
        shards.write_manifest(out, {**manifest, "created": datetime.datetime.now().isoformat(timespec="seconds")})


def _merge_parts(out: Path, number: int, trainer: L.Trainer, collector: ShardCollector):
    """This shard's rows from every process (DDP pads with repeats: each row kept once), in row order."""
    emb, rows, ok = collector.arrays()
    skips = dict(collector.skips)
    if trainer.world_size > 1:
        parts = out / ".parts"
        parts.mkdir(exist_ok=True)
        np.savez(parts / f"s{number}_r{trainer.global_rank}.npz", emb=emb, rows=rows, ok=ok,
                 skips=np.array([[str(r), *s] for r, s in skips.items()], dtype=str).reshape(-1, 3))
        trainer.strategy.barrier()
        if trainer.global_rank != 0:
            return None
        blobs = [np.load(parts / f"s{number}_r{r}.npz") for r in range(trainer.world_size)]
        emb, rows, ok = (np.concatenate([b[k] for b in blobs]) for k in ("emb", "rows", "ok"))
        skips = {int(r): (a, b) for blob in blobs for r, a, b in blob["skips"]}
    rows, first = np.unique(rows, return_index=True)
    return emb[first], rows, ok[first], skips


def _write_shard(out: Path, gallery: Gallery, number: int, merged) -> tuple[int, list]:
    emb, rows, ok, skips = merged
    keep = rows[ok]
    meta = {k: [gallery.rows[k][r] for r in keep.tolist()] for k in shards.COLUMNS}
    bad = [tuple(skips[r]) for r in rows[~ok].tolist()]
    shards.write_shard(out, gallery.modality, number, emb[ok], meta, seen=len(rows), skips=bad)
    return len(rows), bad


def _check_quality(seen: int, skips: list, max_bad_fraction: float, out: Path, final: bool) -> None:
    """Stop when too much is bad (once enough is seen to tell): the message names examples and the setting."""
    if not skips or seen == 0 or len(skips) / seen <= max_bad_fraction or (seen < 1000 and not final):
        return
    shown = ", ".join(f"{r}:{k}" for r, k in pick_examples(skips, 5))
    counts = format_counts(Counter(r for r, _ in skips))
    raise DataQualityError(f"embed: {len(skips):,} of {seen:,} rows ({100 * len(skips) / seen:.1f}%) could not be "
                           f"read ({counts}), more than --max-bad-fraction {max_bad_fraction} allows; e.g. {shown}. "
                           f"Fix the files, or re-run with a higher --max-bad-fraction: the {out} shards "
                           f"written so far are kept")


def embed(out: str | Path, ckpt: str | Path | None = None, *, source: str | None = None, split: str | None = None,
          modality: str | None = None, configs: list[str] | None = None, caption_column: str = "caption",
          path_column: str | None = None, shard_size: int = 10_000, batch_size: int = 256, num_workers: int = 0,
          accelerator: str = "auto", devices: int | str = 1, precision: str | None = None,
          max_bad_fraction: float = 0.05, overwrite: bool = False, progress: bool = True) -> dict:
    """Embed a gallery into ``out``; returns the finished manifest (with counts). See the module docstring."""
    if shard_size < 1 or batch_size < 1:
        raise ConfigError(f"--shard-size and --batch-size must be >= 1 (got {shard_size}, {batch_size})")
    if (source is None) == (split is None):  # before the (slow) model load
        raise ConfigError("embed: give exactly one of --split (train/val/test of the run's data) or --source "
                          "(a folder of images/videos, a .txt/.csv/.tsv/.parquet file of captions)")
    out = Path(out)
    run = load_run(ckpt, configs)
    gallery = open_gallery(run, source, split, modality, caption_column, path_column)
    manifest = _manifest(run, gallery, shard_size)
    _prepare_out(out, manifest, overwrite)
    todo = [s for s in range(manifest["num_shards"]) if not shards.shard_done(out, s)]
    done_rows = sum(min(shard_size, len(gallery) - s * shard_size) for s in range(manifest["num_shards"]) if s not in todo)
    bar = tqdm(total=len(gallery), initial=done_rows, desc=f"embedding {gallery.modality}s", unit=gallery.modality,
               disable=not progress)
    collector = ShardCollector(bar)
    trainer = _trainer(collector, accelerator, devices, precision)
    module = EmbeddingModule(run.model, gallery.modality)
    seen, skips = _previous_skips(out, manifest, todo)
    for number in todo:
        start, stop = number * shard_size, min(len(gallery), (number + 1) * shard_size)
        loader = DataLoader(gallery.dataset(start, stop), batch_size=batch_size, num_workers=num_workers,
                            collate_fn=collate_with_skips)
        collector.reset()
        trainer.predict(module, dataloaders=loader, return_predictions=False)
        merged = _merge_parts(out, number, trainer, collector)
        if merged is not None:
            n, bad = _write_shard(out, gallery, number, merged)
            seen, skips = seen + n, skips + bad
            _check_quality(seen, skips, max_bad_fraction, out, final=False)
        trainer.strategy.barrier()
    bar.close()
    return _finish(out, manifest, seen, skips, max_bad_fraction, resumed=manifest["num_shards"] - len(todo))


def _previous_skips(out: Path, manifest: dict, todo: list[int]) -> tuple[int, list]:
    """Rows seen and skipped in the shards an earlier run already wrote (a resumed run reports the whole gallery)."""
    seen, skips = 0, []
    for number in range(manifest["num_shards"]):
        if number not in todo:
            shard = shards.read_shard(out, manifest["modality"], number)
            seen, skips = seen + shard.seen, skips + shard.skips
    return seen, skips


def _finish(out: Path, manifest: dict, seen: int, skips: list, max_bad_fraction: float, resumed: int) -> dict:
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return manifest
    shutil.rmtree(out / ".parts", ignore_errors=True)
    _check_quality(seen, skips, max_bad_fraction, out, final=True)
    old = shards.read_manifest(out)
    done = {**old, "num_embedded": seen - len(skips), "num_skipped": len(skips),
            "skipped": dict(Counter(r for r, _ in skips)), "resumed_shards": resumed}
    shards.write_manifest(out, done)
    counts = f"; skipped {len(skips):,} ({format_counts(Counter(r for r, _ in skips))})" if skips else ""
    print(f"embed: {done['num_embedded']:,} {manifest['modality']} embeddings in {manifest['num_shards']} shard(s) "
          f"-> {out} ({resumed} shard(s) from an earlier run){counts}")
    return done
