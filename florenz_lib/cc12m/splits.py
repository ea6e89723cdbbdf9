"""Training shards per image slice, their gathering, and the held-out UC/ST/SC test splits (cc12m world).

Same formats as the synthetic world (florenz_lib.data.shards): one SHARD_SCHEMA row per train
image with its en/de captions (task "caption") and the corpus pairs aligned to it (task
"translation"), rows sorted by key; TEST_SPLIT_SCHEMA test splits. What changes is the scale:
each image slice is written by its own job (memory O(slice): only that slice's images, captions
and aligned pairs are loaded), and gather_shards hard-links every slice's shards into one
directory with a stats.json summing the slices' stats, which the trainer reads with
read_training_shards.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..data.shards import (
    SEEN_CAPTION_LANGS,
    STATS_FILE,
    TASK_LANG_KEYS,
    TEST_SPLIT_SCHEMA,
    _check_reconciles,
    _sample,
    add_caption_annotations,
    write_shard_files,
)
from ..data.io import CAPTION_COLUMNS, IMAGE_COLUMNS
from ..io import read_json, read_parquet, require_columns, write_json, write_parquet
from .align import CC12M_ALIGNMENT_COLUMNS

log = logging.getLogger(__name__)

SLICE_SHARD_PATTERN = "shard-{:05d}-{:03d}.parquet"
RECONCILED = ("images", "captions", "aligned_pairs")
TEST_SPLITS = ("UC", "ST", "SC")


def _alignment_dataset(alignment) -> ds.Dataset:
    """One part's alignment as one dataset: a directory of parquet files ({lang}-{chunk}.parquet), or one file."""
    paths = [str(alignment)] if Path(alignment).is_file() else sorted(str(p) for p in Path(alignment).glob("*.parquet"))
    if not paths:
        raise FileNotFoundError(f"no alignment files (*.parquet) in {alignment}")
    dataset = ds.dataset(paths, format="parquet")
    missing = [c for c in CC12M_ALIGNMENT_COLUMNS if c not in dataset.schema.names]
    if missing:
        raise KeyError(f"{alignment}: alignment files lack column(s) {missing}")
    return dataset


def _read_images(images_parquet) -> tuple[list[str], list[str], list[bytes]]:
    keys, splits, pngs = (read_parquet(images_parquet, IMAGE_COLUMNS).column(c).to_pylist() for c in IMAGE_COLUMNS)
    duplicated = [k for k, n in Counter(keys).items() if n > 1]
    if duplicated:
        raise ValueError(f"{images_parquet}: duplicate image keys, e.g. {duplicated[:3]}")
    return keys, splits, pngs


