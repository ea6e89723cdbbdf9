"""CCMatrix en->XX readers and the per-language corpus builder of the cc12m world.

Two input formats (cc12m.corpus.format), plain or gzip-compressed (a name ending in .gz):
  moses  two aligned text files per language (OPUS: CCMatrix.de-en.en / CCMatrix.de-en.de),
         one sentence per line; files of unequal length are an error.
  tsv    one pair per line: score<TAB>en<TAB>xx (the score is not used).

Every line read is either written or dropped under exactly one reason, checked in this order:
  wrong_field_count     (tsv) not exactly three tab-separated fields
  empty                 either side is empty after stripping whitespace
  too_short / too_long  either side has fewer than min_chars / more than max_chars characters
  length_ratio          longer / shorter side > max_length_ratio, in ratio units (below)
  source_equals_target  both sides equal up to case (untranslated copies)
  wrong_script          fewer than MIN_SCRIPT_SHARE of a side's letters are in its language's
                        script (EXPECTED_SCRIPT: Latin for en/de/fr/es, Cyrillic for ru, Han
                        for zh); a side without letters fails too
  over_max_pairs        a line after the first max_pairs_per_lang valid pairs (these lines are
                        counted, not filtered, and still checked for Moses alignment)

Ratio units: a character counts 1, except a Han, kana or Hangul character, which counts
WIDE_CHAR_WEIGHT. In parallel text an English sentence has about three times as many
characters as its Chinese translation, so a plain character ratio with the default limit
(3.0) would drop about half of the correct en-zh pairs.

Pairs are partitioned into n_chunks files by a stable hash of (en, xx), so exact duplicates
land in the same chunk (the alignment deduplicates within a chunk); a pair is held out iff
stable_unit_hash((en, xx), seed) < heldout_fraction. pair_id = f"{lang}-{line_number:09d}"
with 1-based line numbers of the input.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import itertools
import logging
import unicodedata
from collections import Counter
from pathlib import Path
from typing import IO, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ..config import ConfigError
from ..data.io import CORPUS_COLUMNS
from ..io import replacing, write_json
from .download import stable_unit_hash

log = logging.getLogger(__name__)

CORPUS_SCHEMA = pa.schema([(name, pa.string()) for name in CORPUS_COLUMNS])
DROP_REASONS = ("wrong_field_count", "empty", "too_short", "too_long", "length_ratio",
                "source_equals_target", "wrong_script", "over_max_pairs")
EXPECTED_SCRIPT = {"en": "LATIN", "de": "LATIN", "fr": "LATIN", "es": "LATIN", "ru": "CYRILLIC", "zh": "CJK"}
MIN_SCRIPT_SHARE = 0.5
WIDE_CHAR_WEIGHT = 3
_WIDE_SCRIPTS = frozenset({"CJK", "HIRAGANA", "KATAKANA", "HANGUL"})
ROW_GROUP_ROWS = 50_000  # rows buffered per chunk before a parquet row group is written


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without its line ending); undecodable UTF-8 names file:line.

    Read as bytes and split on b"\\n" only: text-mode iteration would also split on a lone
    \\r, which would shift one Moses file against the other.
    """
    with _open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.rstrip(b"\r\n").decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid UTF-8 ({error})") from None


def iter_moses(en_path, xx_path) -> Iterator[tuple[int, str, str]]:
    """Yield (line_number, en, xx) from two aligned Moses files (plain or .gz).

    ValueError naming both files and the line where the shorter one ends if they differ in length.
    """
    en_path, xx_path = Path(en_path), Path(xx_path)
    missing = object()
    for en_line, xx_line in itertools.zip_longest(_lines(en_path), _lines(xx_path), fillvalue=missing):
        if en_line is missing or xx_line is missing:
            longer, shorter = (xx_path, en_path) if en_line is missing else (en_path, xx_path)
            number = (xx_line if en_line is missing else en_line)[0]
            raise ValueError(f"Moses files are not aligned: {shorter} ends after line {number - 1} "
                             f"but {longer} goes on at line {number}")
        yield en_line[0], en_line[1], xx_line[1]


def iter_tsv(path) -> Iterator[tuple[int, list[str]]]:
    """Yield (line_number, tab-separated fields) of a scored TSV (plain or .gz); fields are not checked."""
    for number, line in _lines(Path(path)):
        yield number, line.split("\t")


