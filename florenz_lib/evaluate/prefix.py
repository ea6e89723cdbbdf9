"""Zero-shot captioning with and without a language prefix on the XM3600-like benchmark (Figure 4).

Per run, language and prefix mode: captions of the benchmark's first `images_per_lang` images,
the share identified (florenz_lib.world.langid) as the prompted language, and CIDEr against the
image's references (one per template family).

- Language identification reads the generated text only: in prefix mode the continuation after
  the prefix, since the prefix itself is always in the target language.
- CIDEr is pycocoevalcap's Cider (CIDEr-D) on the XM3600 recipe: NFKC, lowercase, punctuation
  removed, words split by whitespace, Chinese segmented with the world lexicon (`ZH_SEGMENTER`),
  all recorded in the output. The candidate in prefix mode is the prefix plus its continuation
  when `cider_includes_prefix` is true: the world's references are whole sentences, one of them in
  the prefix's template family, so scoring the continuation alone would charge prefix mode for the
  template words it was given (the real XM3600 references have no such frame, hence the paper
  scores the stripped text; `cider_includes_prefix: false` does that).
"""
from __future__ import annotations

import logging
import os
import time

import torch
from pycocoevalcap.cider.cider import Cider

from ..io import write_json
from ..models.florenz import load_florenz
from ..models.inputs import png_to_tensor
from ..models.tokenizers import load_tokenizer
from ..train.runs import model_collator
from ..world.benchmarks import read_xm3600
from ..world.generate import TRAIN_CAPTION_LANGS
from ..world.langid import UNDETERMINED, ZH_SEGMENTER, identify_language, scoring_tokens
from .generation import generate_captions, join_prefix

log = logging.getLogger(__name__)
MODES = ("no", "yes")  # prefix column values


def unseen_langs(langs) -> list[str]:
    """The captioning languages the models never saw captions in (all but en and de)."""
    return [lang for lang in langs if lang not in TRAIN_CAPTION_LANGS]


def cider_score(candidates: list[str], references: list[list[str]], lang: str) -> float:
    """Corpus CIDEr-D (pycocoevalcap Cider) of candidates against their reference lists, on
    `scoring_tokens` of every string."""
    if len(candidates) != len(references) or not candidates:
        raise ValueError(f"need one reference list per candidate, got {len(candidates)} and {len(references)}")
    res = {i: [" ".join(scoring_tokens(c, lang))] for i, c in enumerate(candidates)}
    gts = {i: [" ".join(scoring_tokens(r, lang)) for r in refs] for i, refs in enumerate(references)}
    score, _ = Cider().compute_score(gts, res)
    return float(score)


def evaluate_prefix(model_dir: str, bench_dir: str, tokenizers_dir: str, image_size: int, max_prompt_tokens: int,
                    max_target_tokens: int, gen_cfg: dict, out_json: str, run: str = "",
                    threads: int = 1) -> dict:
    """Generate, identify and score every (lang, prefix mode) of gen_cfg["langs"]; write out_json."""
    torch.set_num_threads(threads)
    records = read_xm3600(bench_dir)
    n = gen_cfg["images_per_lang"]
    if n > len(records):
        raise ValueError(f"config key 'evaluate.generation.images_per_lang' ({n}) exceeds the {len(records)} "
                         f"images of the benchmark in {bench_dir} (config key 'data.benchmarks.xm3600_images')")
    records = records[:n]
    images = [png_to_tensor(r["png"]) for r in records]
    model = load_florenz(model_dir).eval()
    collate = model_collator(model, tokenizers_dir, image_size, max_prompt_tokens, max_target_tokens)
    decoder_tokenizer = load_tokenizer(os.path.join(tokenizers_dir, "decoder.json"))
    results, captions = [], {}
    started = time.perf_counter()
    for lang in gen_cfg["langs"]:
        references = [r[lang]["caption"] for r in records]
        captions[lang] = {}
        for mode in MODES:
            texts = generate_captions(model, collate, decoder_tokenizer, images, lang, prefix=mode == "yes",
                                      num_beams=gen_cfg["num_beams"], max_new_tokens=gen_cfg["max_new_tokens"],
                                      batch_size=gen_cfg["batch_size"])
            found = [identify_language(t) for t in texts]
            scored = ([join_prefix(lang, t) for t in texts] if mode == "yes" and gen_cfg["cider_includes_prefix"]
                      else texts)
            counts = {code: found.count(code) for code in sorted(set(found))}
            results.append({"lang": lang, "prefix": mode, "n": len(texts),
                            "target_lang_share": found.count(lang) / len(texts),
                            "cider": cider_score(scored, references, lang), "identified": counts})
            captions[lang][mode] = [{"key": r["image/key"], "caption": t, "identified": f}
                                    for r, t, f in zip(records, texts, found)]
            log.info("%s %s prefix=%s: target share %.3f, CIDEr %.3f, identified %s", run, lang, mode,
                     results[-1]["target_lang_share"], results[-1]["cider"], counts)
    seconds = time.perf_counter() - started
    out = {"run": run, "results": results, "captions": captions, "generation_seconds": seconds,
           "settings": {**gen_cfg, "threads": threads},
           "scoring": {"metric": "pycocoevalcap Cider (CIDEr-D)",
                       "tokenization": "NFKC, lowercase, punctuation removed, whitespace words",
                       "zh_segmenter": ZH_SEGMENTER,
                       "candidate": "prefix + continuation" if gen_cfg["cider_includes_prefix"] else "continuation",
                       "language_id": "world script + lexicon coverage on the continuation",
                       "undetermined": UNDETERMINED}}
    write_json(out, out_json)
    log.info("%s: generation and scoring took %.1f s", run, seconds)
    return out
