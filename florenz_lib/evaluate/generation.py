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
def generate_captions(model, collate: Seq2SeqCollator, decoder_tokenizer: Tokenizer, images: list[torch.Tensor],
                      lang: str, prefix: bool, num_beams: int, max_new_tokens: int,
                      batch_size: int) -> list[str]:
    """Captions of `images` (uint8 [3, H, W]) prompted for `lang`; with prefix=True, the continuation
    after `lang`'s prefix (max_new_tokens counts the tokens after the prefix)."""
    start = [DECODER_START, DECODER_BOS] + prefix_token_ids(decoder_tokenizer, lang) if prefix else [DECODER_START]
    captions = []
    for first in range(0, len(images), batch_size):
        chunk = images[first:first + batch_size]
        batch = collate([Example(image, "caption", lang, "", "") for image in chunk])
        kwargs = {"decoder_input_ids": torch.tensor([start] * len(chunk), dtype=torch.long)} if prefix else {}
        sequences = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   pixel_values=batch["pixel_values"], num_beams=num_beams, do_sample=False,
                                   max_new_tokens=max_new_tokens, **kwargs)
        if prefix and not (sequences[:, :len(start)] == torch.tensor(start)).all():
            raise RuntimeError("generation did not continue the given prefix")
        captions += [text.strip() for text in
                     decoder_tokenizer.decode_batch(sequences[:, len(start):].tolist(), skip_special_tokens=True)]
    return captions
