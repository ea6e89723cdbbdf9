"""Tests of florenz_lib.data on a tiny world of coloured shapes (CPU, seconds)."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from florenz_lib.cc12m.align import BlockedImageIndex, align_chunks, exact_top_k
from florenz_lib.cc12m.splits import write_cc12m_test_splits
from florenz_lib.data.clip import load_clip, train_clip
from florenz_lib.data.embed import embed_images, embed_sentences
from florenz_lib.data.shards import read_training_shards, write_training_shards
from test_cc12m_align import reference_alignment

IMAGE_SIZE = 32
N_TRAIN, N_HELDOUT = 40, 10
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (230, 210, 30), "purple": (140, 40, 170)}
SHAPES = ("square", "circle")
WORDS = {  # colour and shape words per language, enough for distinct caption texts
    "de": ({"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "purple": "lila"}, {"square": "Quadrat", "circle": "Kreis"}),
    "fr": ({"red": "rouge", "green": "vert", "blue": "bleu", "yellow": "jaune", "purple": "violet"}, {"square": "carré", "circle": "cercle"}),
    "es": ({"red": "rojo", "green": "verde", "blue": "azul", "yellow": "amarillo", "purple": "morado"}, {"square": "cuadrado", "circle": "círculo"}),
    "ru": ({"red": "красный", "green": "зелёный", "blue": "синий", "yellow": "жёлтый", "purple": "фиолетовый"}, {"square": "квадрат", "circle": "круг"}),
    "zh": ({"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色"}, {"square": "正方形", "circle": "圆形"}),
}
TARGET_LANGS = tuple(WORDS)
CORPUS_PER_LANG = {"train": 12, "heldout": 6}
TINY_CLIP = dict(
    embed_dim=32, vision_width=32, vision_layers=1, vision_heads=2, patch_size=8,
    text_width=32, text_layers=1, text_heads=2, context_length=16, steps=30, batch_size=16, lr=0.002,
)
ALIGN = dict(top_k=5, max_translations_per_image=8, min_similarity=-1.0, batch_size=4096, image_block_size=100_000)
TEST_LANGS = {"UC": ["es", "zh"], "ST": ["es", "zh"], "SC": ["en", "de"]}


def caption(lang: str, colour: str, shape: str) -> str:
    if lang == "en":
        return f"a {colour} {shape}"
    colours, shapes = WORDS[lang]
    return f"{colours[colour]} {shapes[shape]}"


def render(colour: str, shape: str, rng: np.random.Generator) -> bytes:
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), tuple(int(v) for v in rng.integers(0, 60, 3)))
    low, high = sorted(rng.integers(4, IMAGE_SIZE - 4, 2) + np.array([0, 8]))
    box = (low, low, min(high, IMAGE_SIZE - 1), min(high, IMAGE_SIZE - 1))
    draw = ImageDraw.Draw(image)
    (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=COLOURS[colour])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_world(world_dir) -> dict:
    """Write images, captions and corpus parquets; return facts the tests check against."""
    rng = np.random.default_rng(0)
    colours = list(COLOURS)
    images, captions, corpus = [], [], []
    for i in range(N_TRAIN + N_HELDOUT):
        split = "train" if i < N_TRAIN else "heldout"
        colour, shape = colours[i % len(colours)], SHAPES[(i // len(colours)) % 2]
        key = f"{split}-{i:03d}"
        images.append({"key": key, "split": split, "png": render(colour, shape, rng), "scene": "{}"})
        for lang in ("en", "de") if split == "train" else ("en", "de", *TARGET_LANGS[1:]):
            captions.append({"key": key, "lang": lang, "text": caption(lang, colour, shape)})
    captions.append({"key": "no-such-image", "lang": "en", "text": "a red circle"})  # dropped: unknown_image_key
    captions.append({"key": "train-000", "lang": "fr", "text": "rouge carré"})  # dropped: unseen_caption_lang
    for split, n in CORPUS_PER_LANG.items():
        for lang in TARGET_LANGS:
            for j in range(n):
                colour, shape = colours[int(rng.integers(len(colours)))], SHAPES[int(rng.integers(2))]
                corpus.append({
                    "pair_id": f"{split}-{lang}-{j:03d}", "split": split, "lang": lang,
                    "en": f"the {shape} is {colour}", "text": f"{caption(lang, colour, shape)} ({j})", "scene": "{}",
                })
    duplicate = dict(corpus[0], pair_id="train-de-dup")  # same (en, lang, text) as the first pair
    corpus.append(duplicate)
    world_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in (("images", images), ("captions", captions), ("corpus", corpus)):
        pq.write_table(pa.Table.from_pylist(rows), world_dir / f"{name}.parquet")
    return {"captions": captions, "corpus": corpus}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world_dir = tmp_path_factory.mktemp("world")
    facts = write_world(world_dir)
    return world_dir, facts


@pytest.fixture(scope="module")
def clip_dir(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("clip")
    train_clip(world[0], TINY_CLIP, seed=7, out_dir=out)
    return out


@pytest.fixture(scope="module")
def embeddings(world, clip_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("emb")
    for split in ("train", "heldout"):
        embed_images(clip_dir, world[0], split, out / f"images-{split}.npz")
        embed_sentences(clip_dir, world[0], split, out / f"sentences-{split}.npz")
    return out


def align(world_dir, embeddings, split: str, align_cfg: dict, out_parquet, out_json) -> dict:
    """The world's alignment as the align rule runs it: one image slice, one corpus chunk."""
    return align_chunks(split, [(world_dir / "images.parquet", embeddings / f"images-{split}.npz")],
                        [(world_dir / "corpus.parquet", embeddings / f"sentences-{split}.npz", out_parquet)],
                        align_cfg, out_json)


