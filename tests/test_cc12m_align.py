"""The alignment of both worlds: streamed blocked FAISS top-k, dedup, one global assignment by score.

Inputs (images/slice parquet, corpus chunk parquet, embedding npz) are written here directly in
the spec's formats, so these tests do not depend on the stages that produce them. The assignment
is checked against a brute-force reference written here (reference_alignment).
"""

import json
import os
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from collections import Counter

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from florenz_lib.cc12m.align import (
    CC12M_ALIGNMENT_SCHEMA,
    DROP_REASONS,
    NpzRowReader,
    align_chunks,
    align_part,
    load_image_embeddings,
    streamed_top_k,
)
from florenz_lib.io import write_npz, write_parquet

faiss.omp_set_num_threads(1)  # the test machine's cores are shared

ALIGN = {"top_k": 2, "max_translations_per_image": 1, "min_similarity": 0.5, "batch_size": 2, "image_block_size": 1}
DIM = 8


def _unit(*pairs) -> np.ndarray:
    """A unit vector from (axis, weight) pairs."""
    v = np.zeros(DIM, dtype=np.float32)
    for axis, weight in pairs:
        v[axis] = weight
    return v / np.linalg.norm(v)


def _normalised(rng, n, dim) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_image_slice(path_stem, keys, splits, emb):
    """images/slice-i.parquet (key, split, png, url) and its embeddings npz (ids, emb float16)."""
    write_parquet(pa.table({"key": keys, "split": splits, "png": [b"jpeg:" + k.encode() for k in keys],
                            "url": [f"http://x/{k}.jpg" for k in keys]}), f"{path_stem}.parquet")
    write_npz(f"{path_stem}.npz", ids=np.array(keys, dtype=str), emb=np.asarray(emb, dtype=np.float16))
    return f"{path_stem}.parquet", f"{path_stem}.npz"


def write_corpus_chunk(path_stem, rows, emb):
    """corpus/{lang}-{chunk}.parquet (CORPUS_COLUMNS) and the sentences npz, both in corpus order."""
    columns = {c: [r[c] for r in rows] for c in ("pair_id", "split", "lang", "en", "text")}
    write_parquet(pa.table(columns), f"{path_stem}.parquet")
    write_npz(f"{path_stem}.npz", ids=np.array(columns["pair_id"], dtype=str), emb=np.asarray(emb, dtype=np.float16))
    return f"{path_stem}.parquet", f"{path_stem}.npz"


def _reconciles(counts):
    return counts["sentences_in"] == counts["aligned"] + sum(counts["dropped"].values())


@pytest.fixture
def small_world(tmp_path):
    """Train images on axes 0,1,2,4 (two slices), one heldout image on axis 3; hand-placed sentences."""
    slices = [
        write_image_slice(tmp_path / "slice-00000", ["t0", "t1", "h3"], ["train", "train", "heldout"],
                          [_unit((0, 1)), _unit((1, 1)), _unit((3, 1))]),
        write_image_slice(tmp_path / "slice-00001", ["t2", "t4"], ["train", "train"], [_unit((2, 1)), _unit((4, 1))]),
    ]
    near01 = _unit((0, 0.8), (1, 0.6))  # top-1 t0 (0.8), top-2 t1 (0.6)

    def pair(pair_id, split, en, text):
        return {"pair_id": pair_id, "split": split, "lang": pair_id[:2], "en": en, "text": text}

    chunks = [
        write_corpus_chunk(tmp_path / "de-000", [
            pair("de-000000001", "train", "a dog", "ein Hund"),
            pair("de-000000002", "train", "a dog", "ein Hündchen"),
            pair("de-000000003", "heldout", "a red kite", "ein roter Drachen"),
            pair("de-000000004", "train", "a dog", "der Hund"),
            pair("de-000000005", "train", "a dog", "ein Hund"),  # exact duplicate of de-000000001
        ], [near01, near01, _unit((3, 1)), near01, near01]),
        write_corpus_chunk(tmp_path / "fr-000", [
            pair("fr-000000001", "train", "nothing like it", "rien de tel"),  # orthogonal to every image
            pair("fr-000000002", "train", "a dog", "un chien"),  # same en as de, other lang: not a duplicate
            pair("fr-000000003", "train", "a cat", "un chat"),
        ], [_unit((5, 1)), near01, _unit((2, 1))]),
        write_corpus_chunk(tmp_path / "es-000", [
            pair("es-000000001", "train", "a red kite", "una cometa roja"),  # matches only the heldout image
        ], [_unit((3, 1))]),
    ]
    return slices, chunks


