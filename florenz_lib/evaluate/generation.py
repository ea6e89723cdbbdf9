"""Caption generation with and without a language prefix (DESIGN.md section 5, Figure 4).

The model's generation_config holds the paper's decoding (bos forced first, eos at the length limit);
beam size and length come from the study config. Without a prefix the decoder starts from decoder_start.
With a prefix the decoder input is [decoder_start, bos] + the prefix's decoder tokens, beam search
continues from there, and the prefix is stripped from the output: the returned text is the continuation
only.

Which prefix seeds a language is the world's (`world_prefixes`): the synthetic world's grammar
("La photo montre" for French, the start of its photo template, so that a continuation is one of its
sentences), or in the cc12m world the authors' XM3600 prefixes (florenz_lib.study.XM3600_PREFIXES).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from tokenizers import Tokenizer

from ..models.florenz import DECODER_BOS, DECODER_START
from ..models.inputs import Example, Seq2SeqCollator
from ..study import XM3600_PREFIXES

NO_SPACE_LANGS = frozenset({"zh"})  # a continuation follows its prefix without a space


def _synthetic_prefixes() -> dict[str, str]:
    from ..world import LANGS, language_prefix  # the world's grammar, only where the world is synthetic
    return {lang: language_prefix(lang) for lang in LANGS}


PREFIX_SOURCES = {"synthetic": _synthetic_prefixes, "cc12m": lambda: dict(XM3600_PREFIXES)}


def world_prefixes(world: str) -> dict[str, str]:
    """The decoder prefix of every language in `world` (config key 'world.name')."""
    if world not in PREFIX_SOURCES:
        raise ValueError(f"unknown world {world!r}; expected one of {tuple(PREFIX_SOURCES)}")
    return PREFIX_SOURCES[world]()


def lang_prefix(prefixes: Mapping[str, str], lang: str) -> str:
    """prefixes[lang], or a ValueError naming the language and the languages that have one."""
    if lang not in prefixes:
        raise ValueError(f"no decoder prefix for language {lang!r}; prefixes exist for {sorted(prefixes)}")
    return prefixes[lang]


def prefix_token_ids(decoder_tokenizer: Tokenizer, prefix: str) -> list[int]:
    """The decoder tokens of a prefix, without bos/eos."""
    return decoder_tokenizer.encode(prefix, add_special_tokens=False).ids


def prefix_start(decoder_tokenizer: Tokenizer, prefix: str) -> list[int]:
    """The decoder input that seeds generation with `prefix`: decoder_start, bos, the prefix's tokens."""
    return [DECODER_START, DECODER_BOS] + prefix_token_ids(decoder_tokenizer, prefix)


def join_prefix(prefix: str, continuation: str, lang: str) -> str:
    """The prefix and its continuation as one caption (no space between them in Chinese)."""
    if not continuation:
        return prefix
    return prefix + continuation if lang in NO_SPACE_LANGS else f"{prefix} {continuation}"


@torch.no_grad()
def generate_texts(model, collate: Seq2SeqCollator, decoder_tokenizer: Tokenizer, examples: list[Example],
                   start_ids: list[int], num_beams: int, max_new_tokens: int, batch_size: int) -> list[str]:
    """Beam-search outputs for `examples` (their task, language and source make the prompt), decoding
    from start_ids ([decoder_start] alone, or decoder_start, bos and a prefix); the text after start_ids."""
    plain = start_ids == [DECODER_START]
    texts = []
    for first in range(0, len(examples), batch_size):
        chunk = examples[first:first + batch_size]
        batch = collate(chunk)
        kwargs = {} if plain else {"decoder_input_ids": torch.tensor([start_ids] * len(chunk), dtype=torch.long)}
        sequences = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   pixel_values=batch["pixel_values"], num_beams=num_beams, do_sample=False,
                                   max_new_tokens=max_new_tokens, **kwargs)
        if not (sequences[:, :len(start_ids)] == torch.tensor(start_ids)).all():
            raise RuntimeError("generation did not continue the given decoder start")
        texts += [text.strip() for text in
                  decoder_tokenizer.decode_batch(sequences[:, len(start_ids):].tolist(), skip_special_tokens=True)]
    return texts


def generate_captions(model, collate: Seq2SeqCollator, decoder_tokenizer: Tokenizer, images: list[torch.Tensor],
                      lang: str, prefix: str | None, num_beams: int, max_new_tokens: int,
                      batch_size: int) -> list[str]:
    """Captions of `images` (uint8 [3, H, W]) prompted for `lang`; with a prefix (its text), the
    continuation after it (max_new_tokens counts the tokens after the prefix); with None, unseeded."""
    if prefix is not None and (not isinstance(prefix, str) or not prefix):
        raise ValueError(f"prefix must be the prefix text or None, got {prefix!r}")
    start = [DECODER_START] if prefix is None else prefix_start(decoder_tokenizer, prefix)
    examples = [Example(image, "caption", lang, "", "") for image in images]
    return generate_texts(model, collate, decoder_tokenizer, examples, start, num_beams, max_new_tokens, batch_size)
