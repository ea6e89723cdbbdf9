"""Tests of florenz_lib.cc12m.ccmatrix on small Moses and TSV files written in tmp_path (CPU, seconds)."""

from __future__ import annotations

import gzip
import json
import shutil

import pyarrow.parquet as pq
import pytest

from florenz_lib.cc12m.ccmatrix import DROP_REASONS, build_corpus, drop_reason, iter_moses, iter_tsv
from florenz_lib.config import ConfigError
from florenz_lib.data.io import CORPUS_COLUMNS

N_GOOD = 120  # generated good pairs, enough to fill every chunk and draw some held-out pairs

# (en, de, expected drop reason or None), before the generated good pairs; line numbers are 1-based.
DE_LINES = [
    ("A dog runs on the beach.", "Ein Hund läuft am Strand.", None),
    ("", "Leer", "empty"),
    ("  ", "Nur Leerzeichen auf der anderen Seite", "empty"),
    ("Hi", "Hallo", "too_short"),
    ("A very long sentence " * 6, "Ein sehr langer Satz " * 6, "too_long"),
    ("Yes.", "Ja, das ist wirklich ein sehr langer Satz.", "length_ratio"),
    ("Hello world", "hello World", "source_equals_target"),
    ("The red house.", "Красный дом.", "wrong_script"),
    ("Numbers only", "12345 678", "wrong_script"),
    ("  Two cats sleep.  ", "\tZwei Katzen schlafen. ", None),
    ("A dog runs on the beach.", "Ein Hund läuft am Strand.", None),  # exact duplicate of line 1
]
DE_DROPS = {"empty": 2, "too_short": 1, "too_long": 1, "length_ratio": 1, "source_equals_target": 1, "wrong_script": 2}

ZH_LINES = [
    "0.91\tThe cat sleeps.\t猫在睡觉。",
    # 47 vs 11 characters: a plain character ratio (4.3) would drop this correct pair.
    "0.90\tThe children are playing football in the park.\t孩子们在公园里踢足球。",
    "0.80\tonly two fields",
    "0.70\ta\tb\tc",
    "0.60\tThis is a test.\tThis is a test sentence.",
    "0.50\t\t你好世界",
    "0.40\tBeijing 2008\tBeijing 2008",
    "0.30\tA red apple.\t一个红苹果。",
]
ZH_DROPS = {"wrong_field_count": 2, "wrong_script": 1, "empty": 1, "source_equals_target": 1}
ZH_KEPT = {1: ("The cat sleeps.", "猫在睡觉。"), 2: ("The children are playing football in the park.", "孩子们在公园里踢足球。"),
           8: ("A red apple.", "一个红苹果。")}


def corpus_cfg(files: dict, fmt: str = "moses", **overrides) -> dict:
    cfg = {"format": fmt, "files": files, "max_pairs_per_lang": None, "min_chars": 3, "max_chars": 100,
           "max_length_ratio": 3.0, "heldout_fraction": 0.2, "n_chunks": 4}
    return {**cfg, **overrides}


def write_moses(directory, lines, compress: bool = False) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    paths = {"en": directory / f"CCMatrix.de-en.en{suffix}", "xx": directory / f"CCMatrix.de-en.de{suffix}"}
    for side, index in (("en", 0), ("xx", 1)):
        data = "".join(line[index] + "\n" for line in lines).encode("utf-8")
        paths[side].write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return {side: str(path) for side, path in paths.items()}


def de_lines() -> list[tuple[str, str, str | None]]:
    return DE_LINES + [(f"This is good sentence number {i}.", f"Das ist guter Satz Nummer {i}.", None) for i in range(N_GOOD)]


def read_corpus(out_dir, lang: str, n_chunks: int) -> dict[str, dict]:
    rows = {}
    for chunk in range(n_chunks):
        table = pq.read_table(out_dir / f"{lang}-{chunk:03d}.parquet")
        assert table.column_names == list(CORPUS_COLUMNS)
        for row in table.to_pylist():
            rows[row["pair_id"]] = {**row, "chunk": chunk}
    return rows


def reconciles(stats: dict) -> bool:
    return stats["in"] == stats["out"] + sum(stats["dropped"].values()) and set(stats["dropped"]) == set(DROP_REASONS)