def test_align_part_counts_reconcile_and_respect_splits(small_world, tmp_path):
    slices, chunks = small_world
    stats = align_part("train", slices, chunks, ALIGN, tmp_path / "train", tmp_path / "train_stats.json")
    assert stats == json.loads((tmp_path / "train_stats.json").read_text())
    assert stats["faiss_device"] == "cpu"
    assert stats["sentences_in"] == 8 and stats["aligned"] == 3 and _reconciles(stats)
    assert stats["dropped"] == {"duplicate_pair": 1, "low_similarity": 2, "image_capacity": 2}
    assert stats["per_lang"]["de"] == {"sentences_in": 4, "aligned": 2,
                                       "dropped": {"duplicate_pair": 1, "low_similarity": 0, "image_capacity": 1}}
    assert stats["per_lang"]["fr"]["dropped"] == {"duplicate_pair": 0, "low_similarity": 1, "image_capacity": 1}
    assert stats["per_lang"]["es"]["dropped"]["low_similarity"] == 1
    assert all(_reconciles(c) for c in stats["per_lang"].values())
    assert stats["other_split_pairs"] == 1 and stats["images_in"] == 4 and stats["max_sentences_per_image"] == 1
    assert [c["file"] for c in stats["chunks"]] == ["de-000.parquet", "fr-000.parquet", "es-000.parquet"]

    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["de-000.parquet", "es-000.parquet", "fr-000.parquet"]
    de = pq.read_table(tmp_path / "train" / "de-000.parquet")
    assert de.schema == CC12M_ALIGNMENT_SCHEMA
    rows = de.to_pylist()
    # The four distinct "a dog" pairs (three de, one fr) tie at 0.8; by crc32(pair_id) de-1 < de-4 < de-2 < fr-2,
    # so de-1 gets t0 (rank 0), de-4 t1 (rank 1), and capacity 1 drops de-2 and fr-2.
    assert [(r["pair_id"], r["key"], r["rank"], r["slice"]) for r in rows] == [
        ("de-000000001", "t0", 0, 0), ("de-000000004", "t1", 1, 0)]
    assert all(r["lang"] == "de" and r["en"] == "a dog" for r in rows)
    assert sorted(r["score"] for r in rows) == pytest.approx([0.6, 0.8], abs=2e-3)
    fr = pq.read_table(tmp_path / "train" / "fr-000.parquet").to_pylist()
    assert [(r["pair_id"], r["key"], r["slice"], r["text"]) for r in fr] == [("fr-000000003", "t2", 1, "un chat")]
    # The heldout pair is not aligned in the train part, and no train pair reaches the heldout image.
    train_rows = pq.read_table(tmp_path / "train").to_pylist()
    assert "de-000000003" not in {r["pair_id"] for r in train_rows} and "h3" not in {r["key"] for r in train_rows}

    heldout = align_part("heldout", slices, chunks, ALIGN, tmp_path / "heldout", tmp_path / "heldout_stats.json")
    assert heldout["sentences_in"] == 1 and heldout["aligned"] == 1 and heldout["other_split_pairs"] == 8
    assert pq.read_table(tmp_path / "heldout").to_pylist()[0] | {"score": 1.0} == {
        "pair_id": "de-000000003", "key": "h3", "score": 1.0, "rank": 0, "lang": "de", "en": "a red kite",
        "text": "ein roter Drachen", "slice": 0}

    # Deterministic, and a rerun with fewer chunks removes the stale chunk files.
    again = align_part("train", slices, chunks[:1], ALIGN, tmp_path / "train", tmp_path / "again.json")
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["de-000.parquet"]
    assert pq.read_table(tmp_path / "train" / "de-000.parquet").equals(de)
    assert again["per_lang"]["de"] == stats["per_lang"]["de"]


