"""Zero-shot captioning with and without a language prefix on XM3600 (Figure 4).

Per run, language and prefix mode: captions of the benchmark's first `images_per_lang` images, the
share identified as the prompted language, and CIDEr-D (pycocoevalcap Cider) against the image's
references. The benchmark is read in the public XM3600 layout (`captions.jsonl` and an images dir, .jpg
or .png) by `florenz_lib.downstream.benchmarks.load_xm3600`, in both worlds.

What differs between the worlds is a small strategy (`PrefixWorld`, chosen by `world`):
- synthetic: the prefixes of the world's grammar (florenz_lib.world.language_prefix), the world's own
  identifier (florenz_lib.world.langid: script and lexicon coverage) and its XM3600 recipe (NFKC,
  lowercase, punctuation removed, whitespace words, Chinese segmented with the world lexicon);
- cc12m: the authors' XM3600 prefixes (florenz_lib.study.XM3600_PREFIXES), langid.py restricted to the
  six study languages, and downstream.metrics.xm3600_cider (NFKC, stanza from a local resources dir or
  jieba for zh, punctuation removed, lowercase), whose segmenter is recorded per result.
prefix.json records the world, the prefixes, the identifier and the tokenization that made the numbers.

- Language identification reads the generated text only: in prefix mode the continuation after the
  prefix, since the prefix itself is always in the target language.
- The candidate scored in prefix mode is the continuation, as the authors score XM3600; it is the
  prefix plus its continuation when `cider_includes_prefix` is true. The synthetic world's config sets
  that: its references are whole sentences, one of them in the prefix's template family, so scoring the
  continuation alone would charge prefix mode for the template words it was given (the real XM3600
  references have no such frame).
"""
from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from pycocoevalcap.cider.cider import Cider

from ..downstream.benchmarks import load_xm3600
from ..downstream.metrics import xm3600_cider
from ..io import write_json
from ..models.florenz import load_florenz
from ..models.inputs import image_file_to_tensor
from ..models.tokenizers import load_tokenizer
from ..paths import IMAGES_DIR, XM3600_CAPTIONS
from ..study import STUDY_LANGS
from ..train.runs import model_collator
from ..world.generate import TRAIN_CAPTION_LANGS
from ..world.langid import UNDETERMINED, ZH_SEGMENTER, identify_language as world_identify_language, scoring_tokens
from .generation import generate_captions, join_prefix, lang_prefix, world_prefixes

log = logging.getLogger(__name__)
MODES = ("no", "yes")  # prefix column values


def unseen_langs(langs) -> list[str]:
    """The captioning languages the models never saw captions in (all but en and de)."""
    return [lang for lang in langs if lang not in TRAIN_CAPTION_LANGS]


def cider_score(candidates: list[str], references: list[list[str]], lang: str) -> float:
    """Corpus CIDEr-D (pycocoevalcap Cider) of candidates against their reference lists, on the
    synthetic world's `scoring_tokens` of every string."""
    if len(candidates) != len(references) or not candidates:
        raise ValueError(f"need one reference list per candidate, got {len(candidates)} and {len(references)}")
    res = {i: [" ".join(scoring_tokens(c, lang))] for i, c in enumerate(candidates)}
    gts = {i: [" ".join(scoring_tokens(r, lang)) for r in refs] for i, refs in enumerate(references)}
    score, _ = Cider().compute_score(gts, res)
    return float(score)


@functools.lru_cache(maxsize=1)
def _langid_identifier():
    from langid.langid import LanguageIdentifier, model  # loads its model (about a second) on first use
    identifier = LanguageIdentifier.from_modelstring(model, norm_probs=False)
    identifier.set_languages(list(STUDY_LANGS))
    return identifier


LANGID_NAME = (f"langid.py {importlib.metadata.version('langid')} restricted to {', '.join(STUDY_LANGS)} "
               f"(set_languages), on the continuation; text without letters is {UNDETERMINED!r}")


def langid_identify(text: str) -> str:
    """The study language (one of STUDY_LANGS) langid.py finds in `text`, or UNDETERMINED for text
    without a letter (langid would name a language for the empty string too)."""
    if not any(c.isalpha() for c in text):
        return UNDETERMINED
    return _langid_identifier().classify(text)[0]


# (candidates, references per candidate, lang, stanza_dir) -> (CIDEr-D, segmenter)
Scorer = Callable[[list[str], list[list[str]], str, "str | None"], tuple[float, str]]


def _world_cider(candidates, references, lang, stanza_dir):
    return cider_score(candidates, references, lang), ZH_SEGMENTER if lang == "zh" else "whitespace"


@dataclass(frozen=True)
class PrefixWorld:
    """How a world identifies the language of generated text and scores captions, and what it records."""
    name: str
    identify: Callable[[str], str]
    cider: Scorer
    language_id: str
    tokenization: str