@pytest.fixture(scope="module")
def alignments(world, embeddings, tmp_path_factory):
    out = tmp_path_factory.mktemp("align")
    for split in ("train", "heldout"):
        align(world[0], embeddings, split, ALIGN, out / f"{split}.parquet", out / f"{split}.json")
    return out


def test_clip_training_is_deterministic_and_reloadable(world, clip_dir, tmp_path):
    metrics = train_clip(world[0], TINY_CLIP, seed=7, out_dir=tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == (clip_dir / "model.safetensors").read_bytes()
    log_lines = (tmp_path / "train_log.csv").read_text().splitlines()
    assert log_lines[0] == "step,loss" and len(log_lines) == TINY_CLIP["steps"] + 1
    assert metrics["heldout_retrieval"]["n"] == N_HELDOUT
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert metrics["final_loss"] < metrics["first_loss"]

    model, tokenizer, preprocess = load_clip(clip_dir)
    pixels = preprocess(Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (200, 10, 10)))
    assert pixels.shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    assert model.encode_text(tokenizer(["a red square"])).shape == (1, TINY_CLIP["embed_dim"])


def test_embeddings_are_normalised_and_shaped(embeddings, world):
    corpus = world[1]["corpus"]
    for split, n_images in (("train", N_TRAIN), ("heldout", N_HELDOUT)):
        images = np.load(embeddings / f"images-{split}.npz")
        assert images["emb"].dtype == np.float16 and images["emb"].shape == (n_images, TINY_CLIP["embed_dim"])
        assert all(key.startswith(split) for key in images["ids"])
        sentences = np.load(embeddings / f"sentences-{split}.npz")
        assert sentences["ids"].tolist() == [p["pair_id"] for p in corpus if p["split"] == split]
        for emb in (images["emb"], sentences["emb"]):
            np.testing.assert_allclose(np.linalg.norm(emb.astype(np.float32), axis=1), 1.0, atol=2e-3)


