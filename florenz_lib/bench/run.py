"""`florenz bench`: every benchmark family on data it builds itself, one CSV per family and a Markdown
table in the output directory; the caller exits non-zero when a threshold is missed."""
from __future__ import annotations

import datetime
import logging
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import faiss
import torch

from . import FAMILIES
from .core import Row, write_csv, write_markdown

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sizes:
    tiny_models: bool
    train_images: int       # synthetic world train images (training rows, CLIP embedding); test rows: a quarter
    batch_size: int
    train_steps: int
    repeats: int
    align_images: int       # throughput: images x sentences, top-5
    align_sentences: int
    memory_images: int      # peak memory: images, sentences at 1x (then 4x, 16x)
    memory_sentences: int
    align_batch: int        # sentences per streamed batch (data.align.batch_size)
    growth_images: int      # align_part growth: images; sentences below
    growth_sentences: tuple[int, int, int]
    shard_images: tuple[int, int, int]
    translate_sentences: int
    translate_max_length: int
    clip_model: str | None   # open_clip architecture of the cc12m embedding bench (None: a tiny one)
    clip_images: int


SIZES = {
    "test": Sizes(tiny_models=True, train_images=32, batch_size=8, train_steps=3, repeats=1,
                  align_images=200, align_sentences=1000, memory_images=100, memory_sentences=512, align_batch=256,
                  growth_images=100, growth_sentences=(250, 1000, 4000), shard_images=(50, 200, 800),
                  translate_sentences=16, translate_max_length=12, clip_model=None, clip_images=16),
    "quick": Sizes(tiny_models=False, train_images=300, batch_size=16, train_steps=8, repeats=3,
                   align_images=4000, align_sentences=16384, memory_images=1000, memory_sentences=8192,
                   align_batch=4096, growth_images=2000, growth_sentences=(2000, 8000, 32000),
                   shard_images=(500, 2000, 8000), translate_sentences=256, translate_max_length=48,
                   clip_model="ViT-B-32", clip_images=16),
    "full": Sizes(tiny_models=False, train_images=1000, batch_size=16, train_steps=20, repeats=5,
                  align_images=20000, align_sentences=65536, memory_images=2000, memory_sentences=32768,
                  align_batch=8192, growth_images=4000, growth_sentences=(8000, 32000, 128000),
                  shard_images=(2000, 8000, 32000), translate_sentences=1024, translate_max_length=64,
                  clip_model="ViT-B-16", clip_images=16),
}


def _family(name: str, sizes: Sizes, root: Path, cache: dict) -> list[Row]:
    from . import alignment, evaluation, fixtures, shards, training, translation

    def data():
        if "data" not in cache:
            cache["data"] = fixtures.build_bench_data(root / "data", sizes.train_images, tiny=sizes.tiny_models)
        return cache["data"]

    if name == "training":
        return training.bench_training(data(), sizes.batch_size, sizes.train_steps, sizes.repeats)
    if name == "ce_eval":
        return evaluation.bench_ce(data(), 4 * sizes.batch_size, sizes.repeats)
    if name == "embedding":
        clip_dir = evaluation.build_clip_dir(data(), root / "clip")
        return (evaluation.bench_cc12m_embedding(root / "open_clip", sizes.clip_model, sizes.clip_images,
                                                 sizes.repeats)
                + evaluation.bench_world_embedding(data(), clip_dir, sizes.repeats))
    if name == "alignment":
        return alignment.bench_alignment(sizes.align_images, sizes.align_sentences, sizes.memory_images,
                                         sizes.memory_sentences, sizes.align_batch, 1_000_000, sizes.repeats)
    if name == "translation":
        from ..data.io import CORPUS_FILE, read_world_table
        english = read_world_table(data().world_dir, CORPUS_FILE, ["en"]).column("en").to_pylist()
        sentences = (english * (1 + sizes.translate_sentences // len(english)))[:sizes.translate_sentences]
        return translation.bench_translation(root / "m2m100", sentences, 64, sizes.translate_max_length, sizes.repeats)
    if name == "growth":
        return (alignment.bench_alignment_growth(sizes.growth_images, list(sizes.growth_sentences), sizes.align_batch,
                                                 sizes.repeats)
                + shards.bench_shard_growth(list(sizes.shard_images), 500, sizes.repeats))
    raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(FAMILIES)}")


def run_bench(out_dir, sizes_name: str = "full", only: list[str] | None = None) -> tuple[list[Row], str]:
    """Run the families (all, or `only`) at SIZES[sizes_name]; write out_dir/<family>.csv and
    out_dir/bench.md; return the rows and the Markdown text."""
    unknown = sorted(set(only or ()) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; known: {', '.join(FAMILIES)}")
    sizes = SIZES[sizes_name]
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    started = datetime.datetime.now().astimezone()
    load = os.getloadavg()
    out_dir = Path(out_dir)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="florenz-bench-") as tmp:
        cache: dict = {}
        for name in [f for f in FAMILIES if not only or f in only]:
            log.info("bench %s (%s sizes)", name, sizes_name)
            family_rows = _family(name, sizes, Path(tmp), cache)
            write_csv(family_rows, out_dir / f"{name}.csv")
            rows.extend(family_rows)
    notes = [
        f"Measured {started:%Y-%m-%d %H:%M %Z} on {platform.node()} ({os.cpu_count()} CPUs, load average "
        f"{load[0]:.2f} at start), `{sizes_name}` sizes; ratio = ours / theirs, each pair measured in one run on the "
        "same data, timings the median of alternating repeats after a warm-up.",
        "Both sides run on one thread: torch.set_num_threads(1), faiss.omp_set_num_threads(1), CTranslate2 "
        "intra_threads=1; peak memory is VmHWM of a fresh child process per side (interpreter and imports included).",
        "training: train_loop vs transformers Trainer (same model, pre-collated batches, AdamW, warmup + cosine, "
        "grad clip; no eval/save/logging), whole call timed; loader = BalancedImageStream + RankBatches + collation.",
        "ce_eval: evaluate_ce from the test parquets vs batch_ce on pre-collated batches of a loaded model.",
        "embedding: the cc12m stage embed_image_slice (random-weight open_clip ViT, JPEGs at its input size; model load, "
        "decoding, preprocessing and the npz included; decoding in the stage's one loader process beside the "
        "forward, as it runs by default) vs load_open_clip + encode_image on the same batch "
        "preprocessed beforehand (thresholded), and vs the forward alone; the synthetic world's embed_images vs "
        "its preloaded forward is informational.",
        "translation: random-weight M2M100 (NLLB architecture), float32, greedy; CTranslate2 translate_tokens vs "
        "transformers generate on the same sentences; the outputs are checked identical.",
        "growth: k is the OLS slope of log time on log N over sizes growing 4x (1.0 = linear).",
    ]
    text = write_markdown(rows, notes, out_dir / "bench.md")
    return rows, text


def missed(rows: list[Row]) -> list[str]:
    return [f"{r.family}: {r.name}: ratio {r.ratio:.3f}, needs {r.threshold}" for r in rows if r.passed is False]


def run_cli(args) -> int:
    rows, text = run_bench(args.out, args.sizes or ("quick" if args.quick else "full"), args.only)
    print(text)
    failures = missed(rows)
    if failures:
        print("florenz bench: missed threshold(s):\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0

