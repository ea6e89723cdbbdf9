"""The world's file and column names, and a checked reader for its tables.

Generic file helpers (checked reads, atomic writes, PNG decoding) live in `florenz_lib.io`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import pyarrow as pa

from ..io import read_parquet

IMAGES_FILE = "images.parquet"
CAPTIONS_FILE = "captions.parquet"
CORPUS_FILE = "corpus.parquet"

IMAGE_COLUMNS = ("key", "split", "png")
CAPTION_COLUMNS = ("key", "lang", "text")
CORPUS_COLUMNS = ("pair_id", "split", "lang", "en", "text")
ALIGNMENT_COLUMNS = ("pair_id", "key", "score", "rank")


def read_world_table(world_dir: str | os.PathLike, name: str, columns: Iterable[str]) -> pa.Table:
    return read_parquet(Path(world_dir) / name, columns)
