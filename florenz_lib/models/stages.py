"""The models rule group's stages: restructure a study size from its bases, and count P, Pt and F."""
from __future__ import annotations

import os

import torch
from transformers import Florence2ForConditionalGeneration, Gemma2ForCausalLM

from ..io import write_json
from .counting import forward_macs
from .florenz import load_florenz, save_florenz, strict_from_pretrained
from .freezing import apply_freezing_policy, count_parameters
from .restructure import florenz_from_florence2, florenz_from_florence2_and_gemma2
from .tokenizers import load_tokenizer


def restructure(family: str, florence_dir: str, gemma_dir: str | None, tokenizers_dir: str, out_dir: str,
                seed: int = 0) -> None:
    """Base checkpoints are read with transformers' from_pretrained from local directories, as real
    Florence-2 and Gemma-2 checkpoints would be. The surgery's new layers are drawn from the global RNG,
    seeded here so that the same config gives the same initial model."""
    torch.manual_seed(seed)
    florence = strict_from_pretrained(Florence2ForConditionalGeneration, florence_dir, attn_implementation="eager")
    if family == "florence":
        model = florenz_from_florence2(florence, load_tokenizer(os.path.join(tokenizers_dir, "encoder.json")),
                                       load_tokenizer(os.path.join(tokenizers_dir, "decoder.json")))
    else:
        gemma = strict_from_pretrained(Gemma2ForCausalLM, gemma_dir, attn_implementation="eager")
        model = florenz_from_florence2_and_gemma2(florence, gemma)
    save_florenz(model, out_dir)


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
