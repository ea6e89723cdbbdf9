"""Caption generation with and without a language prefix (DESIGN.md section 5, Figure 4).

The model's generation_config holds the paper's decoding (bos forced first, eos at the length limit);
beam size and length come from the study config. Without a prefix the decoder starts from decoder_start.
With a prefix the decoder input is [decoder_start, bos] + the prefix's decoder tokens (the world's
`language_prefix(lang)`, "La photo montre" for French), beam search continues from there, and the
prefix is stripped from the output: the returned text is the continuation only.
"""
from __future__ import annotations

import torch
from tokenizers import Tokenizer

from ..models.florenz import DECODER_BOS, DECODER_START
from ..models.inputs import Example, Seq2SeqCollator
from ..world import language_prefix


def prefix_token_ids(decoder_tokenizer: Tokenizer, lang: str) -> list[int]:
    """The decoder tokens of `lang`'s prefix, without bos/eos."""
    return decoder_tokenizer.encode(language_prefix(lang), add_special_tokens=False).ids


def join_prefix(lang: str, continuation: str) -> str:
    """The prefix and its continuation as one caption (no space between them in Chinese)."""
    prefix = language_prefix(lang)
    if not continuation:
        return prefix
    return prefix + continuation if lang == "zh" else f"{prefix} {continuation}"


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
                      lang: str, prefix: bool, num_beams: int, max_new_tokens: int,
                      batch_size: int) -> list[str]:
    """Captions of `images` (uint8 [3, H, W]) prompted for `lang`; with prefix=True, the continuation
    after `lang`'s prefix (max_new_tokens counts the tokens after the prefix)."""
    start = [DECODER_START, DECODER_BOS] + prefix_token_ids(decoder_tokenizer, lang) if prefix else [DECODER_START]
    examples = [Example(image, "caption", lang, "", "") for image in images]
    return generate_texts(model, collate, decoder_tokenizer, examples, start, num_beams, max_new_tokens, batch_size)
