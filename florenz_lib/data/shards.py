"""Training shards (one row per train image with all its annotations) and the test split format.

Training shard schema (`shard-00000.parquet`, ...; rows sorted by key):
    key: string, png: binary,
    annotations: list<struct<task: string, lang: string, source: string, target: string>>
task "caption" (source "") for the image's seen-language captions, in captions.parquet order;
task "translation" (source = English sentence, target = its translation, lang = target
language) for each corpus pair aligned to the image, in pair_id order.

Test split schema (`UC.parquet`, `ST.parquet`, `SC.parquet`; rows by language, then key; written
for both worlds by florenz_lib.cc12m.splits.write_cc12m_test_splits):
    key: string, png: binary, task: string, lang: string, source: string, target: string
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ..io import read_parquet, write_json, write_parquet
from .io import (
    ALIGNMENT_COLUMNS,
    CAPTION_COLUMNS,
    CAPTIONS_FILE,
    CORPUS_COLUMNS,
    CORPUS_FILE,
    IMAGE_COLUMNS,
    IMAGES_FILE,
    read_world_table,
)

log = logging.getLogger(__name__)

SEEN_CAPTION_LANGS = ("en", "de")
TRANSLATION_LANGS = ("de", "es", "fr", "ru", "zh")
TASK_LANG_KEYS = tuple(f"caption-{l}" for l in SEEN_CAPTION_LANGS) + tuple(f"translation-{l}" for l in TRANSLATION_LANGS)
SHARD_PATTERN = "shard-{:05d}.parquet"
STATS_FILE = "stats.json"

ANNOTATION_TYPE = pa.struct(
    [("task", pa.string()), ("lang", pa.string()), ("source", pa.string()), ("target", pa.string())]
)
SHARD_SCHEMA = pa.schema([("key", pa.string()), ("png", pa.binary()), ("annotations", pa.list_(ANNOTATION_TYPE))])
TEST_SPLIT_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("png", pa.binary()),
        ("task", pa.string()),
        ("lang", pa.string()),
        ("source", pa.string()),
        ("target", pa.string()),
    ]
)


def _columns(table: pa.Table, names) -> list[list]:
    return [table.column(name).to_pylist() for name in names]


def _load_images(world_dir) -> tuple[dict[str, str], dict[str, bytes]]:
    """(split by key, png by key); keys must be unique across splits."""
    keys, splits, pngs = _columns(read_world_table(world_dir, IMAGES_FILE, IMAGE_COLUMNS), IMAGE_COLUMNS)
    duplicated = [k for k, n in Counter(keys).items() if n > 1]
    if duplicated:
        raise ValueError(f"{Path(world_dir) / IMAGES_FILE}: duplicate image keys, e.g. {duplicated[:3]}")
    return dict(zip(keys, splits)), dict(zip(keys, pngs))


def _load_corpus(world_dir) -> dict[str, dict]:
    columns = _columns(read_world_table(world_dir, CORPUS_FILE, CORPUS_COLUMNS), CORPUS_COLUMNS)
    return {row[0]: dict(zip(CORPUS_COLUMNS, row)) for row in zip(*columns)}


def _check_reconciles(name: str, counts: dict) -> None:
    if counts["in"] != counts["out"] + sum(counts["dropped"].values()):
        raise AssertionError(f"{name} counts do not reconcile: {counts}")


def add_caption_annotations(caption_rows, split_of: dict[str, str], caption_langs, annotations: dict[str, list]) -> Counter:
    """Append each (key, lang, text) caption of a train image in caption_langs to annotations[key]; return the
    drops of the others by reason (unknown_image_key, other_split_image, unseen_caption_lang)."""
    drops = Counter()
    for key, lang, text in caption_rows:
        if key not in split_of:
            drops["unknown_image_key"] += 1
        elif split_of[key] != "train":
            drops["other_split_image"] += 1
        elif lang not in caption_langs:
            drops["unseen_caption_lang"] += 1
        else:
            annotations[key].append({"task": "caption", "lang": lang, "source": "", "target": text})
    return drops


def write_shard_files(keys: list[str], png_of: dict, annotations: dict, shard_size: int, out_dir, name_of,
                      desc: str) -> list[dict]:
    """Write rows of `keys` (in order) as SHARD_SCHEMA files of at most shard_size rows named name_of(index),
    after removing the stale shard-*.parquet of an earlier run; returns [{"file", "rows"}]."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("shard-*.parquet"):  # a rerun with fewer shards must not leave old ones behind
        stale.unlink()
    shards = []
    for index, start in enumerate(tqdm(range(0, len(keys), shard_size), desc=desc, leave=False)):
        chunk = keys[start : start + shard_size]
        table = pa.table({"key": chunk, "png": [png_of[k] for k in chunk], "annotations": [annotations[k] for k in chunk]},
                         schema=SHARD_SCHEMA)
        write_parquet(table, out_dir / name_of(index))
        shards.append({"file": name_of(index), "rows": len(chunk)})
    return shards