def test_moses_corpus_contents_drops_and_chunks(tmp_path):
    lines = de_lines()
    stats = build_corpus("de", corpus_cfg({"de": write_moses(tmp_path / "in", lines)}), 7, tmp_path / "corpus")
    rows = read_corpus(tmp_path / "corpus", "de", 4)

    expected = {f"de-{n:09d}": (en.strip(), de.strip()) for n, (en, de, reason) in enumerate(lines, 1) if reason is None}
    assert {pid: (r["en"], r["text"]) for pid, r in rows.items()} == expected
    assert {r["lang"] for r in rows.values()} == {"de"}
    assert stats["in"] == len(lines) and stats["out"] == len(expected) and reconciles(stats)
    assert {k: v for k, v in stats["dropped"].items() if v} == DE_DROPS
    # The exact duplicate (lines 1 and 11) lands in one chunk, so the alignment can dedup per chunk.
    assert rows["de-000000001"]["chunk"] == rows["de-000000011"]["chunk"]
    chunk_rows = [c["rows"] for c in stats["chunks"]]
    assert all(chunk_rows) and sum(chunk_rows) == stats["out"]
    assert [c["rows"] for c in stats["chunks"]] == [sum(r["chunk"] == c for r in rows.values()) for c in range(4)]
    heldout = sum(r["split"] == "heldout" for r in rows.values())
    assert stats["splits"] == {"train": len(rows) - heldout, "heldout": heldout}
    assert 0.05 * len(rows) < heldout < 0.4 * len(rows)  # fraction 0.2 of 123 pairs
    assert json.loads((tmp_path / "corpus" / "de_stats.json").read_text()) == stats
    assert not list((tmp_path / "corpus").glob(".*"))  # no temporary files left


def test_split_depends_on_pair_and_seed_not_on_chunking(tmp_path):
    files = {"de": write_moses(tmp_path / "in", de_lines())}
    build_corpus("de", corpus_cfg(files), 7, tmp_path / "a")
    build_corpus("de", corpus_cfg(files, n_chunks=2), 7, tmp_path / "b")
    build_corpus("de", corpus_cfg(files), 8, tmp_path / "c")
    split = {name: {p: r["split"] for p, r in read_corpus(tmp_path / name, "de", n).items()}
             for name, n in (("a", 4), ("b", 2), ("c", 4))}
    assert split["a"] == split["b"]
    assert split["a"] != split["c"]
    assert split["a"]["de-000000001"] == split["a"]["de-000000011"]  # identical pairs share the draw


def test_build_is_deterministic_and_gzip_reads_the_same(tmp_path):
    lines = de_lines()
    plain = {"de": write_moses(tmp_path / "plain", lines)}
    build_corpus("de", corpus_cfg(plain), 3, tmp_path / "one")
    build_corpus("de", corpus_cfg(plain), 3, tmp_path / "two")
    for name in [f"de-{c:03d}.parquet" for c in range(4)] + ["de_stats.json"]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name

    gz_stats = build_corpus("de", corpus_cfg({"de": write_moses(tmp_path / "gz", lines, compress=True)}), 3,
                            tmp_path / "gz_out")
    for c in range(4):
        assert (tmp_path / "gz_out" / f"de-{c:03d}.parquet").read_bytes() == (tmp_path / "one" / f"de-{c:03d}.parquet").read_bytes()
    assert gz_stats["dropped"] == json.loads((tmp_path / "one" / "de_stats.json").read_text())["dropped"]


def test_tsv_corpus_counts_bad_lines_and_weights_chinese_length(tmp_path):
    path = tmp_path / "en-zh.tsv.gz"
    path.write_bytes(gzip.compress(("\n".join(ZH_LINES) + "\n").encode("utf-8")))
    stats = build_corpus("zh", corpus_cfg({"zh": str(path)}, fmt="tsv", n_chunks=2, heldout_fraction=0.0), 0,
                         tmp_path / "corpus")
    rows = read_corpus(tmp_path / "corpus", "zh", 2)
    assert {pid: (r["en"], r["text"]) for pid, r in rows.items()} == {f"zh-{n:09d}": pair for n, pair in ZH_KEPT.items()}
    assert {r["split"] for r in rows.values()} == {"train"}
    assert {k: v for k, v in stats["dropped"].items() if v} == ZH_DROPS
    assert stats["in"] == len(ZH_LINES) and reconciles(stats)
    assert [fields for _, fields in iter_tsv(path)][2] == ["0.80", "only two fields"]


