"""cc12m alignment: streamed blocked FAISS top-k, per-batch dedup/capacity, bounded memory.

Inputs (images/slice parquet, corpus chunk parquet, embedding npz) are written here directly in
the spec's formats, so these tests do not depend on the stages that produce them.
"""

import json
import os
import subprocess
import sys
import textwrap

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from florenz_lib.cc12m.align import (
    CC12M_ALIGNMENT_SCHEMA,
    HashSet64,
    NpzRowReader,
    align_part,
    load_image_embeddings,
    streamed_top_k,
)
from florenz_lib.data.align import align as synthetic_align
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
    # Two of the three distinct "a dog" pairs get t0 (rank 0) and t1 (rank 1); capacity 1 drops the third.
    assert sorted((r["key"], r["rank"], r["slice"]) for r in rows) == [("t0", 0, 0), ("t1", 1, 0)]
    assert {r["pair_id"] for r in rows} <= {"de-000000001", "de-000000002", "de-000000004"}
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


def test_hash_set_matches_a_python_set():
    rng = np.random.default_rng(2)
    seen, reference = HashSet64(), set()
    for _ in range(40):
        batch = rng.integers(0, 3000, size=rng.integers(1, 200)).astype(np.uint64)
        want = []
        for h in batch.tolist():
            want.append(h not in reference)
            reference.add(h)
        np.testing.assert_array_equal(seen.add_new(batch), want)
    assert len(seen) == len(reference) and len(seen.runs) <= 12


def test_one_batch_matches_the_synthetic_alignment(tmp_path):
    """With one chunk in one batch, the streamed alignment is the synthetic world's alignment."""
    rng = np.random.default_rng(4)
    n_images, n_sentences = 60, 400
    keys = [f"img{i:03d}" for i in range(n_images)]
    image_emb = _normalised(rng, n_images, 16).astype(np.float16)
    splits = ["train"] * 50 + ["heldout"] * 10
    slices = [write_image_slice(tmp_path / "slice-00000", keys[:30], splits[:30], image_emb[:30]),
              write_image_slice(tmp_path / "slice-00001", keys[30:], splits[30:], image_emb[30:])]
    ens = [f"sentence {i % 370}" for i in range(n_sentences)]  # repeats: duplicates within a language
    rows = [{"pair_id": f"de-{i:09d}", "split": "heldout" if i % 17 == 0 else "train", "lang": "de",
             "en": ens[i], "text": f"Satz {i % 370}"} for i in range(n_sentences)]
    sentence_emb = _normalised(rng, n_sentences, 16).astype(np.float16)
    chunks = [write_corpus_chunk(tmp_path / "de-000", rows, sentence_emb)]
    cfg = {"top_k": 5, "max_translations_per_image": 3, "min_similarity": 0.1, "batch_size": 1000, "image_block_size": 7}
    stats = align_part("train", slices, chunks, cfg, tmp_path / "train", tmp_path / "train.json")

    # The same inputs in the synthetic world's layout.
    world = tmp_path / "world"
    write_parquet(pa.Table.from_pylist(rows), world / "corpus.parquet")
    train = [i for i, r in enumerate(rows) if r["split"] == "train"]
    write_npz(world / "images.npz", ids=np.array(keys[:50]), emb=image_emb[:50])
    write_npz(world / "sentences.npz", ids=np.array([rows[i]["pair_id"] for i in train]), emb=sentence_emb[train])
    want = synthetic_align(world / "images.npz", world / "sentences.npz", world, "train", cfg,
                           world / "align.parquet", world / "align.json")
    for name in ("sentences_in", "aligned", "dropped", "per_lang", "images_used", "rank_counts"):
        assert stats[name] == want[name], name
    assert stats["dropped"]["duplicate_pair"] > 0 and stats["dropped"]["image_capacity"] > 0
    got = pq.read_table(tmp_path / "train").select(["pair_id", "key", "rank"]).sort_by("pair_id")
    assert got.to_pylist() == pq.read_table(world / "align.parquet").select(["pair_id", "key", "rank"]).to_pylist()


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


def test_peak_memory_does_not_grow_with_the_number_of_sentences(tmp_path):
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
