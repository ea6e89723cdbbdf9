"""Sentence-image alignment: FAISS top-k over CLIP embeddings, then deduplication.

The paper aligns each English sentence of the translation corpus to images by "top-5
matching and subsequent deduplication". Here that is made exact:
  (a) exact duplicate pairs (same en, lang, text) are dropped, keeping the first in corpus
      order                                                   -> reason "duplicate_pair";
  (c) top-k candidates below min_similarity do not count; a sentence with none left
                                                              -> reason "low_similarity";
  (b) sentences are visited by descending top-1 score and take their best-scoring
      candidate image that still holds fewer than max_translations_per_image sentences;
      all candidates full                                     -> reason "image_capacity".
Ties in (b) are broken by crc32(pair_id), then pair_id: the same English sentence paired
with several languages ties exactly, and plain pair_id order (which starts with the
language in the world's ids) would hand the scarce image slots to one language.
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from ..io import require_file, write_json, write_parquet
from .io import CORPUS_COLUMNS, CORPUS_FILE, read_world_table

log = logging.getLogger(__name__)

SEARCH_BATCH_SIZE = 4096
DROP_REASONS = ("duplicate_pair", "low_similarity", "image_capacity")
ALIGNMENT_SCHEMA = pa.schema(
    [("pair_id", pa.string()), ("key", pa.string()), ("score", pa.float32()), ("rank", pa.int32())]
)


def load_embeddings(path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(require_file(path)) as npz:
        for name in ("ids", "emb"):
            if name not in npz.files:
                raise KeyError(f"{path}: missing array '{name}'")
        return npz["ids"].astype(str), npz["emb"].astype(np.float32)


def search_top_k(image_emb: np.ndarray, sentence_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Inner-product top-k images per sentence, searched in batches: (scores, image rows) [N, k]."""
    index = faiss.IndexFlatIP(image_emb.shape[1])
    index.add(np.ascontiguousarray(image_emb, dtype=np.float32))
    scores = np.empty((len(sentence_emb), k), dtype=np.float32)
    rows = np.empty((len(sentence_emb), k), dtype=np.int64)
    for start in tqdm(range(0, len(sentence_emb), SEARCH_BATCH_SIZE), desc="faiss search", leave=False):
        stop = start + SEARCH_BATCH_SIZE
        scores[start:stop], rows[start:stop] = index.search(
            np.ascontiguousarray(sentence_emb[start:stop], dtype=np.float32), k
        )
    return scores, rows


def assign_by_capacity(pair_ids: np.ndarray, scores: np.ndarray, rows: np.ndarray, reason: np.ndarray,
                       min_similarity: float, capacity: int, assigned_count: np.ndarray) -> np.ndarray:
    """Rules (c) and (b) of the module docstring on sentences with their top-k (scores, image rows);
    `reason` ("" for a sentence still in play) and the per-image `assigned_count` are updated in place.
    Returns each sentence's chosen rank (-1: none)."""
    eligible = scores >= min_similarity
    reason[(reason == "") & ~eligible.any(axis=1)] = "low_similarity"
    # Descending top-1 score, then crc32(pair_id), then pair_id (lexsort: last key is primary).
    pair_hashes = np.array([zlib.crc32(p.encode()) for p in pair_ids], dtype=np.int64)
    chosen_rank = np.full(len(pair_ids), -1, dtype=np.int64)
    for i in np.lexsort((pair_ids, pair_hashes, -scores[:, 0])) if len(pair_ids) else ():
        if reason[i]:
            continue
        for rank in range(scores.shape[1]):
            image = rows[i, rank]
            if eligible[i, rank] and assigned_count[image] < capacity:
                assigned_count[image] += 1
                chosen_rank[i] = rank
                break
        else:
            reason[i] = "image_capacity"
    return chosen_rank


