"""Small file helpers shared by every stage: checked parquet reads and atomic writes."""
from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def read_parquet(path: str, columns: list[str]) -> pa.Table:
    """Read the named columns; a missing file or column is an error naming it."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"input file not found: {path}")
    names = pq.read_schema(path).names
    missing = [c for c in columns if c not in names]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing} (has {names})")
    return pq.read_table(path, columns=columns)


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move it over `path` with os.replace.

    The temporary file lives in the same directory (os.replace is atomic only within one
    file system) and keeps the extension, so writers that infer the format from the suffix
    (matplotlib) still work. The writer creates it, so its permissions follow the umask like
    any other output. On failure the temporary file is removed and `path` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = target.with_name(f".{target.stem}.{uuid.uuid4().hex}.tmp{target.suffix}")
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_json(obj, path: str) -> None:
    with replacing(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def read_json(path: str):
    if not os.path.exists(path):
        raise FileNotFoundError(f"input file not found: {path}")
    with open(path) as f:
        return json.load(f)