def test_low_similarity_threshold_drops_everything(small_world, tmp_path):
    slices, chunks = small_world
    stats = align_part("train", slices, chunks, dict(ALIGN, min_similarity=1.01), tmp_path / "a", tmp_path / "a.json")
    assert stats["aligned"] == 0 and stats["dropped"]["low_similarity"] == 7 and stats["dropped"]["duplicate_pair"] == 1
    assert pq.read_table(tmp_path / "a").num_rows == 0


def test_stale_sentence_embeddings_are_an_error(small_world, tmp_path):
    slices, chunks = small_world
    corpus, _ = chunks[0]
    other_npz = chunks[1][1]
    with pytest.raises(ValueError, match="stale embeddings"):
        align_part("train", slices, [(corpus, other_npz)], ALIGN, tmp_path / "a", tmp_path / "a.json")


def test_streamed_top_k_equals_one_index_search(tmp_path):
    rng = np.random.default_rng(0)
    images, sentences = _normalised(rng, 1000, 32), _normalised(rng, 3000, 32)
    index = faiss.IndexFlatIP(32)
    index.add(images)
    want_scores, want_rows = index.search(sentences, 5)
    batches = [sentences[i : i + 700] for i in range(0, len(sentences), 700)]
    for block_size in (300, 3, 1000):  # blocks smaller than the image count, smaller than k, one block
        results = list(streamed_top_k(images, batches, 5, block_size, use_gpu=False))
        assert len(results) == len(batches)
        scores, rows = map(np.concatenate, zip(*results))
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_allclose(scores, want_scores, atol=1e-6)

    # From npz files restricted to a key set: rows index the kept images in file order.
    keys = [f"k{i}" for i in range(1000)]
    write_npz(tmp_path / "a.npz", ids=np.array(keys[:600]), emb=images[:600])
    write_npz(tmp_path / "b.npz", ids=np.array(keys[600:]), emb=images[600:])
    keep = set(keys[::2])
    ids, slices, _ = load_image_embeddings([tmp_path / "a.npz", tmp_path / "b.npz"], keep)
    assert ids.tolist() == keys[::2] and slices.tolist() == [0] * 300 + [1] * 200
    kept = faiss.IndexFlatIP(32)
    kept.add(images[::2].astype(np.float16).astype(np.float32))  # images are held as float16
    [(scores, rows)] = streamed_top_k([tmp_path / "a.npz", tmp_path / "b.npz"], [sentences], 5, 128, False, keep)
    np.testing.assert_array_equal(rows, kept.search(sentences, 5)[1])


def test_npz_row_reader_streams_savez_arrays(tmp_path):
    rng = np.random.default_rng(1)
    ids = np.array([f"p-{i:09d}" for i in range(1001)])
    emb = rng.normal(size=(1001, 7)).astype(np.float16)
    write_npz(tmp_path / "plain.npz", ids=ids, emb=emb)
    np.savez_compressed(tmp_path / "zipped.npz", ids=ids, emb=emb)
    for name in ("plain.npz", "zipped.npz"):
        with NpzRowReader(tmp_path / name, ("ids", "emb")) as reader:
            assert reader.rows == 1001
            parts = [reader.read(300) for _ in range(4)]
            assert reader.read(5)["emb"].shape == (0, 7)
        np.testing.assert_array_equal(np.concatenate([p["ids"] for p in parts]), ids)
        np.testing.assert_array_equal(np.concatenate([p["emb"] for p in parts]), emb)
    with pytest.raises(KeyError, match="missing array 'vectors'"):
        NpzRowReader(tmp_path / "plain.npz", ("ids", "vectors"))


