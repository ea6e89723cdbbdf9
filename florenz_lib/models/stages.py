"""The models rule group's stages: restructure a study size from its bases, and count P, Pt and F."""
from __future__ import annotations

import gc
import json
import logging
import os
import time
from pathlib import Path

import torch
from transformers import Florence2Config, Florence2ForConditionalGeneration, Gemma2Config, Gemma2ForCausalLM

from ..io import replacing, write_json
from .convert import SAFETENSORS_DTYPES, stored_elements, weight_files
from .counting import forward_macs
from .florenz import load_florenz, save_florenz, strict_from_pretrained
from .freezing import apply_freezing_policy, count_parameters
from .restructure import (build_on_meta, finish_model, florenz_from_florence2, gemma_family_config,
                          take_florence_encoder, take_gemma_decoder)
from .tokenizers import IMAGE_TOKEN, load_tokenizer

log = logging.getLogger(__name__)

def stored_dtype(model_dir: str) -> torch.dtype:
    """The floating dtype a checkpoint's safetensors store its weights in (read from the file headers, no
    tensor is read); where several, the one most elements have."""
    counts = {dtype: n for dtype, n in stored_elements(weight_files(Path(model_dir))).items()
              if dtype in SAFETENSORS_DTYPES}
    if len(counts) > 1:
        log.warning("%s stores weights in several dtypes %s; loading all as the most common", model_dir, counts)
    return getattr(torch, SAFETENSORS_DTYPES[max(counts, key=counts.get)])


def _require_checkpoint(model_dir: str | None, what: str) -> str:
    if model_dir is None or not os.path.exists(os.path.join(model_dir, "config.json")):
        raise FileNotFoundError(f"no {what} checkpoint in {model_dir}: config.json is missing")
    return model_dir


def _load_base(model_class, model_dir: str):
    dtype = stored_dtype(model_dir)
    model = strict_from_pretrained(model_class, model_dir, attn_implementation="eager", dtype=dtype)
    log.info("loaded %s from %s in %s", model_class.__name__, model_dir, next(model.parameters()).dtype)
    return model


def restructure(family: str, florence_dir: str, gemma_dir: str | None, tokenizers_dir: str, out_dir: str,
                seed: int = 0) -> None:
    """Base checkpoints are read with transformers' from_pretrained from local directories (the native
    Florence2ForConditionalGeneration and Gemma2ForCausalLM layouts, sharded or not), in the dtype their
    safetensors store, and their tensors become the Florenz model's without a copy: the Florenz model is
    built on the meta device and only its new parts are materialised (restructure.py). The surgery's new
    cross-attention projections are drawn from a generator seeded with seed (the global RNG is not used), so
    the same seed gives the same initial model bit for bit. The encoder tokenizer's <image> id becomes the
    model's, with an encoder embedding row (the mean of the others) if the base has none for it."""
    _require_checkpoint(florence_dir, "Florence-2")
    encoder_tokenizer = load_tokenizer(os.path.join(tokenizers_dir, "encoder.json"))
    decoder_tokenizer = load_tokenizer(os.path.join(tokenizers_dir, "decoder.json"))
    if encoder_tokenizer.token_to_id(IMAGE_TOKEN) is None:
        raise ValueError(f"{os.path.join(tokenizers_dir, 'encoder.json')} has no {IMAGE_TOKEN} token")
    if family == "florence":
        florence = _load_base(Florence2ForConditionalGeneration, florence_dir)
        model = florenz_from_florence2(florence, encoder_tokenizer, decoder_tokenizer, clone=False)
    else:
        _require_checkpoint(gemma_dir, "Gemma-2")
        gemma_config = Gemma2Config.from_pretrained(gemma_dir)
        if decoder_tokenizer.get_vocab_size() > gemma_config.vocab_size:
            raise ValueError(f"{os.path.join(tokenizers_dir, 'decoder.json')} has {decoder_tokenizer.get_vocab_size()} "
                             f"tokens, the Gemma-2 checkpoint in {gemma_dir} only {gemma_config.vocab_size} rows")
        gemma_config._attn_implementation = "eager"
        model = build_on_meta(gemma_family_config(Florence2Config.from_pretrained(florence_dir), gemma_config,
                                                  encoder_tokenizer))
        florence = _load_base(Florence2ForConditionalGeneration, florence_dir)
        take_florence_encoder(model, florence, clone=False)
        florence_config = florence.config
        del florence
        gc.collect()
        gemma = _load_base(Gemma2ForCausalLM, gemma_dir)
        started = time.perf_counter()
        take_gemma_decoder(model, gemma, seed, clone=False)
        log.info("took Gemma-2's weights and drew the new cross-attention layers in %.1f s",
                 time.perf_counter() - started)
        # the loaded bases' configs (what a model built from them records: their paths and dtypes)
        loaded = gemma_family_config(florence_config, gemma.config, encoder_tokenizer)
        model.config.florence2, model.config.gemma2 = loaded.florence2, loaded.gemma2
        del gemma
        model = finish_model(model)
    gc.collect()
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters() if p.is_floating_point()})
    log.info("restructured %s: image token %d, %d encoder rows, weights in %s", family, model.image_token_id,
             model.encoder.embed_tokens.num_embeddings, ", ".join(dtypes))
    save_florenz(model, out_dir)
    if len(dtypes) > 1:
        _record_load_dtype(out_dir, dtypes)


def _record_load_dtype(out_dir: str, dtypes: list[str]) -> None:
    """Bases stored in different dtypes give a model with several: save_pretrained records the first
    parameter's (the vision tower's), and from_pretrained would cast every weight to it, narrowing the
    others (Gemma-2's float32 to Florence-2's float16, say). Record one that narrows none instead."""
    wide = "float64" if "float64" in dtypes else "float32"
    path = os.path.join(out_dir, "config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    log.warning("weights in %s: %s records dtype %s (was %s)", ", ".join(dtypes), path, wide, config.get("dtype"))
    config["dtype"] = wide
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")


def model_stats(model_dir: str, image_size: int, encoder_text_tokens: int, decoder_tokens: int, out_json: str) -> dict:
    model = load_florenz(model_dir)
    apply_freezing_policy(model)
    total, trainable = count_parameters(model)
    stats = {"family": model.config.family, "P": total, "Pt": trainable,
             "F": forward_macs(model, image_size, encoder_text_tokens, decoder_tokens),
             "F_unit": "MACs (FlopCounterMode FLOPs / 2)",
             "encoder_vocab": model.encoder.embed_tokens.num_embeddings,
             "decoder_vocab": model.config.decoder_vocab_size}
    write_json(stats, out_json)
    return stats
