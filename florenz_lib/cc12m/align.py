"""Sentence-image alignment at CC12M scale: streamed FAISS top-k, dedup, per-image capacity.

The rules are the synthetic world's (florenz_lib.data.align): exact duplicate pairs dropped
("duplicate_pair"), top-k candidates below min_similarity ignored ("low_similarity"),
sentences visited by descending top-1 score (ties: crc32(pair_id), then pair_id) taking
their best candidate image with fewer than max_translations_per_image sentences
("image_capacity"). What changes is that nothing is O(number of sentences):

- sentences are streamed from each corpus chunk and its embedding npz in batches of
  align.batch_size (the npz members are read incrementally from the zip, never loaded);
- each batch is searched against the part's image embeddings in IndexFlatIP blocks of at
  most align.image_block_size rows, and the per-block top-k lists are merged;
- the capacity greedy runs within each batch (chunks in the given order, batches in corpus
  order), with global per-image counters;
- duplicates are found with a per-chunk set of 64-bit hashes: the corpus stage partitions
  pairs by a hash of (en, xx), so exact duplicates share a chunk;
- aligned rows are streamed to alignment/{part}/{lang}-{chunk:03d}.parquet, and the stats
  are counters summed per batch.
Memory: the part's image embeddings (float16) + one image block + one sentence batch + 8
bytes per distinct pair of the current chunk.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ..data.align import ALIGNMENT_SCHEMA, DROP_REASONS, assign_by_capacity
from ..data.io import CORPUS_COLUMNS
from ..io import replacing, require_columns, require_file, write_json

log = logging.getLogger(__name__)

PARTS = ("train", "heldout")
CC12M_ALIGNMENT_SCHEMA = pa.schema(
    list(ALIGNMENT_SCHEMA) + [("lang", pa.string()), ("en", pa.string()), ("text", pa.string()), ("slice", pa.int32())]
)
CC12M_ALIGNMENT_COLUMNS = tuple(CC12M_ALIGNMENT_SCHEMA.names)


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


# ----------------------------------------------------------------------------- alignment


class HashSet64:
    """A set of uint64 hashes, 8 bytes each: sorted runs merged like a binary counter (O(log n) runs)."""

    def __init__(self):
        self.runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(run) for run in self.runs)

    def add_new(self, hashes: np.ndarray) -> np.ndarray:
        """Add the hashes; return a mask of those not seen before (the first occurrence within `hashes` counts as new)."""
        hashes = np.asarray(hashes, dtype=np.uint64)
        new = np.zeros(len(hashes), dtype=bool)
        new[np.unique(hashes, return_index=True)[1]] = True
        for run in self.runs:
            at = np.minimum(np.searchsorted(run, hashes), len(run) - 1)
            new &= run[at] != hashes
        run = np.unique(hashes[new])
        while self.runs and len(self.runs[-1]) <= len(run):
            run = np.union1d(self.runs.pop(), run)
        if len(run):
            self.runs.append(run)
        return new


def pair_hash(en: str, lang: str, text: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{en}\0{lang}\0{text}".encode(), digest_size=8).digest(), "little")


def _image_keys(images_parquet) -> tuple[list[str], list[str]]:
    """(keys, splits) of one images parquet, reading only those two columns."""
    table = require_columns(images_parquet, ["key", "split"]).read(columns=["key", "split"])
    keys, splits = table.column("key").to_pylist(), table.column("split").to_pylist()
    if len(set(keys)) != len(keys):
        raise ValueError(f"{images_parquet}: duplicate image keys")
    bad = sorted(set(splits) - set(PARTS))
    if bad:
        raise ValueError(f"{images_parquet}: unknown split value(s) {bad}")
    return keys, splits


def load_part_images(image_slices: Sequence[tuple], part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keys, slice index, float16 emb) of the part's images; image_slices[i] = (images parquet, npz) of slice i.

    A slice's npz must embed exactly the images of its parquet (both splits).
    """
    keys, slices, embs = [], [], []
    for slice_index, (images_parquet, images_npz) in enumerate(image_slices):
        parquet_keys, splits = _image_keys(images_parquet)
        ids, _, emb = load_image_embeddings([images_npz])
        if len(ids) != len(parquet_keys) or set(ids.tolist()) != set(parquet_keys):
            missing = sorted(set(parquet_keys) - set(ids.tolist()))[:3]
            raise ValueError(f"{images_npz}: embedding ids do not match the keys of {images_parquet} "
                             f"({len(ids)} ids, {len(parquet_keys)} images; e.g. missing {missing}): stale embeddings?")
        part_keys = {k for k, s in zip(parquet_keys, splits) if s == part}
        rows = np.flatnonzero([i in part_keys for i in ids.tolist()])
        keys.append(ids[rows])
        slices.append(np.full(len(rows), slice_index, dtype=np.int32))
        embs.append(emb[rows])
    if sum(len(k) for k in keys) == 0:
        raise ValueError(f"no {part} images in {[str(p) for p, _ in image_slices]}")
    return np.concatenate(keys), np.concatenate(slices), np.concatenate(embs)


