"""Alignment: the project's streamed FAISS top-k (florenz_lib.cc12m.align, both worlds' alignment) against one IndexFlatIP
search over everything in memory, in throughput and in peak memory as the number of sentences grows;
and the cost growth of the whole align_part stage (time ~ N^k)."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

from ..cc12m.align import NpzRowReader, align_part, streamed_top_k
from ..data.io import CORPUS_COLUMNS
from ..io import write_npz, write_parquet
from .core import Row, fit_exponent, make_row, median_seconds, paired_seconds, peak_memory_mb

log = logging.getLogger(__name__)

DIM = 512  # open_clip ViT-B/16's embedding width
TOP_K = 5


def unit_rows(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    """n random L2-normalised float16 rows (the embedding stage's storage format)."""
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)


def write_embeddings(path, n: int, seed: int, prefix: str) -> Path:
    """An embedding npz as the embedding stage writes it: ids (str) and emb (float16, normalised)."""
    ids = np.array([f"{prefix}-{i:09d}" for i in range(n)], dtype=str)
    write_npz(path, ids=ids, emb=unit_rows(n, seed))
    return Path(path)


def streamed_search(images_npz: str, sentences_npz: str, batch_size: int, image_block_size: int) -> int:
    """The project's path: sentence embeddings read from the npz batch by batch, streamed_top_k."""
    faiss.omp_set_num_threads(1)
    with np.load(images_npz) as npz:
        images = npz["emb"]
    with NpzRowReader(sentences_npz, ("emb",)) as reader:
        batches = (reader.read(batch_size)["emb"] for _ in range(0, reader.rows, batch_size))
        return sum(len(rows) for _, rows in streamed_top_k(images, batches, TOP_K, image_block_size, use_gpu=False))


def in_memory_search(images_npz: str, sentences_npz: str) -> int:
    """What a user would otherwise write: load everything, one IndexFlatIP, one search."""
    faiss.omp_set_num_threads(1)
    with np.load(images_npz) as npz:
        images = npz["emb"].astype(np.float32)
    with np.load(sentences_npz) as npz:
        sentences = npz["emb"].astype(np.float32)
    index = faiss.IndexFlatIP(images.shape[1])
    index.add(images)
    _, rows = index.search(sentences, TOP_K)
    return len(rows)


def bench_alignment(n_images: int, n_sentences: int, memory_images: int, memory_sentences: int, batch_size: int,
                    image_block_size: int, repeats: int) -> list[Row]:
    """Throughput at n_images x n_sentences; peak memory (each side in its own process) at 1x, 4x and
    16x memory_sentences against memory_images images."""
    faiss.omp_set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="florenz-bench-align-") as tmp:
        tmp = Path(tmp)
        images = str(write_embeddings(tmp / "images.npz", n_images, 1, "img"))
        sentences = str(write_embeddings(tmp / "sentences.npz", n_sentences, 2, "pair"))
        ours_s, theirs_s = paired_seconds(lambda: streamed_search(images, sentences, batch_size, image_block_size),
                                          lambda: in_memory_search(images, sentences), repeats)
        rows.append(make_row("alignment", f"top-{TOP_K} throughput ({n_images} images)", n_sentences / ours_s,
                             n_sentences / theirs_s, "sentences/s", ">=", 0.9))

        memory_images_npz = str(write_embeddings(tmp / "memory_images.npz", memory_images, 3, "img"))
        peaks = {}
        for factor in (1, 4, 16):
            path = str(write_embeddings(tmp / f"sentences_{factor}x.npz", factor * memory_sentences, 4 + factor, "pair"))
            peaks[factor] = (
                peak_memory_mb("florenz_lib.bench.alignment:streamed_search",
                               {"images_npz": memory_images_npz, "sentences_npz": path, "batch_size": batch_size,
                                "image_block_size": image_block_size}),
                peak_memory_mb("florenz_lib.bench.alignment:in_memory_search",
                               {"images_npz": memory_images_npz, "sentences_npz": path}))
            Path(path).unlink()
            rows.append(make_row("alignment", f"peak memory at {factor}x ({factor * memory_sentences} sentences)",
                                 peaks[factor][0], peaks[factor][1], "MiB"))
        rows.append(make_row("alignment", "streamed peak memory growth 1x -> 16x", peaks[16][0], peaks[1][0], "MiB",
                             "<=", 1.2))
        rows.append(make_row("alignment", "in-memory peak memory growth 1x -> 16x", peaks[16][1], peaks[1][1], "MiB"))
    log.info("alignment: streamed %.2fs, in-memory %.2fs; peaks %s", ours_s, theirs_s, peaks)
    return rows


def _write_align_inputs(directory: Path, n_images: int, n_sentences: int, seed: int):
    """One image slice (all train) and one corpus chunk of n_sentences distinct pairs with embeddings."""
    keys = [f"{i:016x}" for i in range(n_images)]
    images_parquet = directory / "slice-00000.parquet"
    write_parquet(pa.table({"key": keys, "split": ["train"] * n_images}), images_parquet)
    images_npz = directory / "slice-00000.npz"
    write_npz(images_npz, ids=np.array(keys, dtype=str), emb=unit_rows(n_images, seed))
    pair_ids = [f"de-{i:09d}" for i in range(n_sentences)]
    corpus = {"pair_id": pair_ids, "split": ["train"] * n_sentences, "lang": ["de"] * n_sentences,
              "en": [f"english sentence number {i}" for i in range(n_sentences)],
              "text": [f"deutscher Satz Nummer {i}" for i in range(n_sentences)]}
    corpus_parquet = directory / "de-000.parquet"
    write_parquet(pa.table({c: corpus[c] for c in CORPUS_COLUMNS}), corpus_parquet)
    sentences_npz = directory / "de-000.npz"
    write_npz(sentences_npz, ids=np.array(pair_ids, dtype=str), emb=unit_rows(n_sentences, seed + 1))
    return [(images_parquet, images_npz)], [(corpus_parquet, sentences_npz)]


def bench_alignment_growth(n_images: int, sentence_sizes: list[int], batch_size: int, repeats: int) -> list[Row]:
    """align_part (search, dedup, capacity, parquet output) timed at each number of sentences."""
    faiss.omp_set_num_threads(1)
    align_cfg = {"top_k": TOP_K, "max_translations_per_image": 8, "min_similarity": 0.0, "batch_size": batch_size,
                 "image_block_size": 1_000_000}
    seconds = []
    with tempfile.TemporaryDirectory(prefix="florenz-bench-align-growth-") as tmp:
        for n in sentence_sizes:
            directory = Path(tmp) / str(n)
            directory.mkdir()
            image_slices, chunks = _write_align_inputs(directory, n_images, n, seed=n)
            # the first size also warms up (imports, faiss and BLAS initialisation)
            seconds.append(median_seconds(lambda: align_part("train", image_slices, chunks, align_cfg, directory / "out",
                                                             directory / "stats.json", use_gpu=False),
                                          repeats, warmup=int(n == sentence_sizes[0])))
    k = fit_exponent(sentence_sizes, seconds)
    log.info("align_part growth: sizes %s seconds %s k %.3f", sentence_sizes, seconds, k)
    return [make_row("growth", f"align_part exponent k (time ~ N^k, N = {sentence_sizes} sentences)", k, 1.0,
                     "exponent", "<=", 1.1)]