def write_slice_shards(slice_index: int, images_parquet, captions_parquet, alignment_dir_train, shard_size: int,
                       out_dir, caption_langs=SEEN_CAPTION_LANGS) -> dict:
    """Write the slice's train images as shard-{slice:05d}-{j:03d}.parquet (SHARD_SCHEMA) and stats.json.

    Annotations: the image's captions in `caption_langs` (captions parquet order), then the
    aligned pairs whose `slice` column is slice_index (pair_id order). Counts reconcile per
    images / captions / aligned_pairs: in = out + dropped by reason. Returns the stats.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    keys, splits, pngs = _read_images(images_parquet)
    split_of = dict(zip(keys, splits))
    train_keys = sorted(k for k, s in split_of.items() if s == "train")
    png_of = {k: p for k, s, p in zip(keys, splits, pngs) if s == "train"}
    del pngs
    annotations: dict[str, list[dict]] = {key: [] for key in train_keys}

    captions = read_parquet(captions_parquet, CAPTION_COLUMNS)
    n_captions = captions.num_rows
    caption_drops = add_caption_annotations(zip(*(captions.column(c).to_pylist() for c in CAPTION_COLUMNS)), split_of,
                                            caption_langs, annotations)
    del captions

    # Only this slice's pairs are read: the filter is pushed down to the parquet scan.
    pairs = _alignment_dataset(alignment_dir_train).to_table(
        columns=["pair_id", "key", "lang", "en", "text"], filter=ds.field("slice") == slice_index)
    pair_drops = Counter()
    for pair_id, key, lang, en, text in sorted(zip(*(pairs.column(c).to_pylist() for c in pairs.column_names))):
        if key not in split_of:
            pair_drops["unknown_image_key"] += 1
        elif split_of[key] != "train":
            raise ValueError(f"{alignment_dir_train}: pair {pair_id} aligned to {split_of[key]} image {key} of "
                             f"{images_parquet}; training alignment must join train pairs to train images")
        else:
            annotations[key].append({"task": "translation", "lang": lang, "source": en, "target": text})

    out_dir = Path(out_dir)
    shards = write_shard_files(train_keys, png_of, annotations, shard_size, out_dir,
                               lambda j: SLICE_SHARD_PATTERN.format(slice_index, j), f"shards of slice {slice_index}")

    per_key = Counter(f"{a['task']}-{a['lang']}" for anns in annotations.values() for a in anns)
    stats = {
        "slice": slice_index,
        "shard_size": shard_size,
        "caption_langs": list(caption_langs),
        "images": {"in": len(keys), "out": len(train_keys), "dropped": {"other_split_image": len(keys) - len(train_keys)}},
        "captions": {"in": n_captions, "out": sum(per_key[f"caption-{l}"] for l in caption_langs), "dropped": dict(caption_drops)},
        "aligned_pairs": {"in": pairs.num_rows, "out": sum(v for k, v in per_key.items() if k.startswith("translation-")),
                          "dropped": dict(pair_drops)},
        "shards": shards,
        "rows": len(train_keys),
        "annotations": {key: per_key.get(key, 0) for key in sorted(set(TASK_LANG_KEYS) | set(per_key))},
        "images_without_translation": sum(not any(a["task"] == "translation" for a in anns) for anns in annotations.values()),
    }
    _check_shard_stats(stats)
    write_json(stats, out_dir / STATS_FILE)
    log.info("slice %d: %d train images in %d shards, annotations %s", slice_index, stats["rows"], len(shards), stats["annotations"])
    return stats


def _check_shard_stats(stats: dict) -> None:
    for name in RECONCILED:
        _check_reconciles(name, stats[name])
    if stats["rows"] != stats["images"]["out"] or stats["rows"] != sum(s["rows"] for s in stats["shards"]) or \
            sum(stats["annotations"].values()) != stats["captions"]["out"] + stats["aligned_pairs"]["out"]:
        raise AssertionError(f"shard counts do not reconcile: {stats}")


def _sum_counts(parts: list[dict]) -> dict:
    dropped = Counter()
    for part in parts:
        dropped.update(part["dropped"])
    return {"in": sum(p["in"] for p in parts), "out": sum(p["out"] for p in parts), "dropped": dict(sorted(dropped.items()))}


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system (or no hard links there): copy instead
        shutil.copy2(source, target)


def gather_shards(part_dirs, out_dir) -> dict:
    """Hard-link every part's shard-*.parquet into out_dir and write out_dir/stats.json summing the parts' stats.

    The stats have the synthetic world's top-level keys (read_training_shards reads the
    directory as in that world) plus `slices`; they are checked to reconcile, and each part's
    shard files against the row counts its stats.json lists. Returns the stats.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("shard-*.parquet"):
        stale.unlink()
    parts = []
    for part_dir in map(Path, part_dirs):
        stats = read_json(part_dir / STATS_FILE)
        found = sorted(p.name for p in part_dir.glob("shard-*.parquet"))
        if found != sorted(s["file"] for s in stats["shards"]):
            raise ValueError(f"{part_dir}: shard files {found} differ from those in its {STATS_FILE}")
        for shard in stats["shards"]:
            source, target = part_dir / shard["file"], out_dir / shard["file"]
            if pq.ParquetFile(source).metadata.num_rows != shard["rows"]:
                raise ValueError(f"{source}: {pq.ParquetFile(source).metadata.num_rows} rows, its {STATS_FILE} says {shard['rows']}")
            if target.exists():
                raise ValueError(f"shard {shard['file']} of {part_dir} is also in another part")
            _link(source, target)
        parts.append(stats)
    if not parts:
        raise ValueError("gather_shards: no shard parts given")
    for key in ("shard_size", "caption_langs"):
        if len({str(p[key]) for p in parts}) > 1:
            raise ValueError(f"shard parts differ in {key}: {[p[key] for p in parts]}")

    annotations = Counter()
    for part in parts:
        annotations.update(part["annotations"])
    stats = {
        "shard_size": parts[0]["shard_size"],
        "caption_langs": parts[0]["caption_langs"],
        **{name: _sum_counts([p[name] for p in parts]) for name in RECONCILED},
        "shards": sorted((s for p in parts for s in p["shards"]), key=lambda s: s["file"]),
        "rows": sum(p["rows"] for p in parts),
        "annotations": dict(sorted(annotations.items())),
        "images_without_translation": sum(p["images_without_translation"] for p in parts),
        "slices": sorted(p["slice"] for p in parts),
    }
    _check_shard_stats(stats)
    write_json(stats, out_dir / STATS_FILE)
    log.info("gathered %d shards of %d slices: %d rows", len(stats["shards"]), len(parts), stats["rows"])
    return stats