def _part_sentence_batches(corpus_parquet, sentences_npz, part: str, batch_size: int, skipped: Counter):
    """Yield (corpus rows as a pa.Table, float emb) of the part's pairs in corpus order, batch_size at a time.

    The sentence npz must hold the chunk's pairs in corpus order (the embedding stage writes
    it so); rows of the other split are counted in `skipped`.
    """
    parquet = require_columns(corpus_parquet, CORPUS_COLUMNS)
    pending, pending_emb, pending_n = [], [], 0
    with NpzRowReader(sentences_npz, ("ids", "emb")) as npz:
        if npz.rows != parquet.metadata.num_rows:
            raise ValueError(f"{sentences_npz}: {npz.rows} embeddings for {parquet.metadata.num_rows} pairs of {corpus_parquet}: stale embeddings?")
        for record_batch in parquet.iter_batches(batch_size=batch_size, columns=list(CORPUS_COLUMNS)):
            arrays = npz.read(record_batch.num_rows)
            pair_ids = record_batch.column("pair_id").to_numpy(zero_copy_only=False).astype(str)
            if not np.array_equal(arrays["ids"].astype(str), pair_ids):
                first = int(np.flatnonzero(arrays["ids"].astype(str) != pair_ids)[0])
                raise ValueError(f"{sentences_npz}: row {npz.position - record_batch.num_rows + first} is "
                                 f"{arrays['ids'][first]!r} but {corpus_parquet} has {pair_ids[first]!r}: stale embeddings?")
            splits = record_batch.column("split").to_numpy(zero_copy_only=False)
            unknown = sorted(set(splits.tolist()) - set(PARTS))
            if unknown:
                raise ValueError(f"{corpus_parquet}: unknown split value(s) {unknown}")
            mask = splits == part
            skipped["other_split_pairs"] += int((~mask).sum())
            pending.append(record_batch.filter(pa.array(mask)))
            pending_emb.append(arrays["emb"][mask])
            pending_n += int(mask.sum())
            while pending_n >= batch_size:
                table, emb = pa.Table.from_batches(pending, schema=record_batch.schema), np.concatenate(pending_emb)
                yield table.slice(0, batch_size), emb[:batch_size]
                pending, pending_emb = table.slice(batch_size).to_batches(), [emb[batch_size:].copy()]
                pending_n -= batch_size
    if pending_n:
        yield pa.Table.from_batches(pending), np.concatenate(pending_emb)


@dataclass
class _Counts:
    """Alignment counters summed over batches (nothing per sentence is kept)."""

    per_lang: dict = field(default_factory=dict)
    rank_counts: Counter = field(default_factory=Counter)
    score_sum: float = 0.0

    def add(self, langs: np.ndarray, reason: np.ndarray, chosen_rank: np.ndarray, chosen_score: np.ndarray) -> None:
        for lang in np.unique(langs).tolist():
            of_lang = langs == lang
            counts = self.per_lang.setdefault(lang, {"sentences_in": 0, "aligned": 0, "dropped": dict.fromkeys(DROP_REASONS, 0)})
            counts["sentences_in"] += int(of_lang.sum())
            counts["aligned"] += int((of_lang & (chosen_rank >= 0)).sum())
            for r in DROP_REASONS:
                counts["dropped"][r] += int((of_lang & (reason == r)).sum())
        aligned = chosen_rank >= 0
        self.rank_counts.update(chosen_rank[aligned].tolist())
        self.score_sum += float(chosen_score[aligned].astype(np.float64).sum())

    def stats(self, assigned_count: np.ndarray) -> dict:
        """The keys of florenz_lib.data.align.alignment_stats, checked to reconcile."""
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


