"""English captions -> other languages with NLLB through CTranslate2 (cc12m.translator).

Captions are split into sentences, each sentence is translated on its own and the
translations are joined with a space, as the authors do (their preprocessing splits the
English and German captions into sentences with nltk's punkt; nltk and its punkt data are
not available here, so `split_sentences` is a rule-based splitter, see there).

The source of a sentence is NLLB's: [source language code] tokens </s>; decoding is forced to
start with the target language code (CTranslate2 target_prefix, transformers
forced_bos_token_id), which is stripped from the output. `generate_with_transformers` is the
same pipeline with transformers' generate (greedy), for checking and benchmarking the
CTranslate2 path against it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import ctranslate2
import pyarrow as pa
from tqdm import tqdm

from ..config import ConfigError
from ..io import read_parquet, write_json, write_parquet
from .download import CAPTIONS_SCHEMA

log = logging.getLogger(__name__)

AUTO_COMPUTE_TYPE = {"cpu": "int8", "cuda": "int8_float16"}
TEXT_BLOCK = 20_000  # texts split and translated together (bounds the memory of token lists)
SENTENCE_BLOCK = 4_096  # sorted sentences per translate_batch call (the unit of progress)

# Sentence boundary: ., ! or ? (repeatable), optional closing quotes/brackets, whitespace, then
# an upper-case letter or digit, possibly after an opening quote or bracket.
_BOUNDARY = re.compile(r"""([.!?]+["'”’)\]]*)\s+(?=["'“‘(\[]?[A-Z0-9])""")
# A period after one of these words (lower-cased, without the period) does not end a sentence.
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "rev", "gen", "col", "capt", "lt", "sgt", "sr", "jr", "st", "mt",
    "vs", "al", "no", "nos", "fig", "figs", "vol", "inc", "ltd", "co", "corp", "approx", "ca", "cf",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
})
# Initials ("J.") and dotted abbreviations ("e.g.", "U.S.") do not end a sentence either.
_DOTTED = re.compile(r"(?:[A-Za-z]\.)*[A-Za-z]")


def split_sentences(text: str) -> list[str]:
    """Split English text into sentences (stripped, none empty); a line break always ends one.

    A boundary is end punctuation followed by whitespace and an upper-case letter or a digit,
    except after a known abbreviation (ABBREVIATIONS), an initial or a dotted abbreviation
    (_DOTTED, e.g. "e.g." or "U.S."). Decimal numbers ("3.5") have no space after the period
    and are never split. Limits: a sentence ending in a dotted abbreviation is joined to the
    next one, and one starting with a lower-case letter is joined to the previous one.
    """
    sentences = []
    for line in text.splitlines():
        start = 0
        for boundary in _BOUNDARY.finditer(line):
            if boundary.group(1) == ".":
                before = line[start:boundary.start()].rsplit(maxsplit=1)
                word = before[-1].lstrip("\"'“‘([") if before else ""
                if word.lower() in ABBREVIATIONS or _DOTTED.fullmatch(word):
                    continue
            sentences.append(line[start:boundary.end(1)].strip())
            start = boundary.end()
        sentences.append(line[start:].strip())
    return [s for s in sentences if s]


@dataclass
class Translator:
    """A loaded CTranslate2 NLLB model with its tokenizer and the decoding settings of cc12m.translator."""

    translator: ctranslate2.Translator
    tokenizer: object  # a transformers NLLB (or M2M100) tokenizer: setting src_lang sets the source prefix
    lang_codes: dict[str, str]
    device: str
    compute_type: str
    beam_size: int
    max_batch_tokens: int
    max_decoding_length: int

    def code(self, lang: str) -> str:
        if lang not in self.lang_codes:
            raise ConfigError(f"cc12m.translator.lang_codes.{lang}: no NLLB code configured for language '{lang}'")
        return self.lang_codes[lang]


