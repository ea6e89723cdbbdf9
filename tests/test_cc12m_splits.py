"""cc12m training shards per slice, their gathering, and the held-out test splits.

Inputs (images/captions slice parquet, alignment parquet) are written here by hand in the spec's formats.
"""

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from florenz_lib.cc12m.align import CC12M_ALIGNMENT_SCHEMA
from florenz_lib.cc12m.splits import gather_shards, write_cc12m_test_splits, write_slice_shards
from florenz_lib.data.shards import SHARD_SCHEMA, TEST_SPLIT_SCHEMA, _sample, read_training_shards
from florenz_lib.io import write_parquet

TEST_LANGS = {"UC": ["es", "zh"], "ST": ["es", "zh"], "SC": ["en", "de"]}
IMAGES = {0: [("a1", "train"), ("h0", "heldout"), ("a0", "train")], 1: [("b0", "train"), ("h1", "heldout"), ("b1", "train")]}


def _png(key):
    return f"jpeg-bytes-of-{key}".encode()


def _alignment(path, rows):
    columns = {name: [r[i] for r in rows] for i, name in enumerate(CC12M_ALIGNMENT_SCHEMA.names)}
    write_parquet(pa.table(columns, schema=CC12M_ALIGNMENT_SCHEMA), path)


@pytest.fixture
def inputs(tmp_path):
    slices = []
    for i, images in IMAGES.items():
        keys = [k for k, _ in images]
        write_parquet(pa.table({"key": keys, "split": [s for _, s in images], "png": [_png(k) for k in keys],
                                "url": [f"http://x/{k}.jpg" for k in keys]}), tmp_path / f"images/slice-{i:05d}.parquet")
        captions = [(k, lang, f"{lang} caption of {k}") for k, split in images
                    for lang in (("en", "de") if split == "train" else ("en", "de", "es", "zh"))]
        if i == 0:
            captions += [("a0", "es", "es caption of a0"), ("zz", "en", "caption of an image that failed")]
        write_parquet(pa.table({c: [r[j] for r in captions] for j, c in enumerate(("key", "lang", "text"))}),
                      tmp_path / f"captions/slice-{i:05d}.parquet")
        slices.append((tmp_path / f"images/slice-{i:05d}.parquet", tmp_path / f"captions/slice-{i:05d}.parquet"))
    # pair_id, key, score, rank, lang, en, text, slice
    _alignment(tmp_path / "alignment/train/de-000.parquet", [
        ("de-000000002", "a0", 0.3, 0, "de", "a house", "ein Haus", 0),
        ("de-000000001", "a0", 0.4, 1, "de", "a tree", "ein Baum", 0),
        ("de-000000007", "b1", 0.2, 0, "de", "a boat", "ein Boot", 1),
    ])
    _alignment(tmp_path / "alignment/train/fr-000.parquet", [
        ("fr-000000003", "a1", 0.5, 0, "fr", "a tree", "un arbre", 0),
        ("fr-000000009", "b1", 0.5, 0, "fr", "a cat", "un chat", 1),
    ])
    _alignment(tmp_path / "alignment/heldout/es-000.parquet", [
        ("es-000000004", "h1", 0.3, 0, "es", "a kite", "una cometa", 1),
        ("es-000000005", "h0", 0.3, 0, "es", "a dog", "un perro", 0),
        ("es-000000006", "h0", 0.3, 1, "es", "a cat", "un gato", 0),
    ])
    _alignment(tmp_path / "alignment/heldout/zh-000.parquet", [("zh-000000001", "h1", 0.3, 0, "zh", "a kite", "风筝", 1)])
    _alignment(tmp_path / "alignment/heldout/de-000.parquet", [("de-000000009", "h0", 0.3, 0, "de", "a dog", "ein Hund", 0)])
    return slices


def _reconciles(counts):
    return counts["in"] == counts["out"] + sum(counts["dropped"].values())


