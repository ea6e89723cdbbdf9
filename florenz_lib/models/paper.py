"""The Florenz family at the paper's sizes (0.4B, 1.0B, 3.5B, 11.2B), built on the meta device.

The structure of each size is project data (`paper_configs/<size>.json`), copied from the authors'
post-surgery configs (DESIGN.md section 5, `reference/florenz-configs/`) and renamed to transformers'
native Florence2VisionConfig / BartConfig / Gemma2Config fields. Vocabularies follow the reference:
- encoder: Florence's BART tokenizer, 51289 tokens, plus the <image> placeholder the study adds (id 51289);
  every size has 51328 encoder rows, as the authors' Florence-2 variants do (the least multiple of 64 with a
  row for <image>; restructure.encoder_rows_for). The authors' Gemma variants keep 51289 rows (they
  concatenate image features instead of filling placeholders), so the 3.5B and 11.2B models here have
  39 x 1024 = 39,936 parameters more than the reference configs give: a trainable part of the encoder
  embedding, below the 0.01B the sizes are printed to;
- decoder: Gemma-2's tokenizer, 256000 tokens; the Florence-2 variants' decoders have 257024 rows, which is
  Gemma's 256000 plus 1024 = 51289 - 50265, the number of tokens Florence-2 adds to BART (<loc_*> and
  task tokens), so presumably those were kept.
image_token_id is 51289 (transformers' Florence-2 default, and the id prepare_tokenizers gives <image> in the
real Florence-2 tokenizer), which has an encoder row in every size.

The models exist only on the meta device: they have shapes but no storage, so P, Pt and forward MACs F
can be counted for the 11.2B model on a laptop.
"""
from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources

import pandas as pd
import torch
from transformers import Florence2Config

from .counting import forward_macs
from .florenz import FlorenzForConditionalGeneration, FlorenzConfig
from .freezing import apply_freezing_policy, count_parameters

PAPER_SIZES = ("0.4B", "1.0B", "3.5B", "11.2B")
PAPER_TABLE_COLUMNS = ["model", "family", "P", "Pt", "F", "encoder_vocab", "decoder_vocab"]
# DESIGN.md section 5: F at encoder and decoder text length 128 and 224 px.
PAPER_IMAGE_SIZE, PAPER_ENCODER_TEXT_TOKENS, PAPER_DECODER_TOKENS = 224, 128, 128


@cache
def _paper_config(name: str) -> dict:
    if name not in PAPER_SIZES:
        raise ValueError(f"unknown paper model {name!r}; one of {PAPER_SIZES}")
    path = resources.files(__package__).joinpath("paper_configs", f"{name}.json")
    return json.loads(path.read_text())


def paper_config(name: str) -> FlorenzConfig:
    """The FlorenzConfig of a paper size ("0.4B", "1.0B", "3.5B", "11.2B")."""
    data = copy.deepcopy(_paper_config(name))  # the cached data stays unshared
    return FlorenzConfig(family=data["family"], florence2=Florence2Config(**data["florence2"]).to_dict(),
                       decoder_vocab_size=data["decoder_vocab_size"], gemma2=data["gemma2"])


def build_paper_model(name: str) -> FlorenzForConditionalGeneration:
    """A paper-size Florenz model on the meta device: no storage, no weights; eval mode."""
    with torch.device("meta"):
        model = FlorenzForConditionalGeneration(paper_config(name))
    return model.eval()


def paper_model_row(name: str) -> dict:
    model = build_paper_model(name)
    apply_freezing_policy(model)
    p, pt = count_parameters(model)
    macs = forward_macs(model, PAPER_IMAGE_SIZE, PAPER_ENCODER_TEXT_TOKENS, PAPER_DECODER_TOKENS)
    return {"model": name, "family": model.config.family, "P": p, "Pt": pt, "F": macs,
            "encoder_vocab": model.encoder.embed_tokens.num_embeddings,
            "decoder_vocab": model.config.decoder_vocab_size}


def paper_model_table() -> pd.DataFrame:
    """One row per paper size: P and Pt (after the freezing policy, tied weights once), F (forward MACs per
    sample, 224 px, encoder text and decoder length 128), the encoder and decoder vocabulary sizes."""
    return pd.DataFrame([paper_model_row(name) for name in PAPER_SIZES], columns=PAPER_TABLE_COLUMNS)


def parameter_count(n: int) -> str:
    """As the paper writes sizes: 431_000_000 -> "0.43B"; small world models in millions."""
    return f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n / 1e6:.2f}M"
