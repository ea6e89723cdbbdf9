"""Sentence-image alignment of both worlds: streamed FAISS top-k, dedup, one global assignment by score.

The paper aligns each English sentence of the translation corpus to images by "top-5 matching
and subsequent deduplication". Here that is made exact, over all sentences of a part:
  (a) exact duplicate pairs (same en, lang, text) are dropped, keeping the first in corpus
      order                                                   -> reason "duplicate_pair";
  (c) top-k candidates below min_similarity do not count; a sentence with none left
                                                              -> reason "low_similarity";
  (b) sentences are visited by descending top-1 score and take their best-scoring
      candidate image that still holds fewer than max_translations_per_image sentences;
      all candidates full                                     -> reason "image_capacity".
Ties in (b) are broken by crc32(pair_id), then adler32(pair_id): the same English sentence
paired with several languages ties exactly, and corpus order or pair_id order (which starts
with the language) would hand the scarce image slots to one language. Nothing depends on the
order of the corpus chunks, the batches or the image blocks.

Both worlds present their inputs alike: image slices (images parquet with key and split, and
an npz embedding all its images or only the part's) and corpus chunks (a corpus parquet and an
npz embedding its pairs in corpus order: all of them or only the part's). The synthetic world
is one slice and one chunk. At the paper's scale (about 105M sentences):

- pass 1 streams each chunk's part in batches of align.batch_size (the npz read incrementally)
  and searches them against the part's images in IndexFlatIP blocks of at most
  align.image_block_size rows (faiss-gpu when present), merging the blocks' top-k; the
  candidates are re-scored exactly (exact_top_k) and kept as compact arrays; duplicates are
  found per chunk (the corpus stage partitions pairs by a hash of (en, xx), so exact
  duplicates share a chunk);
- assign_by_capacity runs rule (b) once over the part's candidates;
- pass 2 re-reads each chunk's parquet and writes its aligned rows to its own output file.
Memory: the part's image embeddings (float16) + one image block (float32) + one sentence batch
+ per sentence of the part 8k + 9 bytes of candidate arrays, held from pass 1 to pass 2 (float32
scores and int32 image rows [N, k], a uint64 tie key, a duplicate flag: 49 bytes at top-5), 8
per pair of the chunk being searched, and about 30 more while assign_by_capacity runs
(tracemalloc peak at 2M sentences). Measured: align_part's tracemalloc peak grew by 59 bytes per
sentence from 100k to 400k sentences (4 chunks, top-5), so 6-8 GB at the paper's 105M sentences
x top-5. The greedy took 1 us per sentence (2M sentences, 70% of them trying all 5 candidates):
about 2 minutes at 105M.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from ..data.io import CORPUS_COLUMNS
from ..io import read_parquet, replacing, require_columns, require_file, write_json

log = logging.getLogger(__name__)

PARTS = ("train", "heldout")
DROP_REASONS = ("duplicate_pair", "low_similarity", "image_capacity")
# A sentence's outcome (int8): its chosen rank, or the negative code of its drop reason.
DUPLICATE_PAIR, LOW_SIMILARITY, IMAGE_CAPACITY = -1, -2, -3
# Written by both worlds (the synthetic world: one file per part); the name is historic.
CC12M_ALIGNMENT_SCHEMA = pa.schema([
    ("pair_id", pa.string()), ("key", pa.string()), ("score", pa.float32()), ("rank", pa.int32()),
    ("lang", pa.string()), ("en", pa.string()), ("text", pa.string()), ("slice", pa.int32()),
])
CC12M_ALIGNMENT_COLUMNS = tuple(CC12M_ALIGNMENT_SCHEMA.names)
RESCORE_ROWS = 512  # sentences re-scored at once: 512 x k x d float64 (10 MB at top-5, d 512)
GREEDY_ROWS = 1 << 16  # sentences of the greedy's Python loop converted to lists at once


# ---------------------------------------------------------------------------- npz streaming


class NpzRowReader:
    """Reads equally long arrays of an npz (as np.savez writes them) row by row, without loading them.

    np.savez stores each array as an .npy member of a zip; the member is opened as a stream,
    its header parsed, and `read(n)` returns the next n rows of every array.
    """

    def __init__(self, path, names: Sequence[str]):
        self.path = require_file(path)
        self._zip = zipfile.ZipFile(self.path)
        self._streams, self._dtypes, self._row_shapes = {}, {}, {}
        lengths = set()
        try:
            for name in names:
                member = f"{name}.npy"
                if member not in self._zip.namelist():
                    raise KeyError(f"{path}: missing array '{name}'")
                stream = self._zip.open(member)
                version = np.lib.format.read_magic(stream)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran_order, dtype = read_header(stream)
                if dtype.hasobject or (fortran_order and len(shape) > 1) or not shape:
                    raise ValueError(f"{path}: array '{name}' ({dtype}, shape {shape}) cannot be streamed by rows")
                self._streams[name], self._dtypes[name], self._row_shapes[name] = stream, dtype, shape[1:]
                lengths.add(shape[0])
        except BaseException:
            self.close()
            raise
        if len(lengths) > 1:
            self.close()
            raise ValueError(f"{path}: arrays {list(names)} differ in length {sorted(lengths)}")
        self.rows = lengths.pop() if lengths else 0
        self.position = 0

    def read(self, n: int) -> dict[str, np.ndarray]:
        n = min(n, self.rows - self.position)
        out = {}
        for name, stream in self._streams.items():
            shape = (n, *self._row_shapes[name])
            nbytes = int(np.prod(shape)) * self._dtypes[name].itemsize
            data = stream.read(nbytes)
            if len(data) != nbytes:
                raise ValueError(f"{self.path}: array '{name}' is truncated")
            out[name] = np.frombuffer(data, dtype=self._dtypes[name]).reshape(shape)
        self.position += n
        return out

    def close(self) -> None:
        for stream in self._streams.values():
            stream.close()
        self._zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------------- blocked top-k


def _resolve_gpu(use_gpu: bool | None) -> bool:
    gpus = faiss.get_num_gpus()
    if use_gpu is None:
        use_gpu = gpus > 0
    if use_gpu and gpus == 0:
        raise RuntimeError("use_gpu=True but faiss sees no GPU (faiss-cpu installed, or no CUDA device)")
    return use_gpu


def merge_top_k(scores_a, rows_a, scores_b, rows_b, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of two candidate lists by descending score, ties by ascending row."""
    scores = np.concatenate([scores_a, scores_b], axis=1)
    rows = np.concatenate([rows_a, rows_b], axis=1)
    order = np.lexsort((rows, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)


@dataclass
class BlockedImageIndex:
    """Exact inner-product search over image embeddings held in blocks of at most `block_size` rows.

    On CPU a block's IndexFlatIP is built per search from the float16 rows (building costs
    one pass over the block, small next to searching a whole sentence batch against it), so
    only one float32 block exists at a time. On GPU every block's index is built once and
    kept in GPU memory.
    """

    emb: np.ndarray
    block_size: int
    use_gpu: bool | None = None
    _gpu_indexes: list = field(default_factory=list, init=False, repr=False)

    def __post_init__(self):
        if self.emb.ndim != 2 or len(self.emb) == 0:
            raise ValueError(f"image embeddings must be a non-empty [N, d] array, got shape {self.emb.shape}")
        if self.block_size < 1:
            raise ValueError(f"image_block_size must be >= 1, got {self.block_size}")
        self.use_gpu = _resolve_gpu(self.use_gpu)
        self.starts = list(range(0, len(self.emb), self.block_size))
        log.info("faiss search on %s: %d images in %d block(s) of <= %d", self.device, len(self.emb), len(self.starts), self.block_size)
        if self.use_gpu:
            self._resources = faiss.StandardGpuResources()
            self._gpu_indexes = [faiss.index_cpu_to_gpu(self._resources, 0, self._cpu_index(start)) for start in self.starts]

    @property
    def device(self) -> str:
        return "gpu" if self.use_gpu else "cpu"

    def _cpu_index(self, start: int) -> faiss.IndexFlatIP:
        index = faiss.IndexFlatIP(self.emb.shape[1])
        index.add(np.ascontiguousarray(self.emb[start : start + self.block_size], dtype=np.float32))
        return index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 [n, k], image rows int64 [n, k]) by descending score; k <= number of images."""
        if not 1 <= k <= len(self.emb):
            raise ValueError(f"k must be in [1, {len(self.emb)}], got {k}")
        if queries.ndim != 2 or queries.shape[1] != self.emb.shape[1]:
            raise ValueError(f"query embeddings of shape {queries.shape} do not match image dim {self.emb.shape[1]}")
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        best = None
        for b, start in enumerate(self.starts):
            index = self._gpu_indexes[b] if self.use_gpu else self._cpu_index(start)
            scores, rows = index.search(queries, min(k, index.ntotal))
            rows = rows + start
            best = (scores, rows) if best is None else merge_top_k(*best, scores, rows, k)
        return best


def load_image_embeddings(image_npz_paths: Iterable, keys=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, slice index per row, float16 emb) of the npz files in order, keeping only `keys` if given."""
    keep = None if keys is None else set(keys)
    ids, slices, embs = [], [], []
    for slice_index, path in enumerate(image_npz_paths):
        with np.load(require_file(path)) as npz:
            for name in ("ids", "emb"):
                if name not in npz.files:
                    raise KeyError(f"{path}: missing array '{name}'")
            slice_ids, emb = npz["ids"].astype(str), npz["emb"]
        rows = np.arange(len(slice_ids)) if keep is None else np.flatnonzero([i in keep for i in slice_ids])
        ids.append(slice_ids[rows])
        slices.append(np.full(len(rows), slice_index, dtype=np.int32))
        embs.append(emb[rows].astype(np.float16))
    if not embs:
        raise ValueError("no image embedding files given")
    return np.concatenate(ids), np.concatenate(slices), np.concatenate(embs)


