"""Cost growth of shard writing: florenz_lib.cc12m.splits.write_slice_shards timed at sizes growing 4x,
with the fitted exponent k of time ~ N^k (N images, with 2 captions and 2 aligned pairs each)."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..cc12m.align import CC12M_ALIGNMENT_SCHEMA
from ..cc12m.splits import write_slice_shards
from ..io import write_parquet
from .core import Row, fit_exponent, make_row, median_seconds

log = logging.getLogger(__name__)

PAIRS_PER_IMAGE = 2
IMAGE_BYTES = 3000  # about a 64 px JPEG


def _write_slice_inputs(directory: Path, n_images: int, seed: int) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(seed)
    keys = [f"{i:016x}" for i in range(n_images)]
    images = directory / "slice-00000.parquet"
    write_parquet(pa.table({"key": keys, "split": ["train"] * n_images,
                            "png": [rng.bytes(IMAGE_BYTES) for _ in keys],
                            "url": [f"http://example.invalid/{k}.jpg" for k in keys]}), images)
    captions = directory / "captions.parquet"
    write_parquet(pa.table({"key": [k for k in keys for _ in ("en", "de")], "lang": ["en", "de"] * n_images,
                            "text": [f"{lang} caption of image {k}" for k in keys for lang in ("en", "de")]}), captions)
    n_pairs = PAIRS_PER_IMAGE * n_images
    alignment = directory / "alignment"
    alignment.mkdir()
    write_parquet(pa.table({
        "pair_id": [f"es-{i:09d}" for i in range(n_pairs)],
        "key": [keys[i % n_images] for i in range(n_pairs)],
        "score": rng.random(n_pairs, dtype=np.float32),
        "rank": np.zeros(n_pairs, dtype=np.int32),
        "lang": ["es"] * n_pairs,
        "en": [f"english sentence {i}" for i in range(n_pairs)],
        "text": [f"frase {i}" for i in range(n_pairs)],
        "slice": np.zeros(n_pairs, dtype=np.int32),
    }, schema=CC12M_ALIGNMENT_SCHEMA), alignment / "es-000.parquet")
    return images, captions, alignment


def bench_shard_growth(image_sizes: list[int], shard_size: int, repeats: int) -> list[Row]:
    seconds = []
    with tempfile.TemporaryDirectory(prefix="florenz-bench-shards-") as tmp:
        for n in image_sizes:
            directory = Path(tmp) / str(n)
            directory.mkdir()
            images, captions, alignment = _write_slice_inputs(directory, n, seed=n)
            # the first size also warms up (imports, first parquet reads)
            seconds.append(median_seconds(lambda: write_slice_shards(0, images, captions, alignment, shard_size,
                                                                     directory / "shards"),
                                          repeats, warmup=int(n == image_sizes[0])))
    k = fit_exponent(image_sizes, seconds)
    log.info("write_slice_shards growth: sizes %s seconds %s k %.3f", image_sizes, seconds, k)
    return [make_row("growth", f"write_slice_shards exponent k (time ~ N^k, N = {image_sizes} images)", k, 1.0,
                     "exponent")]