def _existing_dir(cfg: dict, key: str) -> Path:
    path = cfg.get(key)
    if not path:
        raise ConfigError(f"cc12m.translator.{key}: not set")
    if not Path(path).is_dir():
        raise FileNotFoundError(f"cc12m.translator.{key}: no such directory {path}")
    return Path(path)


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' if CTranslate2 sees a CUDA device, else 'cpu'."""
    if device == "auto":
        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if device not in AUTO_COMPUTE_TYPE:
        raise ConfigError(f"cc12m.translator.device: expected auto, cpu or cuda, got {device!r}")
    return device


def resolve_compute_type(compute_type: str, device: str) -> str:
    """'auto' -> int8 on cpu, int8_float16 on cuda; anything else must be supported on the device."""
    if compute_type == "auto":
        return AUTO_COMPUTE_TYPE[device]
    supported = ctranslate2.get_supported_compute_types(device)
    if compute_type not in supported:
        raise ConfigError(f"cc12m.translator.compute_type: {compute_type!r} is not supported on {device} "
                          f"(supported: {sorted(supported)})")
    return compute_type


def _load_tokenizer(tokenizer_dir: Path, lang_codes: dict[str, str]):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    for lang, code in lang_codes.items():
        if tokenizer.convert_tokens_to_ids(code) in (None, tokenizer.unk_token_id):
            raise ConfigError(f"cc12m.translator.lang_codes.{lang}: {code!r} is not a token of the tokenizer in {tokenizer_dir}")
    # A tokenizer without NLLB's src_lang handling would silently encode without the language code.
    probe = next(iter(lang_codes.values()))
    tokenizer.src_lang = probe
    if probe not in tokenizer.convert_ids_to_tokens(tokenizer("a")["input_ids"]):
        raise ConfigError(f"cc12m.translator.tokenizer_dir: {type(tokenizer).__name__} in {tokenizer_dir} does not "
                          f"mark the source language when src_lang is set; an NLLB/M2M100 tokenizer is needed")
    return tokenizer


def load_translator(translator_cfg: dict) -> Translator:
    """Load cc12m.translator: the CTranslate2 model in model_dir and the HF tokenizer in tokenizer_dir."""
    model_dir = _existing_dir(translator_cfg, "model_dir")
    tokenizer_dir = _existing_dir(translator_cfg, "tokenizer_dir")
    lang_codes = dict(translator_cfg["lang_codes"])
    device = resolve_device(translator_cfg.get("device", "auto"))
    compute_type = resolve_compute_type(translator_cfg.get("compute_type", "auto"), device)
    tokenizer = _load_tokenizer(tokenizer_dir, lang_codes)
    # threads 0: CTranslate2's default (up to 4 on CPU); a SLURM job sets it to the cores it holds
    threads = int(translator_cfg.get("threads", 0))
    translator = ctranslate2.Translator(str(model_dir), device=device, compute_type=compute_type, intra_threads=threads)
    log.info("NLLB from %s on %s (%s, %s threads)", model_dir, device, compute_type, threads or "default")
    return Translator(translator=translator, tokenizer=tokenizer, lang_codes=lang_codes, device=device,
                      compute_type=compute_type, beam_size=int(translator_cfg["beam_size"]),
                      max_batch_tokens=int(translator_cfg["max_batch_tokens"]),
                      max_decoding_length=int(translator_cfg["max_decoding_length"]))


def _source_tokens(tokenizer, sentences: list[str], src_code: str) -> list[list[str]]:
    tokenizer.src_lang = src_code
    return [tokenizer.convert_ids_to_tokens(ids) for ids in tokenizer(sentences)["input_ids"]]


def _decode(tokenizer, tokens: list[str]) -> str:
    return tokenizer.decode(tokenizer.convert_tokens_to_ids(tokens), skip_special_tokens=True).strip()