def reference_alignment(image_keys, image_emb, rows, sentence_emb, cfg) -> tuple[dict, Counter]:
    """The alignment rules by brute force: ({pair_id: (key, rank, score)}, Counter of (lang, drop reason)).

    rows: the part's pairs (pair_id, lang, en, text, chunk) in corpus order; every score of every
    sentence x image in float64, rounded to float32 as the alignment rounds; top-k by (-score, image);
    the first of each (en, lang, text) of a chunk kept; then the greedy, sentence by sentence, by
    descending top-1 score, ties by crc32(pair_id), then pair_id.
    """
    sim = (np.asarray(sentence_emb, np.float64) @ np.asarray(image_emb, np.float64).T).astype(np.float32)
    image_index = np.broadcast_to(np.arange(len(image_keys)), sim.shape)
    top = np.lexsort((image_index, -sim), axis=1)[:, : min(cfg["top_k"], len(image_keys))]
    seen, candidates, drops = set(), {}, Counter()
    for i, r in enumerate(rows):
        pair = (r["chunk"], r["en"], r["lang"], r["text"])
        eligible = [j for j in top[i] if sim[i, j] >= cfg["min_similarity"]]
        if pair in seen:
            drops[r["lang"], "duplicate_pair"] += 1
        elif not eligible:
            drops[r["lang"], "low_similarity"] += 1
        else:
            candidates[i] = eligible
        seen.add(pair)
    taken, aligned = Counter(), {}
    for i in sorted(candidates, key=lambda i: (-sim[i, top[i][0]], zlib.crc32(rows[i]["pair_id"].encode()), rows[i]["pair_id"])):
        for rank, j in enumerate(candidates[i]):
            if taken[j] < cfg["max_translations_per_image"]:
                taken[j] += 1
                aligned[rows[i]["pair_id"]] = (image_keys[j], rank, float(sim[i, j]))
                break
        else:
            drops[rows[i]["lang"], "image_capacity"] += 1
    return aligned, drops


def _aligned(paths) -> dict:
    rows = pa.concat_tables([pq.read_table(p) for p in paths]).to_pylist()
    return {r["pair_id"]: (r["key"], r["rank"], r["score"]) for r in rows}


def _assert_matches_reference(stats, got: dict, want: dict, drops: Counter):
    assert {p: v[:2] for p, v in got.items()} == {p: v[:2] for p, v in want.items()}
    for pair_id, (_, _, score) in got.items():
        assert score == pytest.approx(want[pair_id][2], abs=1e-6)
    for lang, counts in stats["per_lang"].items():
        assert counts["dropped"] == {r: drops[lang, r] for r in DROP_REASONS}, lang
    assert stats["aligned"] == len(want) and _reconciles(stats)


CROWDED = {"top_k": 5, "max_translations_per_image": 3, "min_similarity": 0.45, "batch_size": 7, "image_block_size": 11}


def _part_image_inputs(slices, part="train"):
    """(keys, float16 emb) of the part's images of image slices, in slice order."""
    keys, embs = [], []
    for parquet, npz in slices:
        split = dict(zip(*(pq.read_table(parquet).column(c).to_pylist() for c in ("key", "split"))))
        with np.load(npz) as z:
            keep = [split[i] == part for i in z["ids"].tolist()]
            keys += z["ids"][keep].tolist()
            embs.append(z["emb"][keep])
    return keys, np.concatenate(embs)


@pytest.fixture
def crowded_world(tmp_path):
    """Two image slices (train and heldout mixed), one chunk per language; every English sentence is
    paired with several languages (identical embeddings: exact ties), some pairs twice (duplicates)."""
    rng = np.random.default_rng(4)
    keys = [f"img{i:03d}" for i in range(60)]
    image_emb = _normalised(rng, 60, 16).astype(np.float16)
    splits = ["heldout" if i % 6 == 0 else "train" for i in range(60)]
    slices = [write_image_slice(tmp_path / "slice-00000", keys[:25], splits[:25], image_emb[:25]),
              write_image_slice(tmp_path / "slice-00001", keys[25:], splits[25:], image_emb[25:])]
    english = _normalised(rng, 150, 16).astype(np.float16)
    rows, emb = [], []
    for lang in ("de", "fr", "zh"):
        for i in range(130):
            e = int(rng.integers(150))
            rows.append({"pair_id": f"{lang}-{i:09d}", "split": "heldout" if i % 11 == 0 else "train", "lang": lang,
                         "en": f"sentence {e}", "text": f"{lang} {e} {i % 100}", "chunk": lang, "emb_row": len(emb)})
            emb.append(english[e])
    return slices, rows, np.array(emb)


def _reference(slices, rows, emb, cfg):
    """reference_alignment of the train pairs of `rows` (in that order) to the train images of `slices`."""
    train = [r for r in rows if r["split"] == "train"]
    return reference_alignment(*_part_image_inputs(slices), train, emb[[r["emb_row"] for r in train]], cfg)


