"""Which world language a piece of text is in, and the world's tokenization for scoring.

Language identification needs nothing beyond the world itself: the script decides Russian
(Cyrillic) and Chinese (CJK ideographs); among the Latin-script languages (en, de, fr, es) the
one whose lexicon covers the most word tokens wins. Each lexicon is the set of words in the
descriptions of many sampled scenes, in every template family, in that language (a fixed seed,
so the lexicons are the same on every machine). A tie between Latin lexicons is broken by the
words only one of them has; text with no letters, or with no covered word, is "und"
(undetermined).

Chinese has no spaces: `segment_zh` splits it by forward maximum matching against the world's
Chinese lexicon (its nouns, measure words, colours, sizes, numerals, localisers and template
words); a character the lexicon does not know becomes a token of its own.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import lru_cache

import numpy as np

from .grammar import LANGS, N_TEMPLATES, describe
from .grammar import zh as zh_grammar
from .scene import MAX_GROUPS, sample_scene

UNDETERMINED = "und"
LATIN_LANGS = ("en", "de", "fr", "es")
SCRIPT_LANGS = {"cyrillic": "ru", "cjk": "zh"}
LEXICON_SCENES = 400           # sampled scenes (the lexicons stop growing at about 200)
_LEXICON_SEED = 20250309       # fixed: lexicons do not depend on the study seed
# Words of the Chinese templates (zh.realise) that are not in the grammar's word tables.
ZH_TEMPLATE_WORDS = ("照片", "上", "有", "这里", "图片", "里", "是", "图中", "在", "的", "还有", "和")
ZH_SEGMENTER = "world-lexicon forward maximum matching (unknown characters as single tokens)"

_WORD = re.compile(r"[^\W\d_]+")


def char_script(char: str) -> str | None:
    """'latin', 'cyrillic', 'cjk' for a letter of those scripts, else None."""
    if "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf" or "\uf900" <= char <= "\ufaff":
        return "cjk"
    if not char.isalpha():
        return None
    name = unicodedata.name(char, "")
    if name.startswith("LATIN"):
        return "latin"
    if name.startswith("CYRILLIC"):
        return "cyrillic"
    return None


def words(text: str) -> list[str]:
    """Lowercased letter runs (apostrophes and hyphens split words: "d'un" -> "d", "un")."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


@lru_cache(maxsize=None)
def _lexicon_scenes(n_scenes: int) -> tuple:
    rng = np.random.default_rng(_LEXICON_SEED)
    return tuple(sample_scene(rng, MAX_GROUPS) for _ in range(n_scenes))


@lru_cache(maxsize=None)
def lexicon(lang: str, n_scenes: int = LEXICON_SCENES) -> frozenset[str]:
    """The words of `lang` in the descriptions of n_scenes sampled scenes, in every template family."""
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}; expected one of {LANGS}")
    vocabulary: set[str] = set()
    for scene in _lexicon_scenes(n_scenes):
        for variant in range(N_TEMPLATES):
            vocabulary.update(words(describe(scene, lang, variant)))
    return frozenset(vocabulary)


def identify_language(text: str) -> str:
    """The world language of `text` (one of LANGS), or UNDETERMINED."""
    scripts = Counter(s for s in map(char_script, text) if s is not None)
    if not scripts:
        return UNDETERMINED
    script = max(sorted(scripts), key=lambda s: scripts[s])
    if script in SCRIPT_LANGS:
        return SCRIPT_LANGS[script]
    tokens = [w for w in words(text) if all(char_script(c) == "latin" for c in w)]
    lexicons = {lang: lexicon(lang) for lang in LATIN_LANGS}
    covered = {lang: sum(w in lex for w in tokens) for lang, lex in lexicons.items()}
    best = max(covered.values())
    if best == 0:
        return UNDETERMINED
    tied = [lang for lang in LATIN_LANGS if covered[lang] == best]
    if len(tied) == 1:
        return tied[0]
    exclusive = {lang: sum(w in lexicons[lang] and not any(w in lexicons[o] for o in LATIN_LANGS if o != lang)
                           for w in tokens) for lang in tied}
    top = max(exclusive.values())
    winners = [lang for lang in tied if exclusive[lang] == top]
    return winners[0] if len(winners) == 1 else UNDETERMINED


@lru_cache(maxsize=1)
def zh_lexicon() -> frozenset[str]:
    g = zh_grammar
    entries = [w for noun, measure in g.NOUNS.values() for w in (noun, measure)]
    entries += [*g.COLOURS.values(), *g.SIZES.values(), *g.NUMBERS.values(), *g.RELATIONS.values()]
    return frozenset(entries + list(ZH_TEMPLATE_WORDS))


def segment_zh(text: str) -> list[str]:
    """Chinese text as words, by forward maximum matching against zh_lexicon(); runs of non-CJK
    characters are split on whitespace."""
    lex = zh_lexicon()
    longest = max(map(len, lex))
    tokens: list[str] = []
    i = 0
    while i < len(text):
        if char_script(text[i]) != "cjk":
            j = i
            while j < len(text) and char_script(text[j]) != "cjk":
                j += 1
            tokens.extend(text[i:j].split())
            i = j
            continue
        for length in range(min(longest, len(text) - i), 0, -1):
            if length == 1 or text[i:i + length] in lex:
                tokens.append(text[i:i + length])
                i += length
                break
    return tokens


def scoring_tokens(text: str, lang: str) -> list[str]:
    """The XM3600 recipe on world text: NFKC, lowercase, punctuation removed (as a word break),
    words segmented (segment_zh for Chinese, whitespace otherwise)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(c).startswith(("P", "S")) else c for c in text)
    return segment_zh(text) if lang == "zh" else text.split()
