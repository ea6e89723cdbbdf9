"""World tokenizers trained with `tokenizers`.

The encoder tokenizer mimics Florence-2's BART tokenizer (byte-level BPE, English-only world text);
the decoder tokenizer mimics Gemma-2's sentencepiece tokenizer (metaspace BPE over all six languages).
Special-token ids follow the real models: BART bos 0, pad 1, eos 2; Gemma pad 0, eos 1, bos 2.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from ..io import replacing

ENCODER_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<image>"]
DECODER_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]
IMAGE_TOKEN = "<image>"
METASPACE = "\u2581"  # sentencepiece's word marker


def train_encoder_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=ENCODER_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return tok


def train_decoder_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=DECODER_SPECIALS, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", 2), ("<eos>", 1)])
    return tok


def save_tokenizer(tok: Tokenizer, path: str) -> None:
    with replacing(path) as tmp:
        tok.save(str(tmp))


def load_tokenizer(path: str) -> Tokenizer:
    if not os.path.exists(path):
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    return Tokenizer.from_file(path)
