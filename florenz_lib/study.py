"""Constants of the study that are not the synthetic world's: the authors' wording (DESIGN.md section 5).

Taken from the authors' public code (spravil/caption-via-translation):
- the task prompts: `src/caption_via_translation/process/processing_florence2.py`, the processor's
  `task_modifiers` ("<LANG_ZH>": "The target language is simplified Chinese.") joined by one space
  to `task_prompts_without_inputs["<CAPTION>"]` or `task_prompts_with_input["<TRANSLATE>"]`
  (`_construct_prompts`); the training and evaluation prompts are "<LANG_XX><CAPTION>" and
  "<LANG_XX><TRANSLATE>{source}" (`src/train.py`, `src/eval.py`);
- the decoder prefixes of zero-shot captioning on XM3600: `src/eval.py`,
  `Florence2ModelWrapper.process_batch_captioning` (`use_prefix`).

Both worlds prompt with these names (the synthetic world's tokenizers are trained on the prompts, so
they see the same words). The XM3600 prefixes are the cc12m world's; the synthetic world seeds its
decoder with its own grammar's prefixes (`florenz_lib.world.language_prefix`), since its references
are in its grammar, not in the authors' wording.
"""
from __future__ import annotations

from types import MappingProxyType

STUDY_LANGS = ("en", "de", "fr", "es", "ru", "zh")

# The language as the prompt names it ("<LANG_XX>" task modifiers).
LANGUAGE_NAMES = MappingProxyType({
    "en": "English",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "ru": "Russian",
    "zh": "simplified Chinese",
})

LANGUAGE_MODIFIER = "The target language is {name}."
CAPTION_PROMPT = "What does the image describe?"               # "<CAPTION>"
TRANSLATION_PROMPT = "Translate the following text: {source}"  # "<TRANSLATE>"

# Decoder prefixes of the authors' XM3600 evaluation with `use_prefix`.
XM3600_PREFIXES = MappingProxyType({
    "en": "The image shows",
    "de": "Das Bild zeigt",
    "fr": "La photo montre",
    "es": "La imagen muestra",
    "ru": "На картинке изображен",
    "zh": "图为",
})
