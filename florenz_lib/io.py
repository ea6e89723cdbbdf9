"""Small file helpers shared by every stage: checked reads, atomic writes and PNG decoding."""
from __future__ import annotations

import contextlib
import io
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def require_file(path: str | os.PathLike) -> Path:
    """Return `path` as a Path; FileNotFoundError naming it if it is not an existing file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"required input file is missing: {path}")
    return path


def require_columns(path: str | os.PathLike, columns: Iterable[str]) -> pq.ParquetFile:
    """Open a parquet file for streaming, failing if it is missing or lacks any of `columns`.

    A missing file raises FileNotFoundError naming it; missing columns raise KeyError naming
    the file, the missing columns and the columns present.
    """
    parquet = pq.ParquetFile(require_file(path))
    present = parquet.schema_arrow.names
    missing = [c for c in columns if c not in present]
    if missing:
        raise KeyError(f"{path}: missing column(s) {missing}; present: {sorted(present)}")
    return parquet


def read_parquet(path: str | os.PathLike, columns: Iterable[str]) -> pa.Table:
    """Read the named columns, checked as by `require_columns`."""
    columns = list(columns)
    return require_columns(path, columns).read(columns=columns)


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move it over `path` with os.replace.

    The temporary file lives in the same directory (os.replace is atomic only within one
    file system) and keeps the extension, so writers that infer the format from the suffix
    (matplotlib, np.savez) still work. The writer creates it, so its permissions follow the
    umask like any other output. On failure the temporary file is removed and `path` is
    untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = target.with_name(f".{target.stem}.{uuid.uuid4().hex}.tmp{target.suffix}")
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_json(obj, path: str | os.PathLike) -> None:
    """Write `obj` atomically as indented, key-sorted JSON with a trailing newline."""
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def read_json(path: str | os.PathLike):
    with open(require_file(path), encoding="utf-8") as f:
        return json.load(f)


def write_parquet(table: pa.Table, path: str | os.PathLike, compression: str = "zstd") -> None:
    with replacing(path) as tmp:
        pq.write_table(table, tmp, compression=compression)


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    # Written through a handle so np.savez never renames the file (it appends ".npz" to
    # names lacking it).
    with replacing(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def decode_png(png: bytes) -> Image.Image:
    """Decode PNG bytes to an RGB PIL image."""
    return Image.open(io.BytesIO(png)).convert("RGB")


def stored_megabytes(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> float:
    """Size in MB of the files at or under `paths`, following symlinks (a linked Gemma checkpoint counts
    its shards); paths that do not exist yet count 0."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    total = 0
    for path in map(Path, paths):
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
        total += sum(f.stat().st_size for f in files)
    return total / 1e6