def streamed_top_k(images, sentence_emb_batches: Iterable[np.ndarray], k: int, image_block_size: int,
                   use_gpu: bool | None = None, keys=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (scores [n, k], image rows [n, k]) for each sentence batch, exact inner-product top-k.

    `images` is an [M, d] embedding array, or a list of image npz paths (ids, emb) whose rows
    are concatenated in order, restricted to `keys` if given (the rows returned index that
    concatenation; load_image_embeddings gives its ids). Images are searched in IndexFlatIP
    blocks of at most image_block_size rows, merged per batch: memory is O(images + one block +
    one batch), whatever the number of sentences. use_gpu None: GPU iff faiss sees one.
    """
    emb = images if isinstance(images, np.ndarray) else load_image_embeddings(images, keys)[2]
    index = BlockedImageIndex(emb, image_block_size, use_gpu)
    for batch in sentence_emb_batches:
        yield index.search(batch, k)


# ----------------------------------------------------------------------- candidates and (b)


def exact_top_k(queries: np.ndarray, image_emb: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """faiss's top-k image rows per query, re-scored and re-sorted: (scores float32, rows int32) [n, k].

    A score is the float64 inner product of the stored float16 vectors (their products are exact
    in float64) rounded once to float32; ties by ascending row. faiss's own scores change in the
    last bit with the batch and the position a query is searched at, so the same English
    sentence of two languages would not tie exactly.
    """
    scores = np.empty(rows.shape, dtype=np.float32)
    for start in range(0, len(rows), RESCORE_ROWS):
        block = slice(start, start + RESCORE_ROWS)
        scores[block] = np.einsum("nd,nkd->nk", queries[block].astype(np.float64), image_emb[rows[block]].astype(np.float64))
    order = np.lexsort((rows, -scores), axis=1)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1).astype(np.int32)


def tie_key(pair_id: str) -> int:
    """Rule (b)'s tie-break as one uint64: crc32 of the pair_id above its adler32."""
    data = pair_id.encode()
    return zlib.crc32(data) << 32 | zlib.adler32(data)


def pair_hash(en: str, lang: str, text: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{en}\0{lang}\0{text}".encode(), digest_size=8).digest(), "little")


def first_occurrences(hashes: np.ndarray) -> np.ndarray:
    """Mask of the first occurrence of each value."""
    first = np.zeros(len(hashes), dtype=bool)
    first[np.unique(hashes, return_index=True)[1]] = True
    return first


def assign_by_capacity(scores: np.ndarray, rows: np.ndarray, tie_keys: np.ndarray, duplicate: np.ndarray,
                       min_similarity: float, capacity: int, n_images: int) -> np.ndarray:
    """Rules (c) and (b) of the module docstring, once over all sentences of a part; returns each
    sentence's outcome (int8: chosen rank, or DUPLICATE_PAIR, LOW_SIMILARITY, IMAGE_CAPACITY).

    scores float32 [N, k] and rows int32 [N, k] are the candidates by descending score,
    tie_keys uint64 [N], duplicate bool [N] (rule (a)). The visiting order is one lexsort; the
    greedy is a Python loop over GREEDY_ROWS sentences at a time turned into lists, since each
    choice depends on all earlier ones (memory and time: the module docstring).
    """
    n_eligible = (scores >= min_similarity).sum(axis=1).astype(np.int8)  # a prefix: scores descend
    outcome = np.full(len(scores), IMAGE_CAPACITY, dtype=np.int8)
    outcome[n_eligible == 0] = LOW_SIMILARITY
    outcome[duplicate] = DUPLICATE_PAIR
    in_play = np.flatnonzero(outcome == IMAGE_CAPACITY)
    order = in_play[np.lexsort((tie_keys[in_play], -scores[in_play, 0]))]  # last key is primary
    del in_play
    taken = [0] * n_images + [capacity]  # the last: where ineligible candidates point, always full
    for start in range(0, len(order), GREEDY_ROWS):
        block = order[start : start + GREEDY_ROWS]
        candidates = np.where(np.arange(rows.shape[1]) < n_eligible[block, None], rows[block], n_images)
        chosen = []
        for images in candidates.tolist():
            for rank, image in enumerate(images):
                if taken[image] < capacity:
                    taken[image] += 1
                    chosen.append(rank)
                    break
            else:
                chosen.append(IMAGE_CAPACITY)
        outcome[block] = chosen
    return outcome


# ----------------------------------------------------------------------------------- inputs


def _image_keys(images_parquet) -> tuple[list[str], list[str]]:
    """(keys, splits) of one images parquet, reading only those two columns."""
    table = read_parquet(images_parquet, ["key", "split"])
    keys, splits = table.column("key").to_pylist(), table.column("split").to_pylist()
    if len(set(keys)) != len(keys):
        raise ValueError(f"{images_parquet}: duplicate image keys")
    bad = sorted(set(splits) - set(PARTS))
    if bad:
        raise ValueError(f"{images_parquet}: unknown split value(s) {bad}")
    return keys, splits


def load_part_images(image_slices: Sequence[tuple], part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keys, slice index, float16 emb) of the part's images, in npz order; image_slices[i] = (images
    parquet, npz) of slice i. A slice's npz embeds all the images of its parquet, or the part's only."""
    keys, slices, embs = [], [], []
    for slice_index, (images_parquet, images_npz) in enumerate(image_slices):
        parquet_keys, splits = _image_keys(images_parquet)
        ids, _, emb = load_image_embeddings([images_npz])
        part_keys = {k for k, s in zip(parquet_keys, splits) if s == part}
        embedded = set(ids.tolist())
        if len(embedded) != len(ids) or embedded not in (set(parquet_keys), part_keys):
            missing = sorted(part_keys - embedded)[:3]
            raise ValueError(f"{images_npz}: embedding ids are neither the keys of {images_parquet} nor its {part} keys "
                             f"({len(ids)} ids, {len(parquet_keys)} images; e.g. missing {missing}): stale embeddings?")
        rows = np.flatnonzero([i in part_keys for i in ids.tolist()])
        keys.append(ids[rows])
        slices.append(np.full(len(rows), slice_index, dtype=np.int32))
        embs.append(emb[rows])
    if sum(len(k) for k in keys) == 0:
        raise ValueError(f"no {part} images in {[str(p) for p, _ in image_slices]}")
    return np.concatenate(keys), np.concatenate(slices), np.concatenate(embs)


def _split_counts(corpus_parquet) -> dict[str, int]:
    """Pairs per split of a corpus chunk (its split column only)."""
    counts = pc.value_counts(read_parquet(corpus_parquet, ["split"]).column("split"))
    counts = dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))
    unknown = sorted(set(counts) - set(PARTS))
    if unknown:
        raise ValueError(f"{corpus_parquet}: unknown split value(s) {unknown}")
    return {part: counts.get(part, 0) for part in PARTS}


def _file_batches(corpus_parquet, part: str, batch_size: int) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """(batch, mask of the part's rows) for each batch_size rows of a corpus chunk, in file order."""
    for batch in require_columns(corpus_parquet, CORPUS_COLUMNS).iter_batches(batch_size=batch_size, columns=list(CORPUS_COLUMNS)):
        yield batch, batch.column("split").to_numpy(zero_copy_only=False) == part


def _part_sentences(corpus_parquet, sentences_npz, part: str, n_part: int, batch_size: int):
    """Yield (the part's rows as a RecordBatch, their float16 embeddings) of a corpus chunk, in corpus order."""
    n_pairs = pq.ParquetFile(require_file(corpus_parquet)).metadata.num_rows
    with NpzRowReader(sentences_npz, ("ids", "emb")) as npz:
        every_pair = npz.rows == n_pairs
        if not every_pair and npz.rows != n_part:
            raise ValueError(f"{sentences_npz}: {npz.rows} embeddings for the {n_pairs} pairs ({n_part} {part}) of "
                             f"{corpus_parquet}: stale embeddings?")
        for batch, mask in _file_batches(corpus_parquet, part, batch_size):
            arrays = npz.read(len(mask) if every_pair else int(mask.sum()))
            pair_ids = batch.column("pair_id").to_numpy(zero_copy_only=False).astype(str)
            expected = pair_ids if every_pair else pair_ids[mask]
            if not np.array_equal(arrays["ids"].astype(str), expected):
                first = int(np.flatnonzero(arrays["ids"].astype(str) != expected)[0])
                raise ValueError(f"{sentences_npz}: embedding {arrays['ids'][first]!r} where {corpus_parquet} has "
                                 f"{expected[first]!r}: stale embeddings?")
            yield batch.filter(pa.array(mask)), arrays["emb"][mask] if every_pair else arrays["emb"]


# ------------------------------------------------------------------------------- alignment


@dataclass
class _Counts:
    """Alignment counters summed over the written batches."""

    per_lang: dict = field(default_factory=dict)
    rank_counts: Counter = field(default_factory=Counter)
    score_sum: float = 0.0

    def add(self, langs: np.ndarray, outcome: np.ndarray, chosen_score: np.ndarray) -> None:
        """chosen_score: the scores of the aligned sentences (outcome >= 0), in order."""
        for lang in np.unique(langs).tolist():
            of_lang = outcome[langs == lang]
            counts = self.per_lang.setdefault(lang, {"sentences_in": 0, "aligned": 0, "dropped": dict.fromkeys(DROP_REASONS, 0)})
            counts["sentences_in"] += len(of_lang)
            counts["aligned"] += int((of_lang >= 0).sum())
            for code, reason in enumerate(DROP_REASONS, start=1):
                counts["dropped"][reason] += int((of_lang == -code).sum())
        self.rank_counts.update(outcome[outcome >= 0].tolist())
        self.score_sum += float(chosen_score.astype(np.float64).sum())

    def stats(self, assigned_count: np.ndarray) -> dict:
        """Counts that reconcile (checked): sentences_in == aligned + sum(dropped), overall and per language."""
        per_lang = {lang: self.per_lang[lang] for lang in sorted(self.per_lang)}
        aligned = sum(c["aligned"] for c in per_lang.values())
        stats = {
            "sentences_in": sum(c["sentences_in"] for c in per_lang.values()),
            "aligned": aligned,
            "dropped": {r: sum(c["dropped"][r] for c in per_lang.values()) for r in DROP_REASONS},
            "per_lang": per_lang,
            "images_in": int(len(assigned_count)),
            "images_used": int((assigned_count > 0).sum()),
            "max_sentences_per_image": int(assigned_count.max(initial=0)),
            "rank_counts": {str(r): n for r, n in sorted(self.rank_counts.items())},
            "mean_score": self.score_sum / aligned if aligned else None,
        }
        for counts in [stats, *per_lang.values()]:
            if counts["sentences_in"] != counts["aligned"] + sum(counts["dropped"].values()):
                raise AssertionError(f"alignment counts do not reconcile: {counts}")
        return stats


def align_chunks(part: str, image_slices: Sequence[tuple], corpus_chunks: Sequence[tuple], align_cfg: dict,
                 out_stats_json, use_gpu: bool | None = None) -> dict:
    """Align the part's corpus pairs to the part's images (the module docstring); write each chunk's aligned
    rows and the stats json. Returns the stats.

    image_slices[i] = (images parquet, image npz) of slice i; corpus_chunks = [(corpus parquet, sentence npz,
    output parquet), ...]. Output columns: CC12M_ALIGNMENT_SCHEMA (pair_id, key, score, rank, lang, en, text,
    slice), rows in corpus order.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    top_k, capacity = int(align_cfg["top_k"]), int(align_cfg["max_translations_per_image"])
    min_similarity = float(align_cfg["min_similarity"])
    batch_size, image_block_size = int(align_cfg["batch_size"]), int(align_cfg["image_block_size"])
    if batch_size < 1 or not 1 <= top_k <= 127 or capacity < 1:  # ranks are int8
        raise ValueError(f"align: batch_size and max_translations_per_image must be >= 1, top_k in [1, 127], got {align_cfg}")
    outputs = [Path(out) for _, _, out in corpus_chunks]
    if not outputs or len(set(outputs)) != len(outputs):
        raise ValueError(f"alignment output files are missing or not unique: {outputs}")

    image_keys, image_slice, image_emb = load_part_images(image_slices, part)
    if len(image_keys) >= 2**31:
        raise ValueError(f"{len(image_keys)} {part} images: candidate rows are int32")
    index = BlockedImageIndex(image_emb, image_block_size, use_gpu)
    k = min(top_k, len(image_keys))
    split_counts = [_split_counts(corpus) for corpus, _, _ in corpus_chunks]
    n = sum(c[part] for c in split_counts)
    scores, rows = np.empty((n, k), dtype=np.float32), np.empty((n, k), dtype=np.int32)
    tie_keys, duplicate = np.empty(n, dtype=np.uint64), np.empty(n, dtype=bool)

    at, distinct_pairs = 0, []
    for (corpus, sentences_npz, out), counts in zip(corpus_chunks, split_counts):
        start, hashes = at, np.empty(counts[part], dtype=np.uint64)
        for batch, emb in tqdm(_part_sentences(corpus, sentences_npz, part, counts[part], batch_size),
                               desc=f"search {part} {Path(corpus).name}", leave=False):
            stop = at + batch.num_rows
            scores[at:stop], rows[at:stop] = exact_top_k(emb, image_emb, index.search(emb, k)[1])
            pair_ids, langs, ens, texts = (batch.column(c).to_pylist() for c in ("pair_id", "lang", "en", "text"))
            tie_keys[at:stop] = np.fromiter(map(tie_key, pair_ids), dtype=np.uint64, count=len(pair_ids))
            hashes[at - start : stop - start] = np.fromiter(map(pair_hash, ens, langs, texts), dtype=np.uint64,
                                                            count=len(pair_ids))
            at = stop
        first = first_occurrences(hashes)
        duplicate[start:at] = ~first
        distinct_pairs.append(int(first.sum()))
    del hashes, first

    outcome = assign_by_capacity(scores, rows, tie_keys, duplicate, min_similarity, capacity, len(image_keys))
    aligned = np.flatnonzero(outcome >= 0)
    assigned_count = np.bincount(rows[aligned, outcome[aligned]], minlength=len(image_keys))
    del aligned

    at, counts, chunk_stats = 0, _Counts(), []
    for (corpus, _, out), n_distinct in zip(corpus_chunks, distinct_pairs):
        start = at
        with replacing(out) as tmp, pq.ParquetWriter(tmp, CC12M_ALIGNMENT_SCHEMA, compression="zstd") as writer:
            for batch, mask in _file_batches(corpus, part, batch_size):
                batch = batch.filter(pa.array(mask))
                sentence_outcome = outcome[at : at + batch.num_rows]
                aligned = np.flatnonzero(sentence_outcome >= 0)
                rank = sentence_outcome[aligned]
                image, score = rows[at + aligned, rank], scores[at + aligned, rank]
                writer.write_table(pa.table({
                    "pair_id": batch.column("pair_id").take(aligned),
                    "key": image_keys[image].tolist(),
                    "score": score,
                    "rank": rank.astype(np.int32),
                    **{c: batch.column(c).take(aligned) for c in ("lang", "en", "text")},
                    "slice": image_slice[image],
                }, schema=CC12M_ALIGNMENT_SCHEMA))
                counts.add(batch.column("lang").to_numpy(zero_copy_only=False), sentence_outcome, score)
                at += batch.num_rows
        chunk_stats.append({"file": Path(out).name, "sentences_in": at - start,
                            "aligned": int((outcome[start:at] >= 0).sum()), "distinct_pairs": n_distinct})

    stats = counts.stats(assigned_count)
    stats.update(part=part, top_k=top_k, max_translations_per_image=capacity, min_similarity=min_similarity,
                 batch_size=batch_size, image_block_size=image_block_size, faiss_device=index.device,
                 other_split_pairs=sum(sum(c.values()) - c[part] for c in split_counts), chunks=chunk_stats)
    write_json(stats, out_stats_json)
    log.info("align %s: %d sentences -> %d aligned, dropped %s (faiss on %s)", part, stats["sentences_in"],
             stats["aligned"], stats["dropped"], index.device)
    return stats


def align_part(part: str, image_slices: Sequence[tuple], corpus_chunks: Sequence[tuple], align_cfg: dict,
               out_dir, out_stats_json, use_gpu: bool | None = None) -> dict:
    """align_chunks with out_dir/{corpus chunk file name} as each chunk's output, after removing the
    *.parquet files of out_dir that no chunk names (readers take the directory as one dataset)."""
    names = [Path(corpus).name for corpus, _ in corpus_chunks]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.parquet"):
        if stale.name not in names:
            stale.unlink()
    return align_chunks(part, image_slices, [(c, s, out_dir / name) for (c, s), name in zip(corpus_chunks, names)],
                        align_cfg, out_stats_json, use_gpu)