def translate_tokens(translator: Translator, sentences: list[str], src: str, tgt: str) -> list[list[str]]:
    """Translate sentences; return each one's target tokens without the language code and </s>.

    Sentences are sorted by token length, so that the token-budget batches CTranslate2 forms
    within each call of SENTENCE_BLOCK sentences need little padding; results come back in
    input order.
    """
    src_code, tgt_code = translator.code(src), translator.code(tgt)
    if not sentences:
        return []
    sources = _source_tokens(translator.tokenizer, sentences, src_code)
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results: list[list[str]] = [[] for _ in sources]
    for start in range(0, len(order), SENTENCE_BLOCK):
        block = order[start:start + SENTENCE_BLOCK]
        translated = translator.translator.translate_batch(
            [sources[i] for i in block], target_prefix=[[tgt_code]] * len(block),
            max_batch_size=translator.max_batch_tokens, batch_type="tokens",
            beam_size=translator.beam_size, max_decoding_length=translator.max_decoding_length)
        for i, result in zip(block, translated):
            tokens = result.hypotheses[0]
            results[i] = tokens[1:] if tokens and tokens[0] == tgt_code else tokens
    return results


def _per_sentence(texts: list[str], translate: Callable[[list[str]], list[str]], desc: str) -> list[str]:
    """Split each text into sentences, translate them with `translate`, join each text's translations with a space."""
    out = []
    with tqdm(total=len(texts), desc=desc, unit=" texts", leave=False) as progress:
        for start in range(0, len(texts), TEXT_BLOCK):
            block = texts[start:start + TEXT_BLOCK]
            owners, sentences = [], []
            for i, text in enumerate(block):
                for sentence in split_sentences(text):
                    owners.append(i)
                    sentences.append(sentence)
            parts: list[list[str]] = [[] for _ in block]
            for i, translation in zip(owners, translate(sentences)):
                if translation:
                    parts[i].append(translation)
            out.extend(" ".join(p) for p in parts)
            progress.update(len(block))
    return out


def translate_texts(translator: Translator, texts: list[str], src: str, tgt: str) -> list[str]:
    """Translate texts sentence by sentence with CTranslate2; returned in input order ("" if nothing came out)."""
    def translate(sentences: list[str]) -> list[str]:
        return [_decode(translator.tokenizer, t) for t in translate_tokens(translator, sentences, src, tgt)]

    return _per_sentence(list(texts), translate, f"translate {src}->{tgt}")


def generate_tokens_with_transformers(model, tokenizer, sentences: list[str], src_code: str, tgt_code: str,
                                      batch_size: int, max_new_tokens: int) -> list[list[str]]:
    """Greedy transformers generate on length-sorted batches; target tokens as from `translate_tokens`.

    max_new_tokens counts the forced language code, as CTranslate2's max_decoding_length does.
    """
    import torch

    if not sentences:
        return []
    sources = _source_tokens(tokenizer, sentences, src_code)
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    tgt_id = tokenizer.convert_tokens_to_ids(tgt_code)
    results: list[list[str]] = [[] for _ in sources]
    for start in range(0, len(order), batch_size):
        block = order[start:start + batch_size]
        inputs = tokenizer.pad({"input_ids": [tokenizer.convert_tokens_to_ids(sources[i]) for i in block]},
                               return_tensors="pt").to(model.device)
        with torch.inference_mode():
            generated = model.generate(**inputs, forced_bos_token_id=tgt_id, num_beams=1, do_sample=False,
                                       max_new_tokens=max_new_tokens)
        for i, ids in zip(block, generated.tolist()):
            ids = ids[2:]  # the decoder start token (</s>) and the forced language code
            if tokenizer.eos_token_id in ids:
                ids = ids[:ids.index(tokenizer.eos_token_id)]
            results[i] = tokenizer.convert_ids_to_tokens(ids)
    return results


