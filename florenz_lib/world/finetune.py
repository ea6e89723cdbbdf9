"""The world's downstream fine-tuning mix: new scenes annotated with every task in every language.

The pretraining data has captions only in en and de; the paper fine-tunes on a mix with full
task-language coverage (Multi30K, COCO Karpathy, Image Paragraph, DOCCI, missing languages filled
by machine translation). The world's analogue: scenes from their own seeded stream (never in
pretraining or a benchmark), each with a caption in all six languages and the image-grounded
translations en->{de, fr, es, ru, zh} of its English caption (as Multi30K pairs an image with
an English sentence and its translations). Written as training shards (the trainer's format).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from ..data.shards import SHARD_PATTERN, SHARD_SCHEMA, STATS_FILE
from ..io import write_json, write_parquet
from .generate import TARGET_LANGS, _png_bytes
from .grammar import LANGS, N_TEMPLATES, describe
from .render import render_scene
from .scene import sample_scene

_FINETUNE_STREAM = 4  # the world uses 0-1, the benchmarks 2-3
FINETUNE_KEYS = tuple(f"caption-{lang}" for lang in LANGS) + tuple(f"translation-{lang}" for lang in TARGET_LANGS)


def finetune_annotations(scene, variant: int) -> list[dict]:
    """Captions in every language, then the translations of the English caption (one template family)."""
    texts = {lang: describe(scene, lang, variant) for lang in LANGS}
    return ([{"task": "caption", "lang": lang, "source": "", "target": texts[lang]} for lang in LANGS]
            + [{"task": "translation", "lang": lang, "source": texts["en"], "target": texts[lang]}
               for lang in TARGET_LANGS])


def write_finetune_shards(world_cfg: dict, n_images: int, shard_size: int, seed: int,
                          out_dir: str | os.PathLike) -> dict:
    """Write the mix as shard-*.parquet (SHARD_SCHEMA) plus stats.json under out_dir; return the stats."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    rng = np.random.default_rng([seed, _FINETUNE_STREAM])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("shard-*.parquet"):
        stale.unlink()
    rows, shards, counts = [], [], Counter()
    for number in tqdm(range(n_images), desc="fine-tuning mix", unit="img"):
        scene = sample_scene(rng, world_cfg["max_objects"])
        annotations = finetune_annotations(scene, int(rng.integers(N_TEMPLATES)))
        counts.update(f"{a['task']}-{a['lang']}" for a in annotations)
        rows.append({"key": f"ft-{number:06d}", "png": _png_bytes(render_scene(scene, world_cfg["image_size"])),
                     "annotations": annotations})
        if len(rows) == shard_size or number == n_images - 1:
            name = SHARD_PATTERN.format(len(shards))
            write_parquet(pa.Table.from_pylist(rows, schema=SHARD_SCHEMA), out / name)
            shards.append({"file": name, "rows": len(rows)})
            rows = []
    stats = {"images": n_images, "shards": shards, "rows": sum(s["rows"] for s in shards),
             "annotations": dict(sorted(counts.items())), "seed_stream": [seed, _FINETUNE_STREAM]}
    if stats["rows"] != n_images or set(counts) != set(FINETUNE_KEYS):
        raise AssertionError(f"fine-tuning mix does not reconcile: {stats}")
    write_json(stats, out / STATS_FILE)
    return stats