def test_faiss_top_k_equals_brute_force():
    rng = np.random.default_rng(3)
    images = rng.normal(size=(200, 16)).astype(np.float16)  # float16, as the embedding stages store them
    sentences = rng.normal(size=(5000, 16)).astype(np.float16)
    scores, rows = exact_top_k(sentences, images, BlockedImageIndex(images, 64, use_gpu=False).search(sentences, 7)[1])
    similarity = sentences.astype(np.float64) @ images.T.astype(np.float64)
    expected = np.argsort(-similarity, axis=1, kind="stable")[:, :7]
    expected_scores = np.take_along_axis(similarity, expected, axis=1)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-7, atol=1e-7)  # re-scored: float64 rounded to float32
    # faiss's float32 search may swap near-equal neighbours at the k-th place, and only those.
    differs = rows != expected
    assert differs.mean() < 1e-3
    np.testing.assert_allclose(np.take_along_axis(similarity, rows, axis=1)[differs], expected_scores[differs], atol=1e-5)


def _reconciles(counts: dict) -> bool:
    return counts["sentences_in"] == counts["aligned"] + sum(counts["dropped"].values())


def test_alignment_reconciles_and_respects_capacity(world, embeddings, alignments, tmp_path):
    stats = json.loads((alignments / "train.json").read_text())
    n_train_pairs = len(TARGET_LANGS) * CORPUS_PER_LANG["train"] + 1
    assert stats["sentences_in"] == n_train_pairs and _reconciles(stats)
    assert all(_reconciles(c) for c in stats["per_lang"].values())
    assert stats["dropped"]["duplicate_pair"] == 1

    # One sentence per image and more sentences than images: the rest overflow capacity.
    capped = align(world[0], embeddings, "train", dict(ALIGN, max_translations_per_image=1), tmp_path / "capped.parquet",
                   tmp_path / "capped.json")
    assert _reconciles(capped) and capped["dropped"]["duplicate_pair"] == 1
    assert capped["aligned"] <= N_TRAIN and capped["dropped"]["image_capacity"] == n_train_pairs - 1 - capped["aligned"]
    table = pq.read_table(tmp_path / "capped.parquet").to_pydict()
    assert len(set(table["key"])) == len(table["key"]) and "train-de-dup" not in table["pair_id"]
    # Equal English sentences across languages tie; the tie-break must not favour one language.
    assert sum(counts["aligned"] > 0 for counts in capped["per_lang"].values()) > 1

    # Every aligned key sits at its rank in the sentence's top-k (brute force), with the matching score.
    images, sentences = np.load(embeddings / "images-train.npz"), np.load(embeddings / "sentences-train.npz")
    image_row = {k: i for i, k in enumerate(images["ids"])}
    sentence_row = {p: i for i, p in enumerate(sentences["ids"])}
    similarity = sentences["emb"].astype(np.float64) @ images["emb"].astype(np.float64).T
    for pair_id, key, score, rank in zip(table["pair_id"], table["key"], table["score"], table["rank"]):
        scores = similarity[sentence_row[pair_id]]
        assert score == pytest.approx(scores[image_row[key]], abs=1e-6)
        assert (scores > score + 1e-6).sum() <= rank < (scores >= score - 1e-6).sum()

    strict = align(world[0], embeddings, "train", dict(ALIGN, min_similarity=1.01), tmp_path / "strict.parquet",
                   tmp_path / "strict.json")
    assert strict["aligned"] == 0 and strict["dropped"]["low_similarity"] == n_train_pairs - 1 and _reconciles(strict)


@pytest.mark.parametrize("capacity", [1, 2, 8])
def test_world_alignment_is_the_brute_force_global_greedy(world, embeddings, tmp_path, capacity):
    """On the world's embeddings (ten English sentences, each paired with every language: exact ties)."""
    cfg = dict(ALIGN, max_translations_per_image=capacity)
    for split in ("train", "heldout"):
        stats = align(world[0], embeddings, split, cfg, tmp_path / f"{split}.parquet", tmp_path / f"{split}.json")
        images, sentences = np.load(embeddings / f"images-{split}.npz"), np.load(embeddings / f"sentences-{split}.npz")
        pairs = [dict(p, chunk=0) for p in world[1]["corpus"] if p["split"] == split]
        want, drops = reference_alignment(images["ids"].tolist(), images["emb"], pairs, sentences["emb"], cfg)
        got = {r["pair_id"]: (r["key"], r["rank"], r["score"]) for r in pq.read_table(tmp_path / f"{split}.parquet").to_pylist()}
        assert {p: v[:2] for p, v in got.items()} == {p: v[:2] for p, v in want.items()}, split
        assert all(score == pytest.approx(want[p][2], abs=1e-6) for p, (_, _, score) in got.items())
        for lang, counts in stats["per_lang"].items():
            assert counts["dropped"] == {r: drops[lang, r] for r in counts["dropped"]}, (split, lang)
        if capacity == 1 and split == "train":
            assert stats["dropped"]["image_capacity"] > 0


