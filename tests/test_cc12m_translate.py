"""Tests of florenz_lib.cc12m.translate with a tiny NLLB-style model built in tmp_path (CPU, seconds)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from cc12m_fixtures import TINY_NLLB_LANG_CODES, TINY_NLLB_PAIRS, build_tiny_m2m100
from florenz_lib.cc12m.translate import (
    generate_tokens_with_transformers,
    generate_with_transformers,
    load_translator,
    split_sentences,
    translate_captions,
    translate_texts,
    translate_tokens,
)
from florenz_lib.config import ConfigError

MAX_LENGTH = 24
# Sentences the tiny model never saw (its output is whatever it makes of them) and memorised ones.
UNSEEN = ["A blue dog.", "The beach is red and the sky runs.", "Rice.", "Two men hold a circle of 3 kg on the sky."]
SEEN = list(TINY_NLLB_PAIRS)


@pytest.fixture(scope="module")
def tiny_nllb(tmp_path_factory):
    torch.set_num_threads(1)
    return build_tiny_m2m100(tmp_path_factory.mktemp("tiny_nllb"))


def translator_cfg(tiny_nllb, **overrides) -> dict:
    ct2_dir, tokenizer_dir = tiny_nllb
    cfg = {"model_dir": str(ct2_dir), "tokenizer_dir": str(tokenizer_dir), "lang_codes": TINY_NLLB_LANG_CODES,
           "device": "auto", "compute_type": "float32", "max_batch_tokens": 40, "beam_size": 1,
           "max_decoding_length": MAX_LENGTH}
    return {**cfg, **overrides}


@pytest.mark.parametrize("text, sentences", [
    ("A dog runs on the beach. The sky is blue.", ["A dog runs on the beach.", "The sky is blue."]),
    ("It weighs 3.5 kg. Dr. Smith holds it!  Is it 2 m long? Yes.",
     ["It weighs 3.5 kg.", "Dr. Smith holds it!", "Is it 2 m long?", "Yes."]),
    ("Shapes, e.g. Circles and squares, by J. R. R. Tolkien et al. Then more.",
     ["Shapes, e.g. Circles and squares, by J. R. R. Tolkien et al. Then more."]),
    ('He said "Stop." Then he left... The end.', ['He said "Stop."', "Then he left...", "The end."]),
    ("First line\nsecond line.  \n\n  ", ["First line", "second line."]),
    ("no capital after this. so one sentence.", ["no capital after this. so one sentence."]),
    ("   ", []),
])
def test_split_sentences(text, sentences):
    assert split_sentences(text) == sentences


def test_translations_are_in_input_order_deterministic_and_rejoined(tiny_nllb):
    translator = load_translator(translator_cfg(tiny_nllb))
    # Lengths deliberately unsorted: the translator batches by length and must restore the order.
    texts = [SEEN[3], SEEN[1], SEEN[0], SEEN[2], SEEN[1]]
    for lang in ("de", "es", "zh"):
        assert translate_texts(translator, texts, "en", lang) == [TINY_NLLB_PAIRS[t][lang] for t in texts]
    assert translate_texts(translator, texts, "en", "de") == translate_texts(translator, texts, "en", "de")
    assert translate_texts(translator, [], "en", "de") == []

    caption = f"{SEEN[0]} {SEEN[3]}\n{SEEN[2]}"  # the decimal number must not split a sentence
    expected = " ".join(TINY_NLLB_PAIRS[s]["de"] for s in (SEEN[0], SEEN[3], SEEN[2]))
    assert translate_texts(translator, [caption, "   ", SEEN[1]], "en", "de") == [expected, "", TINY_NLLB_PAIRS[SEEN[1]]["de"]]


def test_ctranslate2_greedy_equals_transformers_generate(tiny_nllb):
    ct2_dir, hf_dir = tiny_nllb
    translator = load_translator(translator_cfg(tiny_nllb))
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    model = AutoModelForSeq2SeqLM.from_pretrained(hf_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    sentences = UNSEEN + SEEN
    for lang in ("de", "es", "zh"):
        ct2 = translate_tokens(translator, sentences, "en", lang)
        hf = generate_tokens_with_transformers(model, tokenizer, sentences, "eng_Latn", TINY_NLLB_LANG_CODES[lang],
                                               batch_size=3, max_new_tokens=MAX_LENGTH)
        assert [tokenizer.convert_tokens_to_ids(t) for t in ct2] == [tokenizer.convert_tokens_to_ids(t) for t in hf]
        assert TINY_NLLB_LANG_CODES[lang] not in {token for tokens in ct2 for token in tokens}
    # Outputs depend on the input (a model that ignored it would make the equality vacuous).
    assert len({tuple(t) for t in ct2}) >= len(SEEN)

    texts = [f"{UNSEEN[0]} {SEEN[1]}", SEEN[2], UNSEEN[1]]
    assert generate_with_transformers(hf_dir, hf_dir, texts, "en", "de", TINY_NLLB_LANG_CODES, batch_size=2,
                                      max_new_tokens=MAX_LENGTH, device="cpu") \
        == translate_texts(translator, texts, "en", "de")


def test_auto_compute_type_and_config_errors(tiny_nllb, tmp_path):
    translator = load_translator(translator_cfg(tiny_nllb, compute_type="auto"))
    assert (translator.device, translator.compute_type) == ("cpu", "int8")

    with pytest.raises(FileNotFoundError, match=r"cc12m\.translator\.model_dir: no such directory .*nowhere"):
        load_translator(translator_cfg(tiny_nllb, model_dir=str(tmp_path / "nowhere")))
    with pytest.raises(FileNotFoundError, match=r"cc12m\.translator\.tokenizer_dir: no such directory"):
        load_translator(translator_cfg(tiny_nllb, tokenizer_dir=str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError, match=r"cc12m\.translator\.compute_type: 'bfloat16' is not supported on cpu"):
        load_translator(translator_cfg(tiny_nllb, compute_type="bfloat16"))
    with pytest.raises(ConfigError, match=r"cc12m\.translator\.lang_codes\.fr: 'fra_Latn' is not a token"):
        load_translator(translator_cfg(tiny_nllb, lang_codes={**TINY_NLLB_LANG_CODES, "fr": "fra_Latn"}))
    with pytest.raises(ConfigError, match=r"cc12m\.translator\.lang_codes\.ru"):
        translate_texts(translator, ["A dog."], "en", "ru")


def write_slice(directory, captions: dict[str, str], heldout: set[str]):
    keys = list(captions)
    images, en = directory / "images.parquet", directory / "en.parquet"
    pq.write_table(pa.table({"key": keys, "split": ["heldout" if k in heldout else "train" for k in keys],
                             "png": [b""] * len(keys), "url": [f"http://x/{k}" for k in keys]}), images)
    pq.write_table(pa.table({"key": keys, "lang": ["en"] * len(keys), "text": list(captions.values())}), en)
    return en, images


def test_translate_captions_languages_per_split_and_stats(tiny_nllb, tmp_path):
    captions = {"k0": SEEN[0], "k1": f"{SEEN[1]} {SEEN[2]}", "k2": "   ", "k3": SEEN[3], "k4": SEEN[2]}
    heldout = {"k1", "k2", "k4"}
    en, images = write_slice(tmp_path, captions, heldout)
    out, stats_path = tmp_path / "out" / "captions.parquet", tmp_path / "out" / "captions_stats.json"
    stats = translate_captions(en, images, translator_cfg(tiny_nllb, beam_size=2), out, stats_path)

    rows = pq.read_table(out).to_pylist()
    assert pq.read_schema(out).names == ["key", "lang", "text"]
    by_lang = {}
    for row in rows:
        by_lang.setdefault(row["lang"], {})[row["key"]] = row["text"]
    assert by_lang["en"] == captions
    assert by_lang["de"] == {k: " ".join(TINY_NLLB_PAIRS[s]["de"] for s in split_sentences(t))
                             for k, t in captions.items() if k != "k2"}
    assert by_lang["de"]["k1"] == "Zwei rote Kreise. Der Himmel ist blau."
    for lang in ("es", "zh"):  # held-out images only: they make the UC test split
        assert by_lang[lang] == {"k1": " ".join(TINY_NLLB_PAIRS[s][lang] for s in (SEEN[1], SEEN[2])),
                                 "k4": TINY_NLLB_PAIRS[SEEN[2]][lang]}
    assert [r["lang"] for r in rows] == sorted((r["lang"] for r in rows), key=["en", "de", "es", "zh"].index)

    assert stats["langs"] == {
        "en": {"in": 5, "out": 5, "dropped": {"empty_translation": 0}},
        "de": {"in": 5, "out": 4, "dropped": {"empty_translation": 1}},
        "es": {"in": 3, "out": 2, "dropped": {"empty_translation": 1}},
        "zh": {"in": 3, "out": 2, "dropped": {"empty_translation": 1}},
    }
    assert stats["in"] == stats["out"] + sum(stats["dropped"].values()) and stats["out"] == len(rows)
    assert (stats["images"], stats["heldout_images"]) == (5, 3)
    assert json.loads(stats_path.read_text()) == stats


def test_translate_captions_rejects_captions_not_matching_images(tiny_nllb, tmp_path):
    en, images = write_slice(tmp_path, {"k0": SEEN[0], "k1": SEEN[1]}, set())
    pq.write_table(pa.table({"key": ["k0"], "lang": ["en"], "text": [SEEN[0]]}), en)
    with pytest.raises(ValueError, match=r"en\.parquet must hold one caption per image of .*images\.parquet.*"
                                         r"1 images without caption \(e\.g\. \['k1'\]\)"):
        translate_captions(en, images, translator_cfg(tiny_nllb), tmp_path / "c.parquet", tmp_path / "c.json")
    assert not (tmp_path / "c.parquet").exists()