def test_slice_shards_hold_the_slice_train_images_with_their_annotations(inputs, tmp_path):
    (images0, captions0), _ = inputs
    stats = write_slice_shards(0, images0, captions0, tmp_path / "alignment/train", 1, tmp_path / "parts/slice-00000")
    assert stats == json.loads((tmp_path / "parts/slice-00000/stats.json").read_text())
    assert sorted(p.name for p in (tmp_path / "parts/slice-00000").glob("shard-*")) == \
        ["shard-00000-000.parquet", "shard-00000-001.parquet"]
    table = read_training_shards(tmp_path / "parts/slice-00000")
    assert table.schema == SHARD_SCHEMA
    rows = table.to_pylist()
    assert [r["key"] for r in rows] == ["a0", "a1"] and [r["png"] for r in rows] == [_png("a0"), _png("a1")]
    assert rows[0]["annotations"] == [
        {"task": "caption", "lang": "en", "source": "", "target": "en caption of a0"},
        {"task": "caption", "lang": "de", "source": "", "target": "de caption of a0"},
        {"task": "translation", "lang": "de", "source": "a tree", "target": "ein Baum"},
        {"task": "translation", "lang": "de", "source": "a house", "target": "ein Haus"},
    ]
    assert rows[1]["annotations"][-1] == {"task": "translation", "lang": "fr", "source": "a tree", "target": "un arbre"}

    assert stats["images"] == {"in": 3, "out": 2, "dropped": {"other_split_image": 1}}
    assert stats["captions"] == {"in": 10, "out": 4,
                                 "dropped": {"other_split_image": 4, "unseen_caption_lang": 1, "unknown_image_key": 1}}
    assert stats["aligned_pairs"] == {"in": 3, "out": 3, "dropped": {}}  # slice 1's pairs are not read
    assert all(_reconciles(stats[n]) for n in ("images", "captions", "aligned_pairs"))
    assert stats["annotations"]["caption-en"] == 2 and stats["annotations"]["translation-fr"] == 1
    assert stats["annotations"]["translation-zh"] == 0 and stats["images_without_translation"] == 0
    assert stats["rows"] == 2 and stats["shards"] == [{"file": "shard-00000-000.parquet", "rows": 1},
                                                      {"file": "shard-00000-001.parquet", "rows": 1}]


