"""What ``twostream embed`` can embed: a split of the run's data, a folder of images or videos, a captions file.

Every source becomes a :class:`Gallery`: one modality and flat metadata rows (``source_index``,
``path``, ``caption``), plus a torch Dataset over any range of rows. Bad rows (an image or video
that does not decode, an empty caption) are not dropped here: the Dataset marks them ``ok=False``
with the reason under ``SKIPPED`` (:mod:`twostream.data.health`), and the writer leaves them out and
counts them, as training's readers do.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image
from torch.utils.data import Dataset

from twostream.data.health import SkipLog, SkipReason
from twostream.errors import ConfigError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
MODALITIES = ("image", "video", "text")


@dataclasses.dataclass
class Gallery:
    """Rows to embed: ``rows`` holds equal-length lists ``source_index``, ``path``, ``caption``."""

    modality: str
    rows: dict[str, list]
    description: dict[str, Any]
    reader: Callable[[str], torch.Tensor] | None = None  # path -> model input (images, videos)

    def __len__(self) -> int:
        return len(self.rows["source_index"])

    def fingerprint(self) -> str:
        """A hash of every row: a resumed embed must be of the very same rows."""
        digest = hashlib.sha256(self.modality.encode())
        for path, caption in zip(self.rows["path"], self.rows["caption"]):
            digest.update(f"{path}\0{caption}\n".encode())
        return digest.hexdigest()[:16]

    def dataset(self, start: int, stop: int) -> Dataset:
        if self.modality == "text":
            return CaptionRows(self.rows["caption"], start, stop)
        return FileRows(self.rows["path"], start, stop, self.reader, self.modality)


class CaptionRows(Dataset):
    """Captions ``start..stop``; an empty one is embedded as a space and marked not ok (counted as skipped)."""

    def __init__(self, captions: list[str], start: int, stop: int) -> None:
        self.captions, self.start, self.stop = captions, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> dict[str, Any]:
        row, log = self.start + i, SkipLog()
        caption = self.captions[row] or ""
        if not caption.strip():
            log.add(SkipReason.EMPTY_CAPTION, f"row {row}")
        return log.attach({"caption": caption if caption.strip() else " ", "row": row, "ok": bool(caption.strip())})


class FileRows(Dataset):
    """Image or video files ``start..stop`` through ``reader``; a file that fails is a blank input, marked not ok."""

    def __init__(self, paths: list[str], start: int, stop: int, reader: Callable[[str], torch.Tensor], modality: str):
        self.paths, self.start, self.stop, self.reader, self.modality = paths, start, stop, reader, modality
        self._blank: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> dict[str, Any]:
        row, log = self.start + i, SkipLog()
        path = self.paths[row]
        try:
            x = self.reader(path)
            self._blank = torch.zeros_like(x)
            return {"image": x, "row": row, "ok": True}
        except Exception as err:  # noqa: BLE001 - dirty data is skipped and counted, never a crash
            log.add(_reason(err, path, self.modality), os.path.basename(path))
        blank = self._blank if self._blank is not None else self._first_shape()
        return log.attach({"image": blank, "row": row, "ok": False})

    def _first_shape(self) -> torch.Tensor:
        """A zero input of the shape good files have (a batch must stack), found from the next good file."""
        for path in self.paths[self.start:self.stop]:
            try:
                self._blank = torch.zeros_like(self.reader(path))
                return self._blank
            except Exception:  # noqa: BLE001
                continue
        raise ConfigError(f"none of the {self.stop - self.start} files from {self.paths[self.start]} on could be read "
                          f"as {self.modality}s; check the folder and --modality")


def _reason(err: Exception, path: str, modality: str) -> str:
    if getattr(err, "reason", None):  # the video reader's VideoSkip says why
        return err.reason
    if isinstance(err, FileNotFoundError) or not os.path.exists(path):
        return SkipReason.MISSING_FILE
    return SkipReason.CORRUPT_IMAGE if modality == "image" else SkipReason.UNDECODABLE_VIDEO


class ImageReader:
    """path -> normalised image tensor, through the run's evaluation transform (picklable for workers)."""

    def __init__(self, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.transform = transform

    def __call__(self, path: str) -> torch.Tensor:
        with Image.open(path) as image:
            return self.transform(image.convert("RGB"))


def list_files(folder: Path, extensions: tuple[str, ...]) -> list[str]:
    """Every file under ``folder`` (recursively) with one of ``extensions``, sorted: a stable row order."""
    return sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in extensions and p.is_file())


def sidecar_caption(path: str) -> str | None:
    """The caption img2dataset writes beside an image (``name.txt``), if there is one."""
    txt = Path(path).with_suffix(".txt")
    return txt.read_text(errors="replace").strip() if txt.is_file() else None