PREFIX_WORLDS = {
    "synthetic": PrefixWorld(
        "synthetic", world_identify_language, _world_cider,
        language_id="world script + lexicon coverage on the continuation (florenz_lib.world.langid)",
        tokenization="NFKC, lowercase, punctuation removed, whitespace words; zh: " + ZH_SEGMENTER),
    "cc12m": PrefixWorld(
        "cc12m", langid_identify, xm3600_cider, language_id=LANGID_NAME,
        tokenization="XM3600 recipe (downstream.metrics.xm3600_tokens): NFKC, words segmented (stanza from "
                     "the local resources dir, else jieba for zh, else whitespace), punctuation removed, lowercase"),
}


def prefix_world(world: str) -> PrefixWorld:
    if world not in PREFIX_WORLDS:
        raise ValueError(f"unknown world {world!r} (config key 'world.name'); expected one of {tuple(PREFIX_WORLDS)}")
    return PREFIX_WORLDS[world]


def evaluate_prefix(model_dir: str, bench_dir: str | None, tokenizers_dir: str, image_size: int,
                    max_prompt_tokens: int, max_target_tokens: int, gen_cfg: dict, out_json: str, run: str = "",
                    threads: int = 1, *, world: str, prefixes: Mapping[str, str] | None = None,
                    stanza_dir: str | None = None, captions_path: str | None = None,
                    images_dir: str | None = None) -> dict:
    """Generate, identify and score every (lang, prefix mode) of gen_cfg["langs"]; write out_json.

    The benchmark is `<bench_dir>/captions.jsonl` with images in `<bench_dir>/images/`, or the files
    `captions_path` and `images_dir` name. `world` ('world.name') chooses the identifier, the scorer and
    the default prefixes (`world_prefixes(world)`); `prefixes` overrides them; `stanza_dir` is the local
    stanza resources dir of the cc12m scorer (None: jieba for zh)."""
    strategy = prefix_world(world)
    prefixes = dict(world_prefixes(world) if prefixes is None else prefixes)
    langs = gen_cfg["langs"]
    used = {lang: lang_prefix(prefixes, lang) for lang in langs}
    if captions_path is None or images_dir is None:
        if bench_dir is None:
            raise ValueError("need bench_dir, or both captions_path and images_dir")
        captions_path = captions_path or os.path.join(bench_dir, XM3600_CAPTIONS)
        images_dir = images_dir or os.path.join(bench_dir, IMAGES_DIR)
    torch.set_num_threads(threads)
    benchmarks = {lang: load_xm3600(captions_path, images_dir, lang) for lang in langs}
    n = gen_cfg["images_per_lang"]
    first = benchmarks[langs[0]].items
    if n > len(first):
        raise ValueError(f"config key 'evaluate.generation.images_per_lang' ({n}) exceeds the {len(first)} "
                         f"images of the benchmark {captions_path}")
    paths = [item.image_path for item in first[:n]]
    images = [image_file_to_tensor(path) for path in paths]
    model = load_florenz(model_dir).eval()
    collate = model_collator(model, tokenizers_dir, image_size, max_prompt_tokens, max_target_tokens)
    decoder_tokenizer = load_tokenizer(os.path.join(tokenizers_dir, "decoder.json"))
    results, captions = [], {}
    started = time.perf_counter()
    for lang in langs:
        references = [item.references for item in benchmarks[lang].items[:n]]
        captions[lang] = {}
        for mode in MODES:
            prefix = used[lang] if mode == "yes" else None
            texts = generate_captions(model, collate, decoder_tokenizer, images, lang, prefix=prefix,
                                      num_beams=gen_cfg["num_beams"], max_new_tokens=gen_cfg["max_new_tokens"],
                                      batch_size=gen_cfg["batch_size"])
            found = [strategy.identify(t) for t in texts]
            scored = ([join_prefix(prefix, t, lang) for t in texts] if prefix and gen_cfg["cider_includes_prefix"]
                      else texts)
            cider, segmenter = strategy.cider(scored, references, lang, stanza_dir)
            counts = {code: found.count(code) for code in sorted(set(found))}
            results.append({"lang": lang, "prefix": mode, "n": len(texts),
                            "target_lang_share": found.count(lang) / len(texts),
                            "cider": cider, "segmenter": segmenter, "identified": counts})
            captions[lang][mode] = [{"key": Path(p).stem, "caption": t, "identified": f}
                                    for p, t, f in zip(paths, texts, found)]
            log.info("%s %s prefix=%s: target share %.3f, CIDEr %.3f (%s), identified %s", run, lang, mode,
                     results[-1]["target_lang_share"], cider, segmenter, counts)
    seconds = time.perf_counter() - started
    out = {"run": run, "results": results, "captions": captions, "generation_seconds": seconds,
           "settings": {**gen_cfg, "threads": threads},
           "scoring": {"world": strategy.name,
                       "metric": "pycocoevalcap Cider (CIDEr-D)",
                       "tokenization": strategy.tokenization,
                       "segmenters": {r["lang"]: r["segmenter"] for r in results},
                       "candidate": "prefix + continuation" if gen_cfg["cider_includes_prefix"] else "continuation",
                       "prefixes": used,
                       "language_id": strategy.language_id,
                       "undetermined": UNDETERMINED,
                       "benchmark": {"captions": str(captions_path), "images": str(images_dir)}}}
    write_json(out, out_json)
    log.info("%s: generation and scoring took %.1f s", run, seconds)
    return out
