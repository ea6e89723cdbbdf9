"""Shared input checks and atomic writers for the data rule group."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

IMAGES_FILE = "images.parquet"
CAPTIONS_FILE = "captions.parquet"
CORPUS_FILE = "corpus.parquet"

IMAGE_COLUMNS = ("key", "split", "png")
CAPTION_COLUMNS = ("key", "lang", "text")
CORPUS_COLUMNS = ("pair_id", "split", "lang", "en", "text")
ALIGNMENT_COLUMNS = ("pair_id", "key", "score", "rank")


def require_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"required input file is missing: {path}")
    return path


def require_columns(path: str | os.PathLike, columns: Iterable[str]) -> pq.ParquetFile:
    """Open a parquet file, failing with the file and column names if any column is absent."""
    parquet = pq.ParquetFile(require_file(path))
    present = set(parquet.schema_arrow.names)
    missing = [c for c in columns if c not in present]
    if missing:
        raise KeyError(f"{path}: missing column(s) {missing}; present: {sorted(present)}")
    return parquet


def read_columns(path: str | os.PathLike, columns: Iterable[str]) -> pa.Table:
    columns = list(columns)
    return require_columns(path, columns).read(columns=columns)


def read_world_table(world_dir: str | os.PathLike, name: str, columns: Iterable[str]) -> pa.Table:
    return read_columns(Path(world_dir) / name, columns)


def decode_png(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png)).convert("RGB")


def _temp_path_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    return Path(temp)


class atomic_path:
    """Context manager yielding a temp path beside `path`; renamed onto it only on success."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.temp = _temp_path_beside(self.path)
        return self.temp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.temp, self.path)
        else:
            self.temp.unlink(missing_ok=True)


def write_json(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_parquet(table: pa.Table, path: str | os.PathLike) -> None:
    with atomic_path(path) as temp:
        pq.write_table(table, temp, compression="zstd")


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    # np.savez appends ".npz" to names lacking it, so the temp file is written via a handle.
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        np.savez(handle, **arrays)
