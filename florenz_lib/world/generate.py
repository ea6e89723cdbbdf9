"""Writes the synthetic world: rendered images, their captions, and a text-only parallel
corpus about other scenes, as parquet files plus world_stats.json.

Images, captions and corpus draw from separate seeded streams, so changing the corpus size
does not change the images. Same cfg + seed gives byte-identical files.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from ..io import write_json, write_parquet
from .grammar import LANGS, N_TEMPLATES, describe
from .render import render_scene
from .scene import MAX_GROUPS, sample_scene, scene_to_json

IMAGES_FILE = "images.parquet"
CAPTIONS_FILE = "captions.parquet"
CORPUS_FILE = "corpus.parquet"
STATS_FILE = "world_stats.json"

# Only these captioning languages are seen in training; held-out images get all languages.
TRAIN_CAPTION_LANGS = ("en", "de")
TARGET_LANGS = tuple(lang for lang in LANGS if lang != "en")
# Independent random streams (SeedSequence entropy [seed, stream]).
_IMAGE_STREAM = 0
_CORPUS_STREAM = 1

IMAGES_SCHEMA = pa.schema([("key", pa.string()), ("split", pa.string()), ("png", pa.binary()), ("scene", pa.string())])
CAPTIONS_SCHEMA = pa.schema([("key", pa.string()), ("lang", pa.string()), ("text", pa.string())])
CORPUS_SCHEMA = pa.schema([
    ("pair_id", pa.string()), ("split", pa.string()), ("lang", pa.string()),
    ("en", pa.string()), ("text", pa.string()), ("scene", pa.string()),
])


def validate_world_config(cfg: dict) -> None:
    """Raise ValueError naming the first invalid key."""
    minimums = {
        "image_size": 16,
        "max_objects": 1,
        "n_train_images": 1,
        "n_heldout_images": 0,
        "n_corpus_pairs": 0,
        "n_heldout_corpus_pairs": 0,
    }
    for key, minimum in minimums.items():
        if key not in cfg:
            raise ValueError(f"world config is missing key {key!r}")
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"world config key {key!r} must be an integer >= {minimum}, got {value!r}")
    if cfg["max_objects"] > MAX_GROUPS:
        raise ValueError(f"world config key 'max_objects' must be <= {MAX_GROUPS}, got {cfg['max_objects']!r}")


def _png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _count_by(values: list[str]) -> dict[str, int]:
    return {value: values.count(value) for value in sorted(set(values))}


def _images_and_captions(cfg: dict, rng: np.random.Generator) -> tuple[dict, dict]:
    images = {"key": [], "split": [], "png": [], "scene": []}
    captions = {"key": [], "lang": [], "text": []}
    splits = ["train"] * cfg["n_train_images"] + ["heldout"] * cfg["n_heldout_images"]
    for index, split in enumerate(tqdm(splits, desc="world images", unit="img")):
        scene = sample_scene(rng, cfg["max_objects"])
        variant = int(rng.integers(N_TEMPLATES))
        key = f"img-{index:06d}"
        images["key"].append(key)
        images["split"].append(split)
        images["png"].append(_png_bytes(render_scene(scene, cfg["image_size"])))
        images["scene"].append(scene_to_json(scene))
        for lang in TRAIN_CAPTION_LANGS if split == "train" else LANGS:
            captions["key"].append(key)
            captions["lang"].append(lang)
            captions["text"].append(describe(scene, lang, variant))
    return images, captions


def _corpus(cfg: dict, rng: np.random.Generator) -> dict:
    corpus = {name: [] for name in CORPUS_SCHEMA.names}
    jobs = [
        (split, lang, index)
        for split, per_lang in (("train", cfg["n_corpus_pairs"]), ("heldout", cfg["n_heldout_corpus_pairs"]))
        for lang in TARGET_LANGS
        for index in range(per_lang)
    ]
    for split, lang, index in tqdm(jobs, desc="world corpus", unit="pair"):
        # Fresh scenes from the image distribution: never rendered, but alike enough that a
        # CLIP model can match the English side to similar images.
        scene = sample_scene(rng, cfg["max_objects"])
        variant = int(rng.integers(N_TEMPLATES))
        corpus["pair_id"].append(f"{split}-{lang}-{index:06d}")
        corpus["split"].append(split)
        corpus["lang"].append(lang)
        corpus["en"].append(describe(scene, "en", variant))
        corpus["text"].append(describe(scene, lang, variant))
        corpus["scene"].append(scene_to_json(scene))
    return corpus


def generate_world(cfg: dict, seed: int, out_dir: str | os.PathLike) -> dict:
    """Write images.parquet, captions.parquet, corpus.parquet and world_stats.json into
    out_dir; return the stats (row counts per file, split and language)."""
    validate_world_config(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    images, captions = _images_and_captions(cfg, np.random.default_rng([seed, _IMAGE_STREAM]))
    corpus = _corpus(cfg, np.random.default_rng([seed, _CORPUS_STREAM]))

    caption_splits = dict(zip(images["key"], images["split"]))
    stats = {
        "images": _count_by(images["split"]),
        "captions": {
            split: _count_by([lang for key, lang in zip(captions["key"], captions["lang"]) if caption_splits[key] == split])
            for split in ("train", "heldout")
        },
        "corpus": {
            split: _count_by([lang for s, lang in zip(corpus["split"], corpus["lang"]) if s == split])
            for split in ("train", "heldout")
        },
    }
    # snappy (pyarrow's default) keeps the world files as they have always been written.
    for rows, schema, name in ((images, IMAGES_SCHEMA, IMAGES_FILE), (captions, CAPTIONS_SCHEMA, CAPTIONS_FILE),
                               (corpus, CORPUS_SCHEMA, CORPUS_FILE)):
        write_parquet(pa.Table.from_pydict(rows, schema=schema), out / name, compression="snappy")
    write_json(stats, out / STATS_FILE)
    return stats