def test_max_pairs_keeps_the_first_valid_pairs_and_counts_the_rest(tmp_path):
    lines = de_lines()
    stats = build_corpus("de", corpus_cfg({"de": write_moses(tmp_path / "in", lines)}, max_pairs_per_lang=3), 0,
                         tmp_path / "corpus")
    rows = read_corpus(tmp_path / "corpus", "de", 4)
    assert sorted(rows) == ["de-000000001", "de-000000010", "de-000000011"]
    assert stats["dropped"]["over_max_pairs"] == len(lines) - 11
    assert stats["in"] == len(lines) and reconciles(stats)


@pytest.mark.parametrize("en, xx, lang, reason", [
    ("A red apple.", "一个红苹果。", "zh", None),
    ("A red apple.", "A red apple in Chinese", "zh", "wrong_script"),
    ("A red apple.", "Красное яблоко.", "ru", None),
    ("A red apple.", "Krasnoe yabloko.", "ru", "wrong_script"),
    ("Красное яблоко.", "Une pomme rouge.", "fr", "wrong_script"),  # the English side is checked too
    ("Dinner at Café Müller.", "Cena en el Café Müller.", "es", None),
    ("The price is 3.50 euros.", "Der Preis beträgt 3,50 Euro.", "de", None),
])
def test_script_check(en, xx, lang, reason):
    assert drop_reason(en, xx, lang, min_chars=3, max_chars=500, max_length_ratio=3.0) == reason


def test_iter_moses_and_bad_inputs(tmp_path):
    files = write_moses(tmp_path / "ok", [("One.", "Eins."), ("Two.", "Zwei.")])
    assert list(iter_moses(files["en"], files["xx"])) == [(1, "One.", "Eins."), (2, "Two.", "Zwei.")]

    uneven = write_moses(tmp_path / "uneven", [("One.", "Eins."), ("Two.", "Zwei.")])
    with open(uneven["xx"], "a", encoding="utf-8") as handle:
        handle.write("Drei.\n")
    with pytest.raises(ValueError, match=r"CCMatrix\.de-en\.en ends after line 2 .*CCMatrix\.de-en\.de goes on at line 3"):
        build_corpus("de", corpus_cfg({"de": uneven}), 0, tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())  # nothing half-written survives

    with open(uneven["en"], "ab") as handle:
        handle.write(b"Thr\xffee.\n")
    with pytest.raises(ValueError, match=r"CCMatrix\.de-en\.en:3: not valid UTF-8"):
        list(iter_moses(uneven["en"], uneven["xx"]))

    missing = {**files, "xx": str(tmp_path / "nowhere.de")}
    with pytest.raises(FileNotFoundError, match=r"cc12m\.corpus\.files\.de\.xx: no such file .*nowhere\.de"):
        build_corpus("de", corpus_cfg({"de": missing}), 0, tmp_path / "out")
    with pytest.raises(ConfigError, match=r"cc12m\.corpus\.files\.fr"):
        build_corpus("fr", corpus_cfg({"de": files}), 0, tmp_path / "out")
    with pytest.raises(ConfigError, match=r"cc12m\.corpus\.format"):
        build_corpus("de", corpus_cfg({"de": files}, fmt="csv"), 0, tmp_path / "out")
    shutil.rmtree(tmp_path / "ok")
    with pytest.raises(FileNotFoundError, match=r"cc12m\.corpus\.files\.de\.en"):
        build_corpus("de", corpus_cfg({"de": files}), 0, tmp_path / "out")


def test_rows_are_streamed_in_row_groups_without_changing_contents(tmp_path, monkeypatch):
    files = {"de": write_moses(tmp_path / "in", de_lines())}
    build_corpus("de", corpus_cfg(files), 5, tmp_path / "whole")
    monkeypatch.setattr("florenz_lib.cc12m.ccmatrix.ROW_GROUP_ROWS", 4)
    build_corpus("de", corpus_cfg(files), 5, tmp_path / "streamed")
    assert min(pq.ParquetFile(tmp_path / "streamed" / f"de-{c:03d}.parquet").num_row_groups for c in range(4)) > 1
    for c in range(4):
        name = f"de-{c:03d}.parquet"
        assert pq.read_table(tmp_path / "streamed" / name).equals(pq.read_table(tmp_path / "whole" / name))