@functools.lru_cache(maxsize=1 << 16)
def _script(char: str) -> str:
    """First word of the character's Unicode name: LATIN, CYRILLIC, CJK, HIRAGANA, ... ("" if unnamed)."""
    return unicodedata.name(char, "").split(" ", 1)[0]


def _profile(text: str, script: str) -> tuple[int, int, int]:
    """(letters, letters in `script`, ratio length) of a text."""
    letters = in_script = wide = 0
    for char, count in Counter(text).items():  # distinct characters: far fewer Python steps per sentence
        if char.isalpha():
            letters += count
            name = _script(char)
            in_script += count * (name == script)
            wide += count * (name in _WIDE_SCRIPTS)
    return letters, in_script, len(text) + (WIDE_CHAR_WEIGHT - 1) * wide


def drop_reason(en: str, xx: str, lang: str, min_chars: int, max_chars: int, max_length_ratio: float) -> str | None:
    """The reason a stripped pair is dropped (see the module docstring), or None if it is kept."""
    if not en or not xx:
        return "empty"
    if len(en) < min_chars or len(xx) < min_chars:
        return "too_short"
    if len(en) > max_chars or len(xx) > max_chars:
        return "too_long"
    en_letters, en_in_script, en_length = _profile(en, EXPECTED_SCRIPT["en"])
    xx_letters, xx_in_script, xx_length = _profile(xx, EXPECTED_SCRIPT[lang])
    if max(en_length, xx_length) > max_length_ratio * min(en_length, xx_length):
        return "length_ratio"
    if en.casefold() == xx.casefold():
        return "source_equals_target"
    for letters, in_script in ((en_letters, en_in_script), (xx_letters, xx_in_script)):
        if not letters or in_script < MIN_SCRIPT_SHARE * letters:
            return "wrong_script"
    return None


def _source(lang: str, corpus_cfg: dict) -> tuple[dict, Iterator[tuple[int, str | None, str | None]]]:
    """(the input file(s) as configured, iterator of (line_number, en, xx); en is None for a bad TSV line)."""
    files = corpus_cfg.get("files") or {}
    if lang not in files:
        raise ConfigError(f"cc12m.corpus.files.{lang}: no CCMatrix file configured for language '{lang}'")
    entry, fmt = files[lang], corpus_cfg.get("format")

    def existing(path, key: str) -> Path:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{key}: no such file {path}")
        return Path(path)

    if fmt == "moses":
        if not isinstance(entry, dict) or set(entry) != {"en", "xx"}:
            raise ConfigError(f"cc12m.corpus.files.{lang}: format 'moses' needs a mapping with keys en and xx, got {entry!r}")
        en_path = existing(entry["en"], f"cc12m.corpus.files.{lang}.en")
        xx_path = existing(entry["xx"], f"cc12m.corpus.files.{lang}.xx")
        return {"en": str(en_path), "xx": str(xx_path)}, iter_moses(en_path, xx_path)
    if fmt == "tsv":
        if not isinstance(entry, (str, Path)):
            raise ConfigError(f"cc12m.corpus.files.{lang}: format 'tsv' needs one path, got {entry!r}")
        path = existing(entry, f"cc12m.corpus.files.{lang}")
        rows = ((n, *fields[1:]) if len(fields) == 3 else (n, None, None) for n, fields in iter_tsv(path))
        return {"tsv": str(path)}, rows
    raise ConfigError(f"cc12m.corpus.format: expected 'moses' or 'tsv', got {fmt!r}")


class _ChunkWriter:
    """Buffers one chunk's rows and writes them to a parquet file in row groups of ROW_GROUP_ROWS."""

    def __init__(self, path: Path):
        self.writer = pq.ParquetWriter(path, CORPUS_SCHEMA, compression="zstd")
        self.buffer: dict[str, list[str]] = {name: [] for name in CORPUS_COLUMNS}
        self.counts: Counter = Counter()

    def add(self, pair_id: str, split: str, lang: str, en: str, text: str) -> None:
        for name, value in zip(CORPUS_COLUMNS, (pair_id, split, lang, en, text)):
            self.buffer[name].append(value)
        self.counts[split] += 1
        if len(self.buffer["pair_id"]) >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.buffer["pair_id"]:
            self.writer.write_table(pa.table(self.buffer, schema=CORPUS_SCHEMA))
            self.buffer = {name: [] for name in CORPUS_COLUMNS}

    def close(self) -> None:
        self.flush()
        self.writer.close()


