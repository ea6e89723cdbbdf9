"""Base pretraining of the world's stand-ins for the public checkpoints: tiny Florence-2 models learn
English captioning only (as Florence-2's decoder saw only English); tiny Gemma-2 LMs learn all six
languages (as Gemma-2 did). Both are saved with save_pretrained so they load like the real ones."""
from __future__ import annotations

import logging
import os
import random

import torch
from transformers import Florence2ForConditionalGeneration, Gemma2ForCausalLM

from ..io import read_parquet
from ..train.loop import OptimConfig, train_loop
from .configs import florence2_config, gemma2_config, num_image_tokens
from .inputs import BASE_CAPTION_PROMPT, Example, Seq2SeqCollator, png_to_tensor, task_prompt
from .loss import IGNORE_INDEX, per_sample_ce
from .tokenizers import load_tokenizer, save_tokenizer, train_decoder_tokenizer, train_encoder_tokenizer

log = logging.getLogger(__name__)


def train_world_tokenizers(world_dir: str, encoder_vocab_size: int, decoder_vocab_size: int, out_dir: str) -> dict:
    """Encoder tokenizer on English world text and prompts; decoder tokenizer on text of all languages."""
    captions = read_parquet(os.path.join(world_dir, "captions.parquet"), ["lang", "text"]).to_pylist()
    corpus = read_parquet(os.path.join(world_dir, "corpus.parquet"), ["split", "lang", "en", "text"]).to_pylist()
    corpus = [r for r in corpus if r["split"] == "train"]
    english = [r["text"] for r in captions if r["lang"] == "en"] + [r["en"] for r in corpus]
    # the prompts are English too: the encoder must know their words
    english += [task_prompt(t, lang, "") for t in ("caption", "translation")
                for lang in ("en", "de", "fr", "es", "ru", "zh")] + [BASE_CAPTION_PROMPT]
    multilingual = [r["text"] for r in captions] + [r["en"] for r in corpus] + [r["text"] for r in corpus]
    os.makedirs(out_dir, exist_ok=True)
    encoder = train_encoder_tokenizer(english, encoder_vocab_size)
    decoder = train_decoder_tokenizer(multilingual, decoder_vocab_size)
    save_tokenizer(encoder, os.path.join(out_dir, "encoder.json"))
    save_tokenizer(decoder, os.path.join(out_dir, "decoder.json"))
    stats = {"encoder_vocab": encoder.get_vocab_size(), "decoder_vocab": decoder.get_vocab_size(),
             "encoder_texts": len(english), "decoder_texts": len(multilingual)}
    log.info("tokenizers: %s", stats)
    return stats


def _english_captions(world_dir: str) -> list[Example]:
    images = read_parquet(os.path.join(world_dir, "images.parquet"), ["key", "split", "png"]).to_pylist()
    pixels = {r["key"]: png_to_tensor(r["png"]) for r in images if r["split"] == "train"}
    captions = read_parquet(os.path.join(world_dir, "captions.parquet"), ["key", "lang", "text"]).to_pylist()
    return [Example(pixels[r["key"]], "caption", "en", "", r["text"])
            for r in captions if r["lang"] == "en" and r["key"] in pixels]


def pretrain_florence2(world_dir: str, tokenizers_dir: str, base: dict, image_size: int, pretrain: dict,
                       max_prompt_tokens: int, max_target_tokens: int, seed: int, out_dir: str, log_csv: str) -> dict:
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(os.path.join(tokenizers_dir, "encoder.json"))
    config = florence2_config(base, tokenizer.get_vocab_size())
    model = Florence2ForConditionalGeneration(config)
    examples = _english_captions(world_dir)
    collate = Seq2SeqCollator(tokenizer, tokenizer, num_image_tokens(config.vision_config, image_size),
                              max_prompt_tokens, max_target_tokens,
                              decoder_start_id=config.text_config.decoder_start_token_id,
                              fixed_prompt=BASE_CAPTION_PROMPT)
    rng = random.Random(seed)

    def next_batch():
        return collate(rng.sample(examples, pretrain["batch_size"]))

    def loss(m, batch):
        logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   pixel_values=batch["pixel_values"], decoder_input_ids=batch["decoder_input_ids"],
                   decoder_attention_mask=batch["decoder_attention_mask"]).logits
        return per_sample_ce(logits, batch["labels"]).mean()

    losses = train_loop(model, next_batch, loss, pretrain["steps"], pretrain["batch_size"],
                        OptimConfig(lr=pretrain["lr"], warmup_steps=pretrain["steps"] // 10), log_csv,
                        desc=f"florence2 {os.path.basename(out_dir)}")
    model.save_pretrained(out_dir)
    return {"first_loss": losses[0], "final_loss": losses[-1], "examples": len(examples)}


def _multilingual_texts(world_dir: str) -> list[str]:
    captions = read_parquet(os.path.join(world_dir, "captions.parquet"), ["key", "text"]).to_pylist()
    images = read_parquet(os.path.join(world_dir, "images.parquet"), ["key", "split"]).to_pylist()
    train_keys = {r["key"] for r in images if r["split"] == "train"}
    corpus = read_parquet(os.path.join(world_dir, "corpus.parquet"), ["split", "en", "text"]).to_pylist()
    texts = [r["text"] for r in captions if r["key"] in train_keys]
    for r in corpus:
        if r["split"] == "train":
            texts += [r["en"], r["text"]]
    return texts


def pretrain_gemma2(world_dir: str, tokenizers_dir: str, base: dict, pretrain: dict, max_target_tokens: int,
                    seed: int, out_dir: str, log_csv: str) -> dict:
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(os.path.join(tokenizers_dir, "decoder.json"))
    model = Gemma2ForCausalLM(gemma2_config(base, tokenizer.get_vocab_size()))
    texts = _multilingual_texts(world_dir)
    pad = tokenizer.token_to_id("<pad>")
    rng = random.Random(seed)

    def next_batch():
        rows = [enc.ids[:max_target_tokens] for enc in tokenizer.encode_batch(rng.sample(texts, pretrain["batch_size"]))]
        width = max(map(len, rows))
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        labels = torch.tensor([r[1:] + [IGNORE_INDEX] * (width - len(r)) for r in rows])
        return {"input_ids": ids[:, :-1], "attention_mask": (ids[:, :-1] != pad).long(), "labels": labels}

    def loss(m, batch):
        logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return per_sample_ce(logits, batch["labels"]).mean()

    losses = train_loop(model, next_batch, loss, pretrain["steps"], pretrain["batch_size"],
                        OptimConfig(lr=pretrain["lr"], warmup_steps=pretrain["steps"] // 10), log_csv,
                        desc=f"gemma2 {os.path.basename(out_dir)}")
    model.save_pretrained(out_dir)
    return {"first_loss": losses[0], "final_loss": losses[-1], "texts": len(texts)}
