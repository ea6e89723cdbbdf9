"""Tests of florenz_lib.cc12m.finetune_mix on tiny copies of Multi30K, COCO Karpathy, Image Paragraph and
DOCCI in their public formats, translated by the tiny NLLB-style model (CPU, seconds)."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from cc12m_fixtures import TINY_NLLB_LANG_CODES, TINY_NLLB_PAIRS, build_tiny_m2m100
from florenz_lib.cc12m.finetune_mix import write_cc12m_finetune_mix
from florenz_lib.config import ConfigError
from florenz_lib.data.shards import SHARD_SCHEMA, read_training_shards

LANGS = ["en", "de", "es", "zh"]  # the tiny model's languages
DOG, CIRCLES, SKY, RICE = TINY_NLLB_PAIRS  # memorised English sentences
# Multi30K's own German, deliberately not what the tiny model would say
M30K_DE = {DOG: "Ein Hund rennt am Strand entlang.", CIRCLES: "Zwei Kreise in Rot."}


@pytest.fixture(scope="module")
def tiny_nllb(tmp_path_factory):
    torch.set_num_threads(1)
    return build_tiny_m2m100(tmp_path_factory.mktemp("tiny_nllb"))


def translator_cfg(tiny_nllb) -> dict:
    ct2_dir, tokenizer_dir = tiny_nllb
    return {"model_dir": str(ct2_dir), "tokenizer_dir": str(tokenizer_dir), "lang_codes": TINY_NLLB_LANG_CODES,
            "device": "cpu", "compute_type": "float32", "max_batch_tokens": 40, "beam_size": 1,
            "max_decoding_length": 24}


def _jpeg(path: Path, colour: tuple[int, int, int]) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), colour).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def _gz_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def write_sources(root: Path) -> tuple[dict, dict[str, bytes]]:
    """Tiny copies of the four sources; return the mix config and the image bytes of every key expected out."""
    images: dict[str, bytes] = {}

    # Multi30K Task 1 train: en, de (fr and cs too, outside LANGS); the third image is missing.
    m30k = root / "multi30k"
    (m30k / "data/task1/image_splits").mkdir(parents=True)
    (m30k / "data/task1/image_splits/train.txt").write_text("1001.jpg\n1002.jpg\n1003.jpg\n")
    # the Multi30K test split made of COCO images: COCO's 42 must be left out of the mix
    (m30k / "data/task1/image_splits/test_2017_mscoco.txt").write_text("COCO_val2014_000000000042.jpg#3\n")
    raw = m30k / "data/task1/raw"
    _gz_lines(raw / "train.en.gz", [DOG, CIRCLES, SKY])
    _gz_lines(raw / "train.de.gz", [M30K_DE[DOG], M30K_DE[CIRCLES], "Der Himmel."])
    _gz_lines(raw / "train.fr.gz", ["Un chien.", "Deux cercles.", "Le ciel."])
    _gz_lines(raw / "train.cs.gz", ["Pes.", "Kruhy.", "Nebe."])
    images["multi30k-1001"] = _jpeg(root / "flickr30k-images/1001.jpg", (200, 0, 0))
    images["multi30k-1002"] = _jpeg(root / "flickr30k-images/1002.jpg", (0, 200, 0))

    # COCO Karpathy: train 9 (kept, two captions, one with extra whitespace), restval 42 (in Multi30K's
    # test), train 7 (file missing), train 8 (blank captions only), val 5 and test 6 (other splits).
    coco = root / "coco"
    def entry(cocoid, split, folder, sentences):
        return {"cocoid": cocoid, "split": split, "filepath": folder, "filename": f"COCO_{folder}_{cocoid:012d}.jpg",
                "imgid": cocoid, "sentids": [], "sentences": [{"raw": s, "tokens": s.split()} for s in sentences]}
    entries = [entry(9, "train", "train2014", [SKY, f"  {RICE}\n"]), entry(42, "restval", "val2014", [DOG]),
               entry(7, "train", "train2014", [DOG]), entry(8, "train", "train2014", ["  ", ""]),
               entry(5, "val", "val2014", [DOG]), entry(6, "test", "val2014", [DOG])]
    (coco / "annotations").mkdir(parents=True)
    (coco / "annotations/dataset_coco.json").write_text(json.dumps({"images": entries, "dataset": "coco"}))
    images["coco_karpathy-9"] = _jpeg(coco / "train2014/COCO_train2014_000000000009.jpg", (0, 0, 200))
    for cocoid, folder in ((42, "val2014"), (8, "train2014"), (5, "val2014"), (6, "val2014")):
        _jpeg(coco / folder / f"COCO_{folder}_{cocoid:012d}.jpg", (9, 9, 9))

    # Image Paragraph: 11 as <id>.jpg, 12 in Visual Genome's VG_100K_2 layout, 13 in the val split.
    ip = root / "image_paragraphs"
    url = "https://cs.stanford.edu/people/rak248/{}/{}.jpg"
    paragraphs = [{"image_id": 11, "url": url.format("VG_100K", 11), "paragraph": f" {DOG}  {SKY}\n"},
                  {"image_id": 12, "url": url.format("VG_100K_2", 12), "paragraph": f"{CIRCLES} {RICE}"},
                  {"image_id": 13, "url": url.format("VG_100K", 13), "paragraph": DOG}]
    ip.mkdir()
    (ip / "paragraphs_v1.json").write_text(json.dumps(paragraphs))
    (ip / "train_split.json").write_text(json.dumps([11, 12]))
    images["image_paragraph-11"] = _jpeg(ip / "images/11.jpg", (100, 100, 0))
    images["image_paragraph-12"] = _jpeg(ip / "images/VG_100K_2/12.jpg", (0, 100, 100))
    _jpeg(ip / "images/13.jpg", (9, 9, 9))

    # DOCCI: train_00000 kept, train_00001 without its image, test_00000 another split.
    docci = root / "docci"
    records = [{"example_id": "train_00000", "split": "train", "image_file": "train_00000.jpg",
                "description": f"{CIRCLES} {DOG}"},
               {"example_id": "train_00001", "split": "train", "image_file": "train_00001.jpg", "description": SKY},
               {"example_id": "test_00000", "split": "test", "image_file": "test_00000.jpg", "description": SKY}]
    docci.mkdir()
    (docci / "docci_descriptions.jsonlines").write_text("".join(json.dumps(r) + "\n" for r in records) + "\n")
    images["docci-train_00000"] = _jpeg(docci / "images/train_00000.jpg", (50, 50, 50))
    _jpeg(docci / "images/test_00000.jpg", (9, 9, 9))

    mix_cfg = {
        "multi30k": {"root": str(m30k), "images": str(root / "flickr30k-images")},
        "coco_karpathy": {"annotations": str(coco / "annotations/dataset_coco.json"), "images": str(coco),
                          "splits": ["train", "restval"]},
        "image_paragraph": {"paragraphs": str(ip / "paragraphs_v1.json"), "split_ids": str(ip / "train_split.json"),
                            "images": str(ip / "images")},
        "docci": {"descriptions": str(docci / "docci_descriptions.jsonlines"), "images": str(docci / "images")},
    }
    return mix_cfg, images


def _by_key(annotations: list[dict]) -> dict[str, list[tuple[str, str]]]:
    grouped: dict[str, list[tuple[str, str]]] = {}
    for a in annotations:
        grouped.setdefault(f"{a['task']}-{a['lang']}", []).append((a["source"], a["target"]))
    return grouped


def _mt(text: str, lang: str) -> str:
    """What the tiny model makes of memorised sentences joined by spaces: their translations, joined."""
    return " ".join(TINY_NLLB_PAIRS[s][lang] for s in text.replace(". ", ".\n").splitlines())


def test_mix_covers_every_language_keeps_originals_and_reconciles(tmp_path, tiny_nllb):
    mix_cfg, images = write_sources(tmp_path / "sources")
    out = tmp_path / "mix"
    out.mkdir()
    (out / "shard-00099.parquet").write_bytes(b"stale")
    stats = write_cc12m_finetune_mix(mix_cfg, translator_cfg(tiny_nllb), LANGS, 2, out)

    assert sorted(p.name for p in out.glob("shard-*.parquet")) == ["shard-00000.parquet", "shard-00001.parquet",
                                                                   "shard-00002.parquet"]
    assert pq.read_schema(out / "shard-00000.parquet").equals(SHARD_SCHEMA)
    rows = read_training_shards(out).to_pylist()
    assert [r["key"] for r in rows] == sorted(images)  # every expected image, in key order, nothing else
    assert stats == json.loads((out / "stats.json").read_text())
    assert stats["rows"] == len(rows) and [s["rows"] for s in stats["shards"]] == [2, 2, 2]

    keys = [f"caption-{l}" for l in LANGS] + [f"translation-{l}" for l in LANGS if l != "en"]
    rows = {r["key"]: r for r in rows}
    for key, row in rows.items():
        assert row["png"] == images[key]
        grouped = _by_key(row["annotations"])
        assert sorted(grouped) == sorted(keys), key
        english = [target for _, target in grouped["caption-en"]]
        for lang in LANGS[1:]:  # the translations pair each English text with the caption in that language
            assert grouped[f"translation-{lang}"] == [(en, t) for en, (_, t) in zip(english, grouped[f"caption-{lang}"])]

    # Multi30K: the file's German is kept for caption and translation; es/zh come from the translator.
    m30k = _by_key(rows["multi30k-1001"]["annotations"])
    assert m30k["caption-en"] == [("", DOG)]
    assert m30k["caption-de"] == [("", M30K_DE[DOG])] and m30k["translation-de"] == [(DOG, M30K_DE[DOG])]
    assert m30k["translation-es"] == [(DOG, TINY_NLLB_PAIRS[DOG]["es"])]
    assert m30k["caption-zh"] == [("", TINY_NLLB_PAIRS[DOG]["zh"])]
    # COCO: both captions (whitespace normalised), each in every language.
    coco = _by_key(rows["coco_karpathy-9"]["annotations"])
    assert coco["caption-en"] == [("", SKY), ("", RICE)]
    assert coco["caption-de"] == [("", TINY_NLLB_PAIRS[SKY]["de"]), ("", TINY_NLLB_PAIRS[RICE]["de"])]
    assert coco["translation-zh"] == [(SKY, TINY_NLLB_PAIRS[SKY]["zh"]), (RICE, TINY_NLLB_PAIRS[RICE]["zh"])]
    # Paragraphs and descriptions: translated sentence by sentence, rejoined.
    for key, english in (("image_paragraph-11", f"{DOG} {SKY}"), ("image_paragraph-12", f"{CIRCLES} {RICE}"),
                         ("docci-train_00000", f"{CIRCLES} {DOG}")):
        grouped = _by_key(rows[key]["annotations"])
        assert grouped["caption-en"] == [("", english)]
        for lang in LANGS[1:]:
            assert grouped[f"translation-{lang}"] == [(english, _mt(english, lang))], (key, lang)

    sources = stats["sources"]
    assert sources["multi30k"]["images"] == {"in": 3, "out": 2, "dropped": {"image_missing": 1}}
    assert sources["coco_karpathy"]["images"] == {
        "in": 4, "out": 1, "dropped": {"empty_text": 1, "image_missing": 1, "multi30k_test_image": 1}}
    assert sources["coco_karpathy"]["texts"] == {"in": 6, "out": 2, "dropped": {"empty_text": 2, "image_dropped": 2}}
    assert sources["image_paragraph"]["images"] == {"in": 2, "out": 2, "dropped": {}}
    assert sources["docci"]["images"] == {"in": 2, "out": 1, "dropped": {"image_missing": 1}}
    assert sources["multi30k"]["annotations"]["caption-de"] == {"count": 2, "original": 2, "translated": 0}
    assert sources["multi30k"]["annotations"]["translation-es"] == {"count": 2, "original": 0, "translated": 2}
    assert sources["coco_karpathy"]["annotations"]["caption-en"] == {"count": 2, "original": 2, "translated": 0}
    assert sources["coco_karpathy"]["annotations"]["caption-zh"] == {"count": 2, "original": 0, "translated": 2}
    assert sources["multi30k"]["translated_texts"] == {"es": 2, "zh": 2}  # de is the file's, never translated
    for source in sources.values():
        for level in ("images", "texts"):
            assert source[level]["in"] == source[level]["out"] + sum(source[level]["dropped"].values())
    written = {key: sum(len(_by_key(r["annotations"])[key]) for r in rows.values()) for key in keys}
    assert {key: counts["count"] for key, counts in stats["annotations"].items()} == written
    assert all(c["count"] == c["original"] + c["translated"] for c in stats["annotations"].values())
    assert stats["translator"]["lang_codes"] == TINY_NLLB_LANG_CODES and stats["translator"]["beam_size"] == 1

    # Deterministic: a rerun with another shard size writes the same rows.
    again = tmp_path / "again"
    write_cc12m_finetune_mix(mix_cfg, translator_cfg(tiny_nllb), LANGS, 5, again)
    assert read_training_shards(again).to_pylist() == list(rows.values())


def test_sources_with_every_language_need_no_translator(tmp_path):
    mix_cfg, images = write_sources(tmp_path / "sources")
    stats = write_cc12m_finetune_mix({"multi30k": mix_cfg["multi30k"]}, {}, ["en", "de"], 10, tmp_path / "mix")
    assert stats["translator"] is None
    rows = read_training_shards(tmp_path / "mix").to_pylist()
    assert [r["key"] for r in rows] == ["multi30k-1001", "multi30k-1002"]
    assert _by_key(rows[1]["annotations"]) == {"caption-en": [("", CIRCLES)], "caption-de": [("", M30K_DE[CIRCLES])],
                                               "translation-de": [(CIRCLES, M30K_DE[CIRCLES])]}


def test_configuration_errors_name_the_key_or_file(tmp_path):
    mix_cfg, _ = write_sources(tmp_path / "sources")
    with pytest.raises(ConfigError, match=r"cc12m\.finetune: no fine-tuning source"):
        write_cc12m_finetune_mix({}, {}, LANGS, 2, tmp_path / "out")
    with pytest.raises(ConfigError, match=r"cc12m\.finetune: unknown source\(s\) \['xm3600'\]"):
        write_cc12m_finetune_mix({"xm3600": {"root": "x"}}, {}, LANGS, 2, tmp_path / "out")
    missing = tmp_path / "nowhere/docci_descriptions.jsonlines"
    with pytest.raises(FileNotFoundError, match=rf"cc12m\.finetune\.docci\.descriptions: no such file {missing}"):
        write_cc12m_finetune_mix({**mix_cfg, "docci": {**mix_cfg["docci"], "descriptions": str(missing)}}, {}, LANGS,
                                 2, tmp_path / "out")
    (Path(mix_cfg["multi30k"]["root"]) / "data/task1/raw/train.en.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"train\.en\.gz"):
        write_cc12m_finetune_mix({"multi30k": mix_cfg["multi30k"]}, {}, ["en", "de"], 2, tmp_path / "out")
