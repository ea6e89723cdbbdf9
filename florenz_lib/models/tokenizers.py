"""The study's two tokenizers, saved as tokenizers/encoder.json and tokenizers/decoder.json.

Synthetic world: trained with `tokenizers` on the world's text. The encoder tokenizer mimics Florence-2's
BART tokenizer (byte-level BPE, English-only world text); the decoder tokenizer mimics Gemma-2's
sentencepiece tokenizer (metaspace BPE over all six languages).
cc12m world (`prepare_tokenizers`): the published Florence-2 and Gemma-2 tokenizer.json files, with an
<image> placeholder added to the encoder's and <eos> appended by the decoder's post-processor.
Special-token ids follow the real models in both: BART bos 0, pad 1, eos 2; Gemma pad 0, eos 1, bos 2.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

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


# ---------------------------------------------------------------------------------------------------------
# The cc12m world: the published tokenizers, prepared once for every later stage.

# Ids the later stages rely on: the encoder's are BART's (Florence-2's text config: bos 0, pad 1, eos 2), the
# decoder's are Gemma's (DESIGN.md section 5: pad 0, eos 1, bos 2).
FLORENCE_SPECIAL_IDS = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
GEMMA_SPECIAL_IDS = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}


class TokenizerFileError(ValueError):
    """A tokenizer file that later stages could not rely on; the message names the file."""


def _tokenizer_file(path: str) -> str:
    """A tokenizer.json path; a checkpoint directory stands for its tokenizer.json."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    return path


def _read_tokenizer(path: str) -> Tokenizer:
    try:
        return Tokenizer.from_file(path)
    except Exception as error:  # the tokenizers library raises a bare Exception on a malformed file
        raise TokenizerFileError(f"{path}: not a tokenizers tokenizer.json ({error})") from error


def _check_ids(tok: Tokenizer, expected: dict[str, int], path: str, role: str) -> None:
    for token, want in expected.items():
        got = tok.token_to_id(token)
        if got is None:
            raise TokenizerFileError(f"{path}: the {role} tokenizer has no {token} token (expected id {want})")
        if got != want:
            raise TokenizerFileError(f"{path}: the {role} tokenizer's {token} has id {got}, later stages expect {want}")


def _check_template(tok: Tokenizer, first: str, last: str, path: str, role: str) -> None:
    ids = tok.encode("a").ids
    if not ids or ids[0] != tok.token_to_id(first) or ids[-1] != tok.token_to_id(last):
        raise TokenizerFileError(f"{path}: the {role} tokenizer's post-processor does not make {first} text {last} "
                                 f"(\"a\" encodes to {tok.encode('a').tokens})")


def prepare_tokenizers(florence_tokenizer_json: str, gemma_tokenizer_json: str, out_dir: str) -> dict:
    """The cc12m world's tokenizers, from the published checkpoints' tokenizer.json files (or their
    directories).

    out_dir/encoder.json: Florence-2's BART tokenizer (RobertaProcessing: "<s> text </s>") with an <image>
    placeholder added as a special token at the end of its vocabulary (the restructure stage gives it an
    encoder embedding row); a file that already has <image> keeps its id.
    out_dir/decoder.json: Gemma-2's tokenizer whose post-processor makes "<bos> text <eos>" (Gemma's own
    adds <bos> only; the authors append <eos> to every label).
    The special-token ids later stages rely on are checked; a file that breaks one is an error naming the
    file and the token. Both files are written atomically. Returns the vocabulary sizes and the <image> id.
    """
    florence_path, gemma_path = _tokenizer_file(florence_tokenizer_json), _tokenizer_file(gemma_tokenizer_json)
    encoder, decoder = _read_tokenizer(florence_path), _read_tokenizer(gemma_path)
    for tok in (encoder, decoder):  # the collator pads and truncates; a file's own settings would interfere
        tok.no_padding()
        tok.no_truncation()

    _check_ids(encoder, FLORENCE_SPECIAL_IDS, florence_path, "Florence-2 (encoder)")
    _check_template(encoder, "<s>", "</s>", florence_path, "Florence-2 (encoder)")
    source_encoder_vocab = encoder.get_vocab_size()
    if encoder.token_to_id(IMAGE_TOKEN) is None:
        encoder.add_special_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)])
    image_token_id = encoder.token_to_id(IMAGE_TOKEN)
    if encoder.encode(f"{IMAGE_TOKEN}{IMAGE_TOKEN} a", add_special_tokens=False).ids[:2] != [image_token_id] * 2:
        raise TokenizerFileError(f"{florence_path}: {IMAGE_TOKEN} is not encoded as one token of its own")

    _check_ids(decoder, GEMMA_SPECIAL_IDS, gemma_path, "Gemma-2 (decoder)")
    # whatever the file's own post-processor adds (transformers rebuilds Gemma's from tokenizer_config's
    # add_bos_token / add_eos_token, so files differ), labels are "<bos> text <eos>"
    decoder.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", pair="<bos> $A <eos> <bos>:1 $B:1 <eos>:1",
        special_tokens=[("<bos>", GEMMA_SPECIAL_IDS["<bos>"]), ("<eos>", GEMMA_SPECIAL_IDS["<eos>"])])
    _check_template(decoder, "<bos>", "<eos>", gemma_path, "Gemma-2 (decoder, with <eos> appended)")

    os.makedirs(out_dir, exist_ok=True)
    save_tokenizer(encoder, os.path.join(out_dir, "encoder.json"))
    save_tokenizer(decoder, os.path.join(out_dir, "decoder.json"))
    return {"encoder_vocab": encoder.get_vocab_size(), "decoder_vocab": decoder.get_vocab_size(),
            "image_token_id": image_token_id, "source_encoder_vocab": source_encoder_vocab,
            "encoder_source": florence_path, "decoder_source": gemma_path}
