"""Per-language realisation of scene descriptions.

`describe(scene, lang, variant)` picks template family `variant % N_TEMPLATES`; the same
family is the same frame in every language, so the six renderings of one (scene, variant)
are translations of each other.
"""

from __future__ import annotations

from ..scene import Scene
from . import de, en, es, fr, ru, zh
from .common import TEMPLATE_FAMILIES

LANGS = ("en", "de", "fr", "es", "ru", "zh")
LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "ru": "Russian", "zh": "Chinese"}
N_TEMPLATES = len(TEMPLATE_FAMILIES)
_MODULES = {"en": en, "de": de, "fr": fr, "es": es, "ru": ru, "zh": zh}


def _module(lang: str):
    if lang not in _MODULES:
        raise ValueError(f"unknown language {lang!r}; expected one of {LANGS}")
    return _MODULES[lang]


def describe(scene: Scene, lang: str, variant: int) -> str:
    return _module(lang).realise(scene, TEMPLATE_FAMILIES[variant % N_TEMPLATES])


def language_prefix(lang: str) -> str:
    """The start of template family 0 ("The photo shows", "照片上"): a decoder prefix whose
    continuation is a grammatical caption. The continuation follows after a space, except
    in Chinese, which has none."""
    return _module(lang).PHOTO_PREFIX