def test_training_shards_reconcile_and_are_deterministic(world, alignments, tmp_path):
    stats = write_training_shards(world[0], alignments / "train.parquet", 15, tmp_path / "a")
    write_training_shards(world[0], alignments / "train.parquet", 15, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet", "stats.json"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert [s["rows"] for s in stats["shards"]] == [15, 15, 10]

    table = read_training_shards(tmp_path / "a")
    assert table.num_rows == N_TRAIN and all(k.startswith("train-") for k in table.column("key").to_pylist())
    counts = {}
    for row in table.to_pylist():
        for annotation in row["annotations"]:
            key = f"{annotation['task']}-{annotation['lang']}"
            counts[key] = counts.get(key, 0) + 1
    assert counts == {k: v for k, v in stats["annotations"].items() if v}

    aligned = pq.read_table(alignments / "train.parquet").column("pair_id").to_pylist()
    lang_of = {p["pair_id"]: p["lang"] for p in world[1]["corpus"]}
    for lang in TARGET_LANGS:
        assert stats["annotations"][f"translation-{lang}"] == sum(lang_of[p] == lang for p in aligned)
    assert stats["annotations"]["caption-en"] == stats["annotations"]["caption-de"] == N_TRAIN
    assert stats["captions"] == {
        "in": len(world[1]["captions"]), "out": 2 * N_TRAIN,
        "dropped": {"unknown_image_key": 1, "unseen_caption_lang": 1, "other_split_image": 6 * N_HELDOUT},
    }
    assert stats["aligned_pairs"]["in"] == stats["aligned_pairs"]["out"] == len(aligned)
    assert stats["images"] == {"in": N_TRAIN + N_HELDOUT, "out": N_TRAIN, "dropped": {"other_split_image": N_HELDOUT}}


def test_test_splits_hold_only_heldout_images_and_requested_langs(world, alignments, tmp_path):
    slices = [(world[0] / "images.parquet", world[0] / "captions.parquet")]
    stats = write_cc12m_test_splits(slices, alignments / "heldout.parquet", TEST_LANGS, 4, 0, tmp_path)
    for split, langs in TEST_LANGS.items():
        rows = pq.read_table(tmp_path / f"{split}.parquet").to_pylist()
        assert rows and all(r["key"].startswith("heldout-") for r in rows)
        assert {r["lang"] for r in rows} == set(langs)
        assert all(sum(r["lang"] == lang for r in rows) <= 4 for lang in langs)
        assert {r["task"] for r in rows} == {"translation" if split == "ST" else "caption"}
        assert all((r["source"] == "") == (split != "ST") for r in rows)
        assert stats["splits"][split]["rows"] == len(rows)
    again = tmp_path / "again"
    write_cc12m_test_splits(slices, alignments / "heldout.parquet", TEST_LANGS, 4, 0, again)
    assert (again / "UC.parquet").read_bytes() == (tmp_path / "UC.parquet").read_bytes()

    with pytest.raises(ValueError, match="not a heldout image"):
        write_cc12m_test_splits(slices, alignments / "train.parquet", TEST_LANGS, 4, 0, tmp_path / "leak")


def test_missing_inputs_name_the_file_and_column(world, alignments, tmp_path):
    with pytest.raises(FileNotFoundError, match="images.parquet"):
        write_training_shards(tmp_path, alignments / "train.parquet", 10, tmp_path / "out")
    pq.write_table(pa.table({"key": ["x"], "split": ["train"]}), tmp_path / "images.parquet")
    with pytest.raises(KeyError, match=r"images.parquet.*png"):
        write_training_shards(tmp_path, alignments / "train.parquet", 10, tmp_path / "out")