def chunk_path(out_dir, lang: str, chunk: int) -> Path:
    return Path(out_dir) / f"{lang}-{chunk:03d}.parquet"


def build_corpus(lang: str, corpus_cfg: dict, seed: int, out_dir) -> dict:
    """Filter the language's CCMatrix pairs into out_dir/{lang}-{chunk:03d}.parquet; return the stats.

    corpus_cfg is cc12m.corpus. Streams the input; memory is bounded by n_chunks row-group
    buffers. Chunk files are written under temporary names and renamed once all are complete;
    out_dir/{lang}_stats.json is written last: {"in": lines read, "out", "dropped": {reason: n},
    "splits": {"train", "heldout"}, "chunks": [{"file", "rows", "train", "heldout"}], ...}.
    """
    if lang not in EXPECTED_SCRIPT:
        raise ConfigError(f"cc12m.corpus.files.{lang}: no script check known for language '{lang}' "
                          f"(known: {sorted(EXPECTED_SCRIPT)})")
    files, rows = _source(lang, corpus_cfg)
    n_chunks = int(corpus_cfg["n_chunks"])
    if n_chunks < 1:
        raise ConfigError(f"cc12m.corpus.n_chunks: must be at least 1, got {n_chunks}")
    max_pairs = corpus_cfg.get("max_pairs_per_lang")
    min_chars, max_chars = int(corpus_cfg["min_chars"]), int(corpus_cfg["max_chars"])
    max_ratio, heldout_fraction = float(corpus_cfg["max_length_ratio"]), float(corpus_cfg["heldout_fraction"])

    lines, out = 0, 0
    dropped: Counter = Counter()
    with contextlib.ExitStack() as stack:
        writers = []
        for chunk in range(n_chunks):
            writer = _ChunkWriter(stack.enter_context(replacing(chunk_path(out_dir, lang, chunk))))
            # Registered after its replacing(): on exit the writer is closed before the rename.
            stack.callback(writer.close)
            writers.append(writer)
        for number, en, xx in tqdm(rows, desc=f"corpus {lang}", unit=" lines", mininterval=10):
            lines += 1
            if max_pairs is not None and out >= max_pairs:
                dropped["over_max_pairs"] += 1
                continue
            if en is None:
                dropped["wrong_field_count"] += 1
                continue
            en, xx = en.strip(), xx.strip()
            reason = drop_reason(en, xx, lang, min_chars, max_chars, max_ratio)
            if reason is not None:
                dropped[reason] += 1
                continue
            pair = f"{en}\x00{xx}"
            # Different hashed texts, so the chunk does not depend on the held-out draw.
            chunk = int(stable_unit_hash(f"chunk\x00{pair}", 0) * n_chunks)
            split = "heldout" if stable_unit_hash(pair, seed) < heldout_fraction else "train"
            writers[chunk].add(f"{lang}-{number:09d}", split, lang, en, xx)
            out += 1

    chunks = [{"file": chunk_path(out_dir, lang, c).name, "rows": sum(w.counts.values()),
               "train": w.counts["train"], "heldout": w.counts["heldout"]} for c, w in enumerate(writers)]
    stats = {
        "lang": lang, "format": corpus_cfg["format"], "files": files, "seed": seed,
        "in": lines, "out": out, "dropped": {reason: dropped[reason] for reason in DROP_REASONS},
        "splits": {split: sum(c[split] for c in chunks) for split in ("train", "heldout")},
        "chunks": chunks,
        "filters": {"min_chars": min_chars, "max_chars": max_chars, "max_length_ratio": max_ratio,
                    "max_pairs_per_lang": max_pairs, "heldout_fraction": heldout_fraction,
                    "min_script_share": MIN_SCRIPT_SHARE, "wide_char_weight": WIDE_CHAR_WEIGHT},
    }
    write_json(stats, Path(out_dir) / f"{lang}_stats.json")
    log.info("corpus %s: %d lines -> %d pairs (%d held out) in %d chunks; dropped %s",
             lang, lines, out, stats["splits"]["heldout"], n_chunks, dict(dropped))
    return stats