def _chunks(tmp_path, rows, emb, order):
    return [write_corpus_chunk(tmp_path / f"{lang}-000", [r for r in rows if r["chunk"] == lang],
                               emb[[r["chunk"] == lang for r in rows]]) for lang in order]


def test_global_assignment_matches_a_brute_force_greedy(crowded_world, tmp_path):
    slices, rows, emb = crowded_world
    want, drops = _reference(slices, rows, emb, CROWDED)
    stats = align_part("train", slices, _chunks(tmp_path, rows, emb, ["de", "fr", "zh"]), CROWDED, tmp_path / "a",
                       tmp_path / "a.json")
    _assert_matches_reference(stats, _aligned(sorted((tmp_path / "a").glob("*.parquet"))), want, drops)
    assert all(stats["dropped"][r] > 0 for r in DROP_REASONS) and {p[:2] for p in want} == {"de", "fr", "zh"}
    assert stats["images_in"] == 50 and stats["max_sentences_per_image"] == 3

    # Permuting the chunks (the languages) gives the same files, byte for byte, and the same counts.
    again = align_part("train", slices, _chunks(tmp_path, rows, emb, ["zh", "de", "fr"]), CROWDED, tmp_path / "b",
                       tmp_path / "b.json")
    for name in ("de-000.parquet", "fr-000.parquet", "zh-000.parquet"):
        assert pq.read_table(tmp_path / "b" / name).equals(pq.read_table(tmp_path / "a" / name))
    assert {**again, "chunks": None} == {**stats, "chunks": None}

    # One chunk of every pair (the synthetic world's layout), shuffled, in one batch and one image block, against
    # the reference on that order (of duplicates, the first in corpus order is kept).
    shuffled = [dict(rows[i], chunk="all") for i in np.random.default_rng(5).permutation(len(rows))]
    one = write_corpus_chunk(tmp_path / "corpus", shuffled, emb[[r["emb_row"] for r in shuffled]])
    cfg = dict(CROWDED, batch_size=100_000, image_block_size=100_000)
    one_stats = align_chunks("train", slices, [(*one, tmp_path / "one.parquet")], cfg, tmp_path / "one.json")
    _assert_matches_reference(one_stats, _aligned([tmp_path / "one.parquet"]), *_reference(slices, shuffled, emb, cfg))


def test_unbounded_capacity_is_the_exact_top_1(crowded_world, tmp_path):
    slices, rows, emb = crowded_world
    cfg = dict(CROWDED, max_translations_per_image=len(rows), min_similarity=-1.0)
    stats = align_part("train", slices, _chunks(tmp_path, rows, emb, ["de", "fr", "zh"]), cfg, tmp_path / "a",
                       tmp_path / "a.json")
    keys, image_emb = _part_image_inputs(slices)
    similarity = emb.astype(np.float64) @ image_emb.astype(np.float64).T
    got = _aligned(sorted((tmp_path / "a").glob("*.parquet")))
    assert stats["dropped"]["image_capacity"] == stats["dropped"]["low_similarity"] == 0
    assert len(got) == stats["sentences_in"] - stats["dropped"]["duplicate_pair"] > 300
    emb_row = {r["pair_id"]: r["emb_row"] for r in rows}
    for pair_id, (key, rank, score) in got.items():
        best = int(np.argmax(similarity[emb_row[pair_id]]))
        assert (key, rank) == (keys[best], 0) and score == pytest.approx(similarity[emb_row[pair_id], best], abs=1e-6)


