"""Downstream metrics as the paper computes them (DESIGN.md section 5).

- BLEU: sacrebleu corpus BLEU, tokenizer "zh" for Chinese, else "13a", with the signature.
  References come per segment (N x R) and are handed to sacrebleu per reference set (R x N).
- CIDEr: pycocoevalcap's Cider (CIDEr-D). COCO and Multi30K captions are tokenized first by the
  PTB tokenizer (Stanford CoreNLP through the local `java`); XM3600 captions by the XM3600 recipe
  (NFKC, word segmentation, punctuation removed, lowercase) and then scored by Cider directly.
- CoMMuTE accuracy: the share of items whose correct translation has the lower perplexity.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

import jieba
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
from sacrebleu.metrics import BLEU

NOT_SPACE_DELIMITED = frozenset({"ja", "th", "zh"})  # XM3600 languages that write no space between words


def _check_segments(hypotheses: Sequence[str], references_per_segment: Sequence[Sequence[str]]) -> None:
    if not hypotheses or len(hypotheses) != len(references_per_segment):
        raise ValueError(f"need one reference list per hypothesis, got {len(hypotheses)} hypotheses and "
                         f"{len(references_per_segment)} reference lists")
    for index, references in enumerate(references_per_segment):
        # a bare string is a sequence too, and would be read as one reference per character
        if isinstance(references, str) or not references or not all(isinstance(r, str) for r in references):
            raise ValueError(f"segment {index}: references must be a non-empty list of strings, got {references!r}")


def corpus_bleu(hypotheses: Sequence[str], references_per_segment: Sequence[Sequence[str]],
                lang: str) -> tuple[float, str]:
    """sacrebleu corpus BLEU of hypotheses against their references (one list per segment, of any
    length) in target language `lang`; returns (score, sacrebleu signature)."""
    _check_segments(hypotheses, references_per_segment)
    n_sets = max(len(references) for references in references_per_segment)
    # sacrebleu reads `references` as one stream per reference set (R x N) and zips it against the
    # hypotheses: an N x R list is silently misaligned (the authors' Multi30K Task 2 bug). A segment
    # with fewer references is padded with None, which sacrebleu skips (signature "nrefs:var").
    reference_sets = [[references[k] if k < len(references) else None for references in references_per_segment]
                      for k in range(n_sets)]
    bleu = BLEU(tokenize="zh" if lang == "zh" else "13a")
    score = bleu.corpus_score(list(hypotheses), reference_sets)
    return float(score.score), str(bleu.get_signature())


def _ptb_tokenize(captions: dict[int, list[str]]) -> dict[int, list[str]]:
    """PTB-tokenized, lowercased captions without punctuation tokens (pycocoevalcap, via java)."""
    tokenized = PTBTokenizer().tokenize({key: [{"caption": c} for c in texts] for key, texts in captions.items()})
    # the wrapper ignores java's exit status and zips its output lines against the captions, so a
    # failed or short run would silently drop captions
    if {key: len(texts) for key, texts in tokenized.items()} != {key: len(texts) for key, texts in captions.items()}:
        raise RuntimeError(f"the PTB tokenizer (java -cp stanford-corenlp-3.4.1.jar) returned "
                           f"{sum(map(len, tokenized.values()))} lines for {sum(map(len, captions.values()))} captions")
    return tokenized


def coco_cider(hypotheses: Sequence[str], references_per_segment: Sequence[Sequence[str]]) -> float:
    """CIDEr-D of hypotheses against their references after PTB tokenization (COCO, Multi30K Task 2)."""
    _check_segments(hypotheses, references_per_segment)
    gts = _ptb_tokenize({i: list(references) for i, references in enumerate(references_per_segment)})
    res = _ptb_tokenize({i: [hypothesis] for i, hypothesis in enumerate(hypotheses)})
    score, _ = Cider().compute_score(gts, res)
    return float(score)


@functools.lru_cache(maxsize=None)
def _stanza_segmenter(lang: str, stanza_dir: str) -> Callable[[str], list[str]]:
    if not Path(stanza_dir).is_dir():
        raise FileNotFoundError(f"stanza resources dir is missing: {stanza_dir}")
    import stanza  # imported here: it loads torch and is only needed when a resources dir is configured
    # download_method=None: read resources.json and the models from stanza_dir, never the network
    pipeline = stanza.Pipeline(lang, processors="tokenize", dir=stanza_dir, download_method=None,
                               logging_level="WARN")
    return lambda text: [token.text for sentence in pipeline(text).sentences for token in sentence.tokens]


@functools.lru_cache(maxsize=None)
def _jieba_segmenter() -> Callable[[str], list[str]]:
    jieba.setLogLevel(logging.WARNING)  # jieba logs its dictionary loading at DEBUG to stderr
    tokenizer = jieba.Tokenizer()  # the dictionary that ships inside the jieba package: no network
    return tokenizer.lcut


def xm3600_tokens(texts: Sequence[str], lang: str,
                  stanza_dir: str | os.PathLike | None = None) -> tuple[list[list[str]], str]:
    """The XM3600 recipe on each text: NFKC, words segmented, punctuation (Unicode categories P*)
    removed as a word break, lowercased. Returns the token lists and the segmenter used: "stanza"
    (a tokenize model from the local resources dir `stanza_dir`), else "jieba" for zh, else
    "whitespace" (space-delimited languages only)."""
    if stanza_dir is not None:
        segment, segmenter = _stanza_segmenter(lang, str(stanza_dir)), "stanza"
    elif lang == "zh":
        segment, segmenter = _jieba_segmenter(), "jieba"
    elif lang in NOT_SPACE_DELIMITED:
        raise ValueError(f"{lang!r} text has no spaces between words: segmenting it needs a local stanza "
                         f"resources dir (stanza_dir)")
    else:
        segment, segmenter = str.split, "whitespace"
    tokens = []
    for text in texts:
        words = []
        for word in segment(unicodedata.normalize("NFKC", text)):
            # punctuation inside a token breaks it ("red-haired" -> red haired) as punctuation between tokens does
            words.extend("".join(" " if unicodedata.category(c).startswith("P") else c for c in word).lower().split())
        tokens.append(words)
    return tokens, segmenter


def xm3600_cider(hypotheses: Sequence[str], references_per_segment: Sequence[Sequence[str]], lang: str,
                 stanza_dir: str | os.PathLike | None = None) -> tuple[float, str]:
    """CIDEr-D of hypotheses against their references on `xm3600_tokens`; returns (score, segmenter),
    since the segmenter changes the score (zh CIDEr by ~1.7x between stanza and jieba)."""
    _check_segments(hypotheses, references_per_segment)
    references = [r for segment in references_per_segment for r in segment]
    tokens, segmenter = xm3600_tokens([*hypotheses, *references], lang, stanza_dir)
    joined = iter(" ".join(words) for words in tokens)
    res = {i: [next(joined)] for i in range(len(hypotheses))}
    gts = {i: [next(joined) for _ in segment] for i, segment in enumerate(references_per_segment)}
    score, _ = Cider().compute_score(gts, res)
    return float(score), segmenter


def commute_accuracy(correct_nll: Sequence[float], incorrect_nll: Sequence[float]) -> float:
    """Share of CoMMuTE items whose correct translation has the lower perplexity, from per-item mean
    token NLLs (the log of perplexity, so the order is the same). A tie counts as not correct, as
    in CoMMuTE's evaluate.py (`c < i`): a model that cannot tell the translations apart earns nothing."""
    if not correct_nll or len(correct_nll) != len(incorrect_nll):
        raise ValueError(f"need one incorrect NLL per correct NLL, got {len(correct_nll)} and {len(incorrect_nll)}")
    if any(math.isnan(x) for x in [*correct_nll, *incorrect_nll]):
        # NaN compares false, so it would silently count as a wrong answer
        raise ValueError("NaN among the NLLs")
    return sum(c < i for c, i in zip(correct_nll, incorrect_nll)) / len(correct_nll)