def _heldout_images(images_parquet, png_of: dict[str, bytes]) -> set[str]:
    """Add the slice's heldout images to png_of and return their keys; the file is streamed so
    train images' bytes are never kept."""
    keys = set()
    for batch in require_columns(images_parquet, IMAGE_COLUMNS).iter_batches(batch_size=1024, columns=list(IMAGE_COLUMNS)):
        for key, split, png in zip(*(batch.column(c).to_pylist() for c in IMAGE_COLUMNS)):
            if split == "heldout":
                if key in png_of:
                    raise ValueError(f"{images_parquet}: heldout image key {key} occurs twice")
                png_of[key] = png
                keys.add(key)
    return keys


def write_cc12m_test_splits(image_slices, alignment_dir_heldout, test_langs: dict, max_per_lang: int, seed: int, out_dir) -> dict:
    """Write UC.parquet, ST.parquet, SC.parquet (TEST_SPLIT_SCHEMA) and stats.json from heldout images only.

    Both worlds' test splits (the synthetic world is one slice: its images and captions parquet, and
    its heldout alignment file). image_slices = [(images/slice-i.parquet, captions/slice-i.parquet), ...]. UC / SC: heldout
    images' captions in test_langs["UC"] / test_langs["SC"]; ST: heldout pairs en->test_langs["ST"]
    aligned to heldout images. Candidates sorted by (key, source, target), at most max_per_lang
    per language sampled by data.shards._sample (the seed rule); rows by language, then key.
    """
    png_of: dict[str, bytes] = {}
    captions_by_lang: dict[str, list[dict]] = {}
    for images_parquet, captions_parquet in image_slices:
        slice_heldout = _heldout_images(images_parquet, png_of)
        captions = read_parquet(captions_parquet, CAPTION_COLUMNS)
        for key, lang, text in zip(*(captions.column(c).to_pylist() for c in CAPTION_COLUMNS)):
            if key in slice_heldout:
                captions_by_lang.setdefault(lang, []).append({"key": key, "task": "caption", "lang": lang, "source": "", "target": text})
    if not png_of:
        raise ValueError(f"no heldout images in {[str(i) for i, _ in image_slices]}")

    translations_by_lang: dict[str, list[dict]] = {}
    pairs = _alignment_dataset(alignment_dir_heldout).to_table(columns=["pair_id", "key", "lang", "en", "text"])
    for pair_id, key, lang, en, text in sorted(zip(*(pairs.column(c).to_pylist() for c in pairs.column_names))):
        if key not in png_of:
            raise ValueError(f"{alignment_dir_heldout}: pair {pair_id} is aligned to {key}, not a heldout image; "
                             "test splits must not touch training data")
        translations_by_lang.setdefault(lang, []).append({"key": key, "task": "translation", "lang": lang, "source": en, "target": text})

    out_dir = Path(out_dir)
    stats = {"max_per_lang": max_per_lang, "seed": seed, "heldout_images": len(png_of), "splits": {}}
    for split, by_lang in (("UC", captions_by_lang), ("ST", translations_by_lang), ("SC", captions_by_lang)):
        rows, counts = [], {}
        for lang in test_langs[split]:
            candidates = sorted(by_lang.get(lang, []), key=lambda r: (r["key"], r["source"], r["target"]))
            if not candidates:
                source = alignment_dir_heldout if split == "ST" else "the captions of heldout images"
                raise ValueError(f"test split {split}: no heldout {lang} candidates in {source}")
            sampled = _sample(candidates, max_per_lang, seed, split, lang)
            rows.extend(sampled)
            counts[lang] = {"candidates": len(candidates), "rows": len(sampled)}
        table = pa.Table.from_pylist([{**r, "png": png_of[r["key"]]} for r in rows], schema=TEST_SPLIT_SCHEMA)
        write_parquet(table, out_dir / f"{split}.parquet")
        stats["splits"][split] = {"rows": len(rows), "images": len({r["key"] for r in rows}), "per_lang": counts}
    write_json(stats, out_dir / STATS_FILE)
    log.info("cc12m test splits: %s", {s: v["rows"] for s, v in stats["splits"].items()})
    return stats