def test_chunk_order_no_longer_decides_the_popular_images(tmp_path):
    """Once the greedy ran chunk by chunk: de-1 (first chunk) took image a, which fr-1 wants more."""
    slices = [write_image_slice(tmp_path / "slice-00000", ["a", "b", "c"], ["train"] * 3,
                                [_unit((0, 1)), _unit((1, 1)), _unit((2, 1))])]

    def pair(pair_id, en):
        return {"pair_id": pair_id, "split": "train", "lang": pair_id[:2], "en": en, "text": f"{pair_id} text"}

    de = (tmp_path / "de-000", [pair("de-000000001", "a dog"), pair("de-000000002", "a cat")],
          [_unit((0, 0.8), (1, 0.6)), _unit((2, 1))])  # de-1: a 0.8, b 0.6
    fr = (tmp_path / "fr-000", [pair("fr-000000001", "a puppy"), pair("fr-000000002", "a cat")],
          [_unit((0, 0.9), (3, 0.436)), _unit((2, 1))])  # fr-1: a 0.9, nothing else above 0.1
    cfg = {"top_k": 2, "max_translations_per_image": 1, "min_similarity": 0.1, "batch_size": 1, "image_block_size": 2}
    # By hand: fr-1 (0.9) takes a; de-1 (0.8) finds a full and takes b at rank 1; the two "a cat" pairs tie
    # exactly at 1.0 for c, and the smaller crc32 of their pair_ids wins.
    cat = min(["de-000000002", "fr-000000002"], key=lambda p: zlib.crc32(p.encode()))
    want = {"fr-000000001": ("a", 0), "de-000000001": ("b", 1), cat: ("c", 0)}
    for order in ([de, fr], [fr, de]):
        out = tmp_path / "-".join(Path(stem).name for stem, _, _ in order)
        stats = align_part("train", slices, [write_corpus_chunk(*chunk) for chunk in order], cfg, out, out / "stats.json")
        assert {p: v[:2] for p, v in _aligned(sorted(out.glob("*.parquet"))).items()} == want
        assert stats["dropped"] == {"duplicate_pair": 0, "low_similarity": 0, "image_capacity": 1}


MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys
    import faiss
    faiss.omp_set_num_threads(1)
    from florenz_lib.cc12m.align import align_part
    def peak_kib():  # VmHWM, not ru_maxrss: Linux carries the parent's peak over fork + exec into ru_maxrss
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    slices, chunks, cfg, out = json.loads(sys.argv[1])
    before = peak_kib()
    stats = align_part("train", slices, chunks, cfg, out + "/align", out + "/stats.json")
    print(json.dumps({"before_kib": before, "peak_kib": peak_kib(),
                      "sentences_in": stats["sentences_in"], "aligned": stats["aligned"]}))
""")


def test_peak_memory_does_not_grow_with_the_embeddings(tmp_path):
    """Only the candidate arrays of the global assignment (49 bytes per sentence at top-5) grow with the number
    of sentences, not the embeddings (1 KiB per sentence here)."""
    rng = np.random.default_rng(5)
    dim, n_images, n = 512, 2000, 25_000
    keys = [f"{i:016x}" for i in range(n_images)]
    slices = [write_image_slice(tmp_path / "slice-00000", keys, ["train"] * n_images, _normalised(rng, n_images, dim))]
    cfg = {"top_k": 5, "max_translations_per_image": 8, "min_similarity": 0.0, "batch_size": 4096, "image_block_size": 1000}
    peaks = {}
    for size in (n, 4 * n):
        rows = [{"pair_id": f"de-{i:09d}", "split": "train", "lang": "de", "en": f"an english sentence number {i}",
                 "text": f"ein deutscher Satz Nummer {i}"} for i in range(size)]
        emb = np.concatenate([_normalised(rng, 5000, dim).astype(np.float16) for _ in range(size // 5000)])
        chunk = write_corpus_chunk(tmp_path / f"de-{size}", rows, emb)
        del rows, emb
        out = tmp_path / f"out-{size}"
        arg = json.dumps([[list(map(str, s)) for s in slices], [list(map(str, chunk))], cfg, str(out)])
        result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, arg], capture_output=True, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
        peaks[size] = json.loads(result.stdout.strip().splitlines()[-1])
        assert peaks[size]["sentences_in"] == size and 0 < peaks[size]["aligned"] <= 8 * n_images
    small, large = peaks[n]["peak_kib"], peaks[4 * n]["peak_kib"]
    print(f"align_part peak RSS: {n} sentences {small / 1024:.1f} MiB, {4 * n} sentences {large / 1024:.1f} MiB "
          f"(+{100 * (large - small) / small:.1f}%; after imports {peaks[n]['before_kib'] / 1024:.1f} MiB)")
    assert large < 1.2 * small
    # Not vacuous: the larger chunk's embeddings alone (4n x 512 float16) exceed the growth allowance.
    assert 4 * n * dim * 2 / 1024 > 0.2 * small
