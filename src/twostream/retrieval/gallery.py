"""From ``twostream embed``'s arguments to a :class:`~twostream.retrieval.sources.Gallery`.

Which readers: a video run (``VideoTower``) reads videos with its datamodule's clip reader, every
other run reads images with its datamodule's evaluation transform, so an embedded gallery sees
exactly what evaluation saw. Paths are stored absolute: a server started elsewhere still finds them.
"""
from __future__ import annotations

import os
from pathlib import Path

from twostream.errors import ConfigError
from twostream.retrieval.model import LoadedRun
from twostream.retrieval.sources import (IMAGE_EXTENSIONS, MODALITIES, TABLE_SUFFIXES, VIDEO_EXTENSIONS, Gallery,
                                         ImageReader, list_files, sidecar_caption)


def is_video_model(model) -> bool:
    from twostream.towers.video import VideoTower

    return isinstance(getattr(model, "vision", None), VideoTower)


def file_reader(run: LoadedRun, modality: str):
    """path -> model input for the run's vision side (a clip for a video run, an image otherwise)."""
    data = run.datamodule
    if modality == "video":
        if not hasattr(data, "clip_reader"):
            raise ConfigError(f"the run's datamodule {type(data).__name__} has no clip_reader; embed videos with a "
                              f"video run (experiments/pretrain/video.yaml)")
        return data.clip_reader()
    if hasattr(data, "image_transform"):
        return ImageReader(data.image_transform())
    from twostream.data import CLIP_MEAN, CLIP_STD, build_image_transform

    size = getattr(run.model.vision, "image_size", (224, 224))
    return ImageReader(build_image_transform(size[0] if isinstance(size, tuple) else size, CLIP_MEAN, CLIP_STD))


def open_gallery(run: LoadedRun, source: str | None = None, split: str | None = None, modality: str | None = None,
                 caption_column: str = "caption", path_column: str | None = None) -> Gallery:
    """The gallery a source names: ``split`` of the run's data, or ``source`` (a folder, .txt, .csv/.tsv, .parquet)."""
    if (source is None) == (split is None):
        raise ConfigError("embed: give exactly one of --split (train/val/test of the run's data) or --source "
                          "(a folder of images/videos, a .txt/.csv/.tsv/.parquet file of captions)")
    if modality is not None and modality not in MODALITIES:
        raise ConfigError(f"--modality {modality!r}; valid: {', '.join(MODALITIES)}")
    vision = "video" if is_video_model(run.model) else "image"
    if modality in ("image", "video") and modality != vision:
        raise ConfigError(f"--modality {modality}: this run's vision tower embeds {vision}s; use --modality {vision} "
                          f"or text")
    modality = modality or (vision if split or Path(source).is_dir() or _has_paths(source, path_column) else "text")
    if split is not None:
        gallery = _split_rows(run, split, modality)
    else:
        gallery = _source_rows(Path(source), modality, vision, caption_column, path_column)
    if len(gallery) == 0:
        raise ConfigError(f"embed: {gallery.description} has nothing to embed (no {modality} rows)")
    if modality != "text":
        gallery.reader = file_reader(run, modality)
    return gallery


def _split_rows(run: LoadedRun, split: str, modality: str) -> Gallery:
    data = run.datamodule
    if not hasattr(data, "get_split"):
        raise ConfigError(f"--split: the run's datamodule {type(data).__name__} has no splits to read; use --source")
    data.prepare_data()
    s = data.get_split(split)
    described = {"kind": "split", "split": split, "datamodule": type(data).__name__, "config": str(run.config)}
    if modality == "text":
        rows = {"source_index": list(range(s.num_captions)), "caption": list(s.captions),
                "path": [os.path.abspath(s.image_paths[i]) for i in s.text_to_image]}
    else:
        first = {}
        for text, image in zip(s.captions, s.text_to_image):
            first.setdefault(image, text)
        rows = {"source_index": list(range(s.num_images)), "path": [os.path.abspath(p) for p in s.image_paths],
                "caption": [first.get(i) for i in range(s.num_images)]}
    return Gallery(modality, rows, described)


def _source_rows(path: Path, modality: str, vision: str, caption_column: str, path_column: str | None) -> Gallery:
    described = {"kind": "folder" if path.is_dir() else path.suffix.lstrip("."), "source": str(path.resolve())}
    if path.is_dir():
        if modality == "text":
            raise ConfigError(f"--source {path} is a folder: embed its {vision}s (no --modality text), or give a "
                              f"captions file")
        files = list_files(path.resolve(), VIDEO_EXTENSIONS if vision == "video" else IMAGE_EXTENSIONS)
        rows = {"source_index": list(range(len(files))), "path": files,
                "caption": [sidecar_caption(f) for f in files]}
        return Gallery(modality, rows, described)
    if not path.is_file():
        raise ConfigError(f"--source {path} does not exist (a folder of images/videos or a captions file)")
    if path.suffix.lower() == ".txt":
        lines = path.read_text(errors="replace").splitlines()
        return Gallery("text", {"source_index": list(range(len(lines))), "path": [None] * len(lines),
                                "caption": lines}, described)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise ConfigError(f"--source {path}: unknown kind {path.suffix!r}; give a folder, .txt, .csv, .tsv or .parquet")
    return Gallery(modality, _table_rows(path, modality, caption_column, path_column), described)


def _read_table(path: Path):
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if path.suffix.lower() == ".parquet":
        return pq.read_table(path)
    options = pcsv.ParseOptions(delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    return pcsv.read_csv(path, parse_options=options)


PATH_COLUMNS = ("path", "image", "filepath", "file", "video")


def _path_column(columns: list[str], given: str | None) -> str | None:
    if given is not None:
        return given
    return next((c for c in PATH_COLUMNS if c in columns), None)


def _has_paths(source: str, path_column: str | None) -> bool:
    path = Path(source)
    if path.suffix.lower() not in TABLE_SUFFIXES or not path.is_file():
        return False
    return _path_column(_read_table(path).column_names, path_column) is not None


def _table_rows(path: Path, modality: str, caption_column: str, path_column: str | None) -> dict[str, list]:
    table = _read_table(path)
    columns = table.column_names
    path_col = _path_column(columns, path_column)
    if path_column is not None and path_column not in columns:
        raise ConfigError(f"--path-column {path_column!r} is not a column of {path}; columns: {', '.join(columns)}")
    if modality == "text" and caption_column not in columns:
        raise ConfigError(f"--caption-column {caption_column!r} is not a column of {path}; columns: {', '.join(columns)}")
    if modality != "text" and path_col is None:
        raise ConfigError(f"{path} has no column of file paths (looked for {', '.join(PATH_COLUMNS)}); name it with "
                          f"--path-column")
    n = table.num_rows
    captions = [None if c is None else str(c) for c in table.column(caption_column).to_pylist()] \
        if caption_column in columns else [None] * n
    paths = [None] * n
    if path_col is not None:  # relative paths are relative to the file's folder
        paths = [None if p is None else str((path.parent / str(p)).resolve()) for p in table.column(path_col).to_pylist()]
    return {"source_index": list(range(n)), "path": paths, "caption": captions}