def test_a_train_pair_aligned_to_a_heldout_image_is_an_error(inputs, tmp_path):
    (images0, captions0), _ = inputs
    _alignment(tmp_path / "alignment/train/ru-000.parquet", [("ru-000000001", "h0", 0.3, 0, "ru", "a", "b", 0)])
    with pytest.raises(ValueError, match="ru-000000001 aligned to heldout image h0"):
        write_slice_shards(0, images0, captions0, tmp_path / "alignment/train", 10, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no alignment files"):
        write_slice_shards(0, images0, captions0, tmp_path / "nowhere", 10, tmp_path / "out")


def test_gather_links_the_union_and_sums_the_stats(inputs, tmp_path):
    parts = []
    for i, (images, captions) in enumerate(inputs):
        part = tmp_path / f"parts/slice-{i:05d}"
        parts.append(write_slice_shards(i, images, captions, tmp_path / "alignment/train", 1, part))
    out = tmp_path / "shards"
    out.mkdir()
    (out / "shard-00009-000.parquet").write_bytes(b"stale")
    stats = gather_shards([tmp_path / "parts/slice-00000", tmp_path / "parts/slice-00001"], out)
    assert stats == json.loads((out / "stats.json").read_text())
    names = sorted(p.name for p in out.glob("shard-*.parquet"))
    assert names == ["shard-00000-000.parquet", "shard-00000-001.parquet", "shard-00001-000.parquet", "shard-00001-001.parquet"]
    assert os.stat(out / names[0]).st_ino == os.stat(tmp_path / "parts/slice-00000" / names[0]).st_ino  # a hard link

    table = read_training_shards(out)
    assert table.column("key").to_pylist() == ["a0", "a1", "b0", "b1"]  # the union; no heldout image
    synthetic_keys = {"shard_size", "caption_langs", "images", "captions", "aligned_pairs", "shards", "rows",
                      "annotations", "images_without_translation"}
    assert synthetic_keys <= set(stats) and stats["slices"] == [0, 1]
    assert stats["rows"] == 4 and stats["images"] == {"in": 6, "out": 4, "dropped": {"other_split_image": 2}}
    for name in ("captions", "aligned_pairs"):
        assert stats[name]["in"] == sum(p[name]["in"] for p in parts) and _reconciles(stats[name])
    assert stats["aligned_pairs"]["out"] == 5 and stats["images_without_translation"] == 1  # b0
    assert stats["annotations"]["translation-de"] == 3 and stats["annotations"]["caption-de"] == 4
    assert [s["file"] for s in stats["shards"]] == names and stats["shard_size"] == 1

    # A part whose files disagree with its stats is refused.
    (tmp_path / "parts/slice-00001/shard-00001-000.parquet").unlink()
    with pytest.raises(ValueError, match="differ from those in its stats.json"):
        gather_shards([tmp_path / "parts/slice-00001"], tmp_path / "again")


def test_test_splits_come_from_heldout_images_only(inputs, tmp_path):
    stats = write_cc12m_test_splits(inputs, tmp_path / "alignment/heldout", TEST_LANGS, 10, 0, tmp_path / "test")
    assert stats == json.loads((tmp_path / "test/stats.json").read_text())
    assert stats["heldout_images"] == 2
    tables = {s: pq.read_table(tmp_path / f"test/{s}.parquet") for s in ("UC", "ST", "SC")}
    assert all(t.schema == TEST_SPLIT_SCHEMA for t in tables.values())
    for split, table in tables.items():
        rows = table.to_pylist()
        assert {r["key"] for r in rows} <= {"h0", "h1"}, split  # no train image
        assert all(r["png"] == _png(r["key"]) for r in rows)
    uc = tables["UC"].to_pylist()
    assert [(r["lang"], r["key"], r["target"]) for r in uc] == [
        ("es", "h0", "es caption of h0"), ("es", "h1", "es caption of h1"), ("zh", "h0", "zh caption of h0"), ("zh", "h1", "zh caption of h1")]
    assert all(r["task"] == "caption" and r["source"] == "" for r in uc)
    st = tables["ST"].to_pylist()
    assert [(r["lang"], r["key"], r["source"], r["target"]) for r in st] == [
        ("es", "h0", "a cat", "un gato"), ("es", "h0", "a dog", "un perro"), ("es", "h1", "a kite", "una cometa"),
        ("zh", "h1", "a kite", "风筝")]  # the de pair is not an ST language
    assert stats["splits"]["ST"]["per_lang"] == {"es": {"candidates": 3, "rows": 3}, "zh": {"candidates": 1, "rows": 1}}
    assert stats["splits"]["SC"]["rows"] == 4 and {r["lang"] for r in tables["SC"].to_pylist()} == {"en", "de"}

    # Sampling follows the synthetic world's rule: depends on (seed, split, lang) only.
    small = write_cc12m_test_splits(inputs, tmp_path / "alignment/heldout", TEST_LANGS, 1, 3, tmp_path / "small")
    assert small["splits"]["ST"]["per_lang"]["es"] == {"candidates": 3, "rows": 1}
    sampled = pq.read_table(tmp_path / "small/ST.parquet").to_pylist()
    es = [{k: r[k] for k in ("key", "task", "lang", "source", "target")} for r in st if r["lang"] == "es"]
    assert [r for r in sampled if r["lang"] == "es"] == [{**r, "png": _png(r["key"])} for r in _sample(es, 1, 3, "ST", "es")]


def test_test_split_errors_name_the_split_and_language(inputs, tmp_path):
    with pytest.raises(ValueError, match="test split ST: no heldout ru candidates"):
        write_cc12m_test_splits(inputs, tmp_path / "alignment/heldout", dict(TEST_LANGS, ST=["es", "ru"]), 10, 0, tmp_path / "a")
    _alignment(tmp_path / "alignment/heldout/fr-000.parquet", [("fr-000000001", "a0", 0.3, 0, "fr", "a", "b", 0)])
    with pytest.raises(ValueError, match="aligned to a0, not a heldout image"):
        write_cc12m_test_splits(inputs, tmp_path / "alignment/heldout", TEST_LANGS, 10, 0, tmp_path / "b")