def write_training_shards(world_dir, alignment_parquet, shard_size: int, out_dir, caption_langs=SEEN_CAPTION_LANGS) -> dict:
    """Write one row per train image to shard files of at most `shard_size` rows, plus stats.json.

    Captions are kept only for `caption_langs` (the seen captioning languages): captioning in
    the other languages must emerge from translation. Returns the stats written.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    out_dir = Path(out_dir)
    split_of, png_of = _load_images(world_dir)
    train_keys = sorted(k for k, s in split_of.items() if s == "train")
    annotations: dict[str, list[dict]] = {key: [] for key in train_keys}

    caption_rows = list(zip(*_columns(read_world_table(world_dir, CAPTIONS_FILE, CAPTION_COLUMNS), CAPTION_COLUMNS)))
    caption_drops = add_caption_annotations(caption_rows, split_of, caption_langs, annotations)

    corpus = _load_corpus(world_dir)
    pair_ids, aligned_keys = _columns(read_parquet(alignment_parquet, ALIGNMENT_COLUMNS), ["pair_id", "key"])
    pair_drops = Counter()
    for pair_id, key in sorted(zip(pair_ids, aligned_keys)):
        pair = corpus.get(pair_id)
        if pair is None:
            pair_drops["unknown_pair_id"] += 1
        elif key not in split_of:
            pair_drops["unknown_image_key"] += 1
        elif split_of[key] != "train" or pair["split"] != "train":
            raise ValueError(
                f"{alignment_parquet}: pair {pair_id} ({pair['split']}) aligned to {split_of[key]} image {key}; "
                "training alignment must join train pairs to train images"
            )
        else:
            annotations[key].append({"task": "translation", "lang": pair["lang"], "source": pair["en"], "target": pair["text"]})

    if any(split_of[key] != "train" for key in annotations):
        raise AssertionError("a non-train image reached the training shards")

    shards = write_shard_files(train_keys, png_of, annotations, shard_size, out_dir, SHARD_PATTERN.format,
                               "write shards")

    per_key = Counter(f"{a['task']}-{a['lang']}" for anns in annotations.values() for a in anns)
    stats = {
        "shard_size": shard_size,
        "caption_langs": list(caption_langs),
        "images": {
            "in": len(split_of),
            "out": len(train_keys),
            "dropped": {"other_split_image": len(split_of) - len(train_keys)},
        },
        "captions": {"in": len(caption_rows), "out": sum(per_key[f"caption-{l}"] for l in caption_langs), "dropped": dict(caption_drops)},
        "aligned_pairs": {"in": len(pair_ids), "out": sum(v for k, v in per_key.items() if k.startswith("translation-")), "dropped": dict(pair_drops)},
        "shards": shards,
        "rows": sum(s["rows"] for s in shards),
        "annotations": {key: per_key.get(key, 0) for key in sorted(set(TASK_LANG_KEYS) | set(per_key))},
        "images_without_translation": sum(not any(a["task"] == "translation" for a in anns) for anns in annotations.values()),
    }
    for name in ("images", "captions", "aligned_pairs"):
        _check_reconciles(name, stats[name])
    if stats["rows"] != stats["images"]["out"] or sum(stats["annotations"].values()) != stats["captions"]["out"] + stats["aligned_pairs"]["out"]:
        raise AssertionError(f"shard counts do not reconcile: {stats}")
    write_json(stats, out_dir / STATS_FILE)
    log.info("training shards: %d rows in %d shards, annotations %s", stats["rows"], len(shards), stats["annotations"])
    return stats


def read_training_shards(shard_dir) -> pa.Table:
    """All training rows as one pyarrow Table (SHARD_SCHEMA), shards in file-name order.

    `table.to_pylist()` gives a list of {"key", "png", "annotations": [{task, lang, source,
    target}, ...]} dicts; `pq.ParquetFile` on a single shard streams it in batches.
    """
    paths = sorted(Path(shard_dir).glob("shard-*.parquet"))
    if not paths:
        raise FileNotFoundError(f"no training shards (shard-*.parquet) in {shard_dir}")
    tables = [pq.read_table(path, schema=SHARD_SCHEMA) for path in paths]
    return pa.concat_tables(tables)


def _sample(candidates: list[dict], max_rows: int, seed: int, split: str, lang: str) -> list[dict]:
    """A seeded sample that depends only on (seed, split, lang), kept in candidate order."""
    rng = np.random.default_rng([seed, zlib.crc32(f"{split}-{lang}".encode())])
    if len(candidates) <= max_rows:
        return candidates
    chosen = np.sort(rng.choice(len(candidates), size=max_rows, replace=False))
    return [candidates[i] for i in chosen]
