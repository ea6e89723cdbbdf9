"""Translation: the CTranslate2 stage (florenz_lib.cc12m.translate.translate_tokens) against transformers'
greedy generate on the same tiny NLLB-architecture (M2M100) model and the same sentences; both loaded
beforehand, both float32 on one CPU thread, outputs required to be identical."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..cc12m.translate import generate_tokens_with_transformers, load_translator, translate_tokens
from .core import Row, make_row, paired_seconds

log = logging.getLogger(__name__)

LANG_CODES = {"en": "eng_Latn", "de": "deu_Latn"}


def tiny_nllb(texts: list[str], lang_codes: dict[str, str], vocab_size: int, d_model: int, layers: int,
              max_positions: int):
    """An untrained M2M100 (NLLB's architecture) and an NllbTokenizer whose BPE vocabulary is trained on
    `texts`, with the lang_codes values as its language tokens: (model, tokenizer). Seeded."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                                       special_tokens=["<s>", "<pad>", "</s>", "<unk>"]))
    trained = json.loads(bpe.to_str())["model"]
    tokenizer = NllbTokenizer(vocab=trained["vocab"], merges=[tuple(m) for m in trained["merges"]],
                              extra_special_tokens=list(lang_codes.values()), src_lang=lang_codes["en"])
    config = M2M100Config(vocab_size=len(tokenizer), d_model=d_model, encoder_layers=layers, decoder_layers=layers,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=2 * d_model,
                          decoder_ffn_dim=2 * d_model, max_position_embeddings=max_positions, dropout=0.0,
                          attention_dropout=0.0, activation_dropout=0.0, pad_token_id=tokenizer.pad_token_id,
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          decoder_start_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    return M2M100ForConditionalGeneration(config), tokenizer


def save_and_convert(model, tokenizer, out_dir) -> tuple[Path, Path]:
    """save_pretrained into out_dir/hf and CTranslate2's conversion (float32) into out_dir/ct2: (ct2_dir, hf_dir)."""
    from ctranslate2.converters import TransformersConverter

    hf_dir, ct2_dir = Path(out_dir) / "hf", Path(out_dir) / "ct2"
    model.eval().save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    TransformersConverter(str(hf_dir)).convert(str(ct2_dir), quantization=None, force=True)
    return ct2_dir, hf_dir


def build_random_m2m100(out_dir, texts: list[str], d_model: int = 64, layers: int = 1) -> tuple[Path, Path]:
    """A randomly initialised tiny_nllb saved and converted: (ct2_dir, hf_dir). Speed does not depend on the
    weights, and random weights decode to the length limit, so both sides run the same number of steps."""
    return save_and_convert(*tiny_nllb(texts, LANG_CODES, 1000, d_model, layers, 256), out_dir)


def bench_translation(work_dir, sentences: list[str], batch_size: int, max_length: int, repeats: int) -> list[Row]:
    """sentences/s of translate_tokens (CTranslate2 batches by tokens, 4096 per batch as in the
    config's default) vs generate_tokens_with_transformers (batches of batch_size sentences), both
    greedy to at most max_length tokens; raises if the outputs differ."""
    from transformers import AutoModelForSeq2SeqLM

    torch.set_num_threads(1)
    ct2_dir, hf_dir = build_random_m2m100(work_dir, sentences)
    translator = load_translator({"model_dir": str(ct2_dir), "tokenizer_dir": str(hf_dir), "lang_codes": LANG_CODES,
                                  "device": "cpu", "compute_type": "float32", "beam_size": 1, "threads": 1,
                                  "max_batch_tokens": 4096, "max_decoding_length": max_length})
    model = AutoModelForSeq2SeqLM.from_pretrained(str(hf_dir), local_files_only=True).eval()
    tokenizer = translator.tokenizer
    outputs = {}

    def ours():
        outputs["ours"] = translate_tokens(translator, sentences, "en", "de")

    def theirs():
        outputs["theirs"] = generate_tokens_with_transformers(model, tokenizer, sentences, LANG_CODES["en"],
                                                              LANG_CODES["de"], batch_size, max_length)

    ours_s, theirs_s = paired_seconds(ours, theirs, repeats)
    differ = [i for i, (a, b) in enumerate(zip(outputs["ours"], outputs["theirs"])) if a != b]
    if differ:
        i = differ[0]
        raise AssertionError(f"CTranslate2 and transformers greedy outputs differ for {len(differ)} of {len(sentences)} "
                             f"sentences, e.g. {sentences[i]!r}: {outputs['ours'][i]} vs {outputs['theirs'][i]}")
    log.info("translation: CTranslate2 %.2fs, transformers %.2fs for %d sentences", ours_s, theirs_s, len(sentences))
    n = len(sentences)
    return [make_row("translation", "CTranslate2 vs transformers generate (greedy, identical outputs)", n / ours_s,
                     n / theirs_s, "sentences/s", ">=", 3.0)]