def align_part(part: str, image_slices: Sequence[tuple], corpus_chunks: Sequence[tuple], align_cfg: dict,
               out_dir, out_stats_json, use_gpu: bool | None = None) -> dict:
    """Align the part's corpus pairs to the part's images; write out_dir/{lang}-{chunk:03d}.parquet and stats.

    image_slices[i] = (images/slice-i.parquet, embeddings/images/slice-i.npz); corpus_chunks =
    [(corpus/{lang}-{chunk}.parquet, embeddings/sentences/{lang}-{chunk}.npz), ...], processed in
    order; each output file is named after its corpus chunk. Output columns: CC12M_ALIGNMENT_SCHEMA
    (pair_id, key, score, rank, lang, en, text, slice), rows in corpus order. Returns the stats.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    top_k, capacity = int(align_cfg["top_k"]), int(align_cfg["max_translations_per_image"])
    min_similarity, batch_size = float(align_cfg["min_similarity"]), int(align_cfg["batch_size"])
    image_block_size = int(align_cfg["image_block_size"])
    if batch_size < 1 or top_k < 1 or capacity < 1:
        raise ValueError(f"align: batch_size, top_k and max_translations_per_image must be >= 1, got {align_cfg}")
    names = [Path(corpus).name for corpus, _ in corpus_chunks]
    if len(set(names)) != len(names):
        raise ValueError(f"corpus chunk file names are not unique: {names}")

    image_keys, image_slice, image_emb = load_part_images(image_slices, part)
    index = BlockedImageIndex(image_emb, image_block_size, use_gpu)
    k = min(top_k, len(image_keys))
    assigned_count = np.zeros(len(image_keys), dtype=np.int32)
    counts, skipped, chunk_stats = _Counts(), Counter(), []

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.parquet"):  # a rerun with fewer chunks must not leave old files to readers of the dir
        if stale.name not in names:
            stale.unlink()
    for (corpus_parquet, sentences_npz), name in zip(corpus_chunks, names):
        seen = HashSet64()
        chunk = Counter()
        with replacing(out_dir / name) as tmp, pq.ParquetWriter(tmp, CC12M_ALIGNMENT_SCHEMA, compression="zstd") as writer:
            batches = _part_sentence_batches(corpus_parquet, sentences_npz, part, batch_size, skipped)
            for table, emb in tqdm(batches, desc=f"align {part} {name}", leave=False):
                pair_ids = np.array(table.column("pair_id").to_pylist(), dtype=str)
                langs, ens, texts = (table.column(c).to_pylist() for c in ("lang", "en", "text"))
                reason = np.full(len(pair_ids), "", dtype=object)
                hashes = np.fromiter((pair_hash(*p) for p in zip(ens, langs, texts)), dtype=np.uint64, count=len(pair_ids))
                reason[~seen.add_new(hashes)] = "duplicate_pair"
                scores, rows = index.search(emb, k)
                chosen_rank = assign_by_capacity(pair_ids, scores, rows, reason, min_similarity, capacity, assigned_count)
                aligned = np.flatnonzero(chosen_rank >= 0)
                image = rows[aligned, chosen_rank[aligned]]
                score = scores[aligned, chosen_rank[aligned]]
                writer.write_table(pa.table({
                    "pair_id": pair_ids[aligned].tolist(),
                    "key": image_keys[image].tolist(),
                    "score": score,
                    "rank": chosen_rank[aligned].astype(np.int32),
                    "lang": table.column("lang").take(aligned),
                    "en": table.column("en").take(aligned),
                    "text": table.column("text").take(aligned),
                    "slice": image_slice[image],
                }, schema=CC12M_ALIGNMENT_SCHEMA))
                chosen_score = np.zeros(len(pair_ids), dtype=np.float32)
                chosen_score[aligned] = score
                counts.add(np.array(langs, dtype=object), reason, chosen_rank, chosen_score)
                chunk.update(sentences_in=len(pair_ids), aligned=len(aligned))
        chunk_stats.append({"file": name, "sentences_in": chunk["sentences_in"], "aligned": chunk["aligned"], "distinct_pairs": len(seen)})

    stats = counts.stats(assigned_count)
    stats.update(part=part, top_k=top_k, max_translations_per_image=capacity, min_similarity=min_similarity,
                 batch_size=batch_size, image_block_size=image_block_size, faiss_device=index.device,
                 other_split_pairs=skipped["other_split_pairs"], chunks=chunk_stats)
    write_json(stats, out_stats_json)
    log.info("align %s: %d sentences -> %d aligned, dropped %s (faiss on %s)", part, stats["sentences_in"],
             stats["aligned"], stats["dropped"], index.device)
    return stats