def _corpus_rows(world_dir, split: str, pair_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Corpus columns for the split, in the order of the sentence embeddings."""
    corpus = read_world_table(world_dir, CORPUS_FILE, CORPUS_COLUMNS)
    corpus = corpus.filter(pc.equal(corpus.column("split"), split))
    position = {pair_id: i for i, pair_id in enumerate(corpus.column("pair_id").to_pylist())}
    missing = [p for p in pair_ids if p not in position]
    if missing:
        raise ValueError(f"{len(missing)} embedded sentences are not {split} pairs of {CORPUS_FILE}, e.g. {missing[:3]}")
    if len(position) != len(pair_ids):
        raise ValueError(f"sentence embeddings cover {len(pair_ids)} of {len(position)} {split} pairs: stale embeddings?")
    order = np.array([position[p] for p in pair_ids], dtype=np.int64)
    return {name: np.array(corpus.column(name).to_pylist(), dtype=object)[order] for name in ("lang", "en", "text")}


def align(image_npz, sentence_npz, world_dir, split: str, align_cfg: dict, out_parquet, out_stats_json) -> dict:
    """Align the split's corpus sentences to images; write the alignment parquet and stats json.

    Parquet columns: pair_id, key, score (float32 cosine similarity), rank (int32, 0-based
    position of `key` in the sentence's top-k list), sorted by pair_id. Returns the stats.
    """
    top_k = int(align_cfg["top_k"])
    capacity = int(align_cfg["max_translations_per_image"])
    min_similarity = float(align_cfg["min_similarity"])
    image_ids, image_emb = load_embeddings(image_npz)
    pair_ids, sentence_emb = load_embeddings(sentence_npz)
    if len(image_ids) == 0:
        raise ValueError(f"{image_npz}: no image embeddings")
    if image_emb.shape[1] != sentence_emb.shape[1]:
        raise ValueError(f"embedding dims differ: {image_npz} {image_emb.shape[1]} vs {sentence_npz} {sentence_emb.shape[1]}")
    corpus = _corpus_rows(world_dir, split, pair_ids)

    k = min(top_k, len(image_ids))
    scores, rows = search_top_k(image_emb, sentence_emb, k)

    reason = np.full(len(pair_ids), "", dtype=object)
    seen_pairs = set()
    for i, pair in enumerate(zip(corpus["en"], corpus["lang"], corpus["text"])):
        if pair in seen_pairs:
            reason[i] = "duplicate_pair"
        seen_pairs.add(pair)
    assigned_count = np.zeros(len(image_ids), dtype=np.int64)
    chosen_rank = assign_by_capacity(pair_ids, scores, rows, reason, min_similarity, capacity, assigned_count)

    aligned = np.flatnonzero(chosen_rank >= 0)
    aligned = aligned[np.argsort(pair_ids[aligned], kind="stable")]
    table = pa.table(
        {
            "pair_id": pair_ids[aligned].tolist(),
            "key": image_ids[rows[aligned, chosen_rank[aligned]]].tolist(),
            "score": scores[aligned, chosen_rank[aligned]],
            "rank": chosen_rank[aligned].astype(np.int32),
        },
        schema=ALIGNMENT_SCHEMA,
    )
    write_parquet(table, out_parquet)

    stats = alignment_stats(corpus["lang"], reason, chosen_rank, scores, assigned_count, aligned)
    stats.update(split=split, top_k=top_k, max_translations_per_image=capacity, min_similarity=min_similarity)
    write_json(stats, out_stats_json)
    log.info("align %s: %d sentences -> %d aligned, dropped %s", split, stats["sentences_in"], stats["aligned"], stats["dropped"])
    return stats


def alignment_stats(langs, reason, chosen_rank, scores, assigned_count, aligned) -> dict:
    """Counts that reconcile: sentences_in == aligned + sum(dropped), overall and per language."""
    per_lang = {}
    for lang in sorted(set(langs)):
        of_lang = langs == lang
        per_lang[lang] = {
            "sentences_in": int(of_lang.sum()),
            "aligned": int((of_lang & (chosen_rank >= 0)).sum()),
            "dropped": {r: int((of_lang & (reason == r)).sum()) for r in DROP_REASONS},
        }
    stats = {
        "sentences_in": int(len(langs)),
        "aligned": int(len(aligned)),
        "dropped": {r: int((reason == r).sum()) for r in DROP_REASONS},
        "per_lang": per_lang,
        "images_in": int(len(assigned_count)),
        "images_used": int((assigned_count > 0).sum()),
        "max_sentences_per_image": int(assigned_count.max(initial=0)),
        "rank_counts": {str(r): n for r, n in sorted(Counter(chosen_rank[aligned].tolist()).items())},
        "mean_score": float(scores[aligned, chosen_rank[aligned]].mean()) if len(aligned) else None,
    }
    for counts in [stats, *per_lang.values()]:
        if counts["sentences_in"] != counts["aligned"] + sum(counts["dropped"].values()):
            raise AssertionError(f"alignment counts do not reconcile: {counts}")
    return stats