def generate_with_transformers(model_dir, tokenizer_dir, texts: list[str], src: str, tgt: str,
                               lang_codes: dict[str, str], batch_size: int, max_new_tokens: int,
                               device: str = "auto") -> list[str]:
    """`translate_texts` with transformers' greedy generate instead of CTranslate2 (float32 weights).

    device "auto": cuda if torch sees one, else cpu.
    """
    import torch
    from transformers import AutoModelForSeq2SeqLM

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = _load_tokenizer(Path(tokenizer_dir), lang_codes)
    model = AutoModelForSeq2SeqLM.from_pretrained(str(model_dir), local_files_only=True).to(device).eval()

    def translate(sentences: list[str]) -> list[str]:
        tokens = generate_tokens_with_transformers(model, tokenizer, sentences, lang_codes[src], lang_codes[tgt],
                                                   batch_size, max_new_tokens)
        return [_decode(tokenizer, t) for t in tokens]

    return _per_sentence(list(texts), translate, f"transformers {src}->{tgt}")


def translate_captions(en_captions_parquet, images_parquet, translator_cfg: dict, out_parquet, out_stats_json,
                       heldout_langs=("es", "zh"), all_langs=("de",)) -> dict:
    """Write a slice's captions: en copied, all_langs for every image, heldout_langs for held-out images only.

    Inputs: the slice's English captions (key, lang = "en", text; one per image) and its images
    (key, split). Output parquet: key, lang, text, grouped by language (en, all_langs,
    heldout_langs), images in input order. An empty translation is dropped and counted
    ("empty_translation"); stats reconcile per language and in total.
    """
    targets = (*all_langs, *heldout_langs)
    if "en" in targets or len(set(targets)) != len(targets):
        raise ValueError(f"all_langs {all_langs} and heldout_langs {heldout_langs} must be distinct and not en")
    images = read_parquet(images_parquet, ["key", "split"]).to_pydict()
    captions = read_parquet(en_captions_parquet, ["key", "lang", "text"]).to_pydict()
    if set(captions["lang"]) - {"en"}:
        raise ValueError(f"{en_captions_parquet}: expected only lang 'en', found {sorted(set(captions['lang']))}")
    english = dict(zip(captions["key"], captions["text"]))
    if len(english) != len(captions["key"]) or set(english) != set(images["key"]):
        extra, missing = set(english) - set(images["key"]), set(images["key"]) - set(english)
        raise ValueError(f"{en_captions_parquet} must hold one caption per image of {images_parquet}: "
                         f"{len(captions['key']) - len(english)} duplicate keys, {len(extra)} captions without image "
                         f"(e.g. {sorted(extra)[:3]}), {len(missing)} images without caption (e.g. {sorted(missing)[:3]})")

    translator = load_translator(translator_cfg)
    keys = images["key"]
    heldout = [k for k, split in zip(keys, images["split"]) if split == "heldout"]
    rows = {"key": list(keys), "lang": ["en"] * len(keys), "text": [english[k] for k in keys]}
    per_lang = {"en": {"in": len(keys), "out": len(keys), "dropped": {"empty_translation": 0}}}
    for lang in targets:
        lang_keys = keys if lang in all_langs else heldout
        translations = translate_texts(translator, [english[k] for k in lang_keys], "en", lang)
        kept = [(k, t) for k, t in zip(lang_keys, translations) if t]
        rows["key"] += [k for k, _ in kept]
        rows["lang"] += [lang] * len(kept)
        rows["text"] += [t for _, t in kept]
        per_lang[lang] = {"in": len(lang_keys), "out": len(kept),
                          "dropped": {"empty_translation": len(lang_keys) - len(kept)}}
        log.info("captions %s: %d of %d translated", lang, len(kept), len(lang_keys))

    stats = {
        "images": len(keys), "heldout_images": len(heldout),
        "in": sum(s["in"] for s in per_lang.values()), "out": sum(s["out"] for s in per_lang.values()),
        "dropped": {"empty_translation": sum(s["dropped"]["empty_translation"] for s in per_lang.values())}, "langs": per_lang,
        "translator": {"model_dir": str(translator_cfg["model_dir"]), "device": translator.device,
                       "compute_type": translator.compute_type, "beam_size": translator.beam_size,
                       "max_decoding_length": translator.max_decoding_length},
    }
    write_parquet(pa.table(rows, schema=CAPTIONS_SCHEMA), out_parquet)
    write_json(stats, out_stats_json)
    return stats
