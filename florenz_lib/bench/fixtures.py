"""The benchmarks' own data and models, built in a directory from nothing (no downloads): a small
synthetic world, its tokenizers, a restructured Florenz model of the gemma family, training rows in
the shard format and UC/ST/SC test splits."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import torch

from ..data.io import CAPTIONS_FILE, CORPUS_FILE, IMAGES_FILE, read_world_table
from ..data.shards import TEST_SPLIT_SCHEMA
from ..io import write_parquet
from ..models.configs import florence2_config, gemma2_config
from ..models.florenz import save_florenz
from ..models.inputs import task_prompt
from ..models.restructure import florenz_from_florence2_and_gemma2
from ..models.tokenizers import save_tokenizer, train_decoder_tokenizer, train_encoder_tokenizer
from ..world.generate import generate_world

log = logging.getLogger(__name__)

IMAGE_SIZE = 64
# The default study's florencegemma2-large (config.yaml: florence "large" + gemma "2b").
STUDY_FLORENCE = {"vision_dims": [24, 48, 96], "vision_depths": [1, 1, 1], "vision_heads": [1, 2, 4], "d_model": 96,
                  "encoder_layers": 2, "decoder_layers": 2, "ffn_dim": 192, "attention_heads": 4}
STUDY_GEMMA = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
               "head_dim": 64, "intermediate_size": 256}
# For the test sizes: the tests' tiny models.
TINY_FLORENCE = {"vision_dims": [8, 16], "vision_depths": [1, 1], "vision_heads": [1, 2], "d_model": 16,
                 "encoder_layers": 1, "decoder_layers": 1, "ffn_dim": 32, "attention_heads": 2}
TINY_GEMMA = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
              "head_dim": 16, "intermediate_size": 64}
MAX_PROMPT_TOKENS, MAX_TARGET_TOKENS = 48, 40


@dataclass
class BenchData:
    world_dir: Path
    tokenizers_dir: Path
    model_dir: Path        # the restructured, untrained model (save_florenz)
    test_dir: Path         # UC/ST/SC.parquet in TEST_SPLIT_SCHEMA
    train_rows: list[dict]  # training shard rows: key, png, annotations
    image_size: int = IMAGE_SIZE


def build_bench_data(root, n_images: int, tiny: bool = False, seed: int = 0) -> BenchData:
    """World of n_images train (and n_images // 4 held-out) images; every train image gets its en/de
    captions and the train corpus pairs dealt round-robin over the images."""
    root = Path(root)
    world_dir = root / "world"
    n_heldout = max(8, n_images // 4)
    generate_world({"image_size": IMAGE_SIZE, "max_objects": 3, "n_train_images": n_images,
                    "n_heldout_images": n_heldout, "n_corpus_pairs": n_images, "n_heldout_corpus_pairs": n_heldout},
                   seed, world_dir)
    images = read_world_table(world_dir, IMAGES_FILE, ["key", "split", "png"]).to_pylist()
    captions = read_world_table(world_dir, CAPTIONS_FILE, ["key", "lang", "text"]).to_pylist()
    corpus = read_world_table(world_dir, CORPUS_FILE, ["pair_id", "split", "lang", "en", "text"]).to_pylist()

    english = [c["text"] for c in captions if c["lang"] == "en"] + [p["en"] for p in corpus]
    prompts = [task_prompt(t, l, "") for t in ("caption", "translation") for l in ("en", "de", "fr", "es", "ru", "zh")]
    encoder_tok = train_encoder_tokenizer(english + prompts, 300 if tiny else 800)
    decoder_tok = train_decoder_tokenizer(english + [c["text"] for c in captions] + [p["text"] for p in corpus],
                                          320 if tiny else 1500)
    tokenizers_dir = root / "tokenizers"
    tokenizers_dir.mkdir(parents=True, exist_ok=True)
    save_tokenizer(encoder_tok, str(tokenizers_dir / "encoder.json"))
    save_tokenizer(decoder_tok, str(tokenizers_dir / "decoder.json"))

    from transformers import Florence2ForConditionalGeneration, Gemma2ForCausalLM
    torch.manual_seed(seed)
    florence = Florence2ForConditionalGeneration(
        florence2_config(TINY_FLORENCE if tiny else STUDY_FLORENCE, encoder_tok.get_vocab_size()))
    gemma = Gemma2ForCausalLM(gemma2_config(TINY_GEMMA if tiny else STUDY_GEMMA, decoder_tok.get_vocab_size()))
    model_dir = root / "model"
    save_florenz(florenz_from_florence2_and_gemma2(florence, gemma, seed=seed), str(model_dir))

    train = [im for im in images if im["split"] == "train"]
    heldout = [im for im in images if im["split"] == "heldout"]
    annotations = {im["key"]: [] for im in train}
    for c in captions:
        if c["key"] in annotations and c["lang"] in ("en", "de"):
            annotations[c["key"]].append({"task": "caption", "lang": c["lang"], "source": "", "target": c["text"]})
    train_pairs = [p for p in corpus if p["split"] == "train"]
    for i, p in enumerate(train_pairs):
        annotations[train[i % len(train)]["key"]].append(
            {"task": "translation", "lang": p["lang"], "source": p["en"], "target": p["text"]})
    train_rows = [{"key": im["key"], "png": im["png"], "annotations": annotations[im["key"]]} for im in train]

    png_of = {im["key"]: im["png"] for im in heldout}
    heldout_captions = [c for c in captions if c["key"] in png_of]
    heldout_pairs = [p for p in corpus if p["split"] == "heldout"]
    keys = list(png_of)
    splits = {
        "UC": [{"key": c["key"], "task": "caption", "lang": c["lang"], "source": "", "target": c["text"]}
               for c in heldout_captions if c["lang"] in ("es", "zh")],
        "SC": [{"key": c["key"], "task": "caption", "lang": c["lang"], "source": "", "target": c["text"]}
               for c in heldout_captions if c["lang"] in ("en", "de")],
        "ST": [{"key": keys[i % len(keys)], "task": "translation", "lang": p["lang"], "source": p["en"],
                "target": p["text"]} for i, p in enumerate(q for q in heldout_pairs if q["lang"] in ("es", "zh"))],
    }
    test_dir = root / "test"
    for split, rows in splits.items():
        write_parquet(pa.Table.from_pylist([{**r, "png": png_of[r["key"]]} for r in rows], schema=TEST_SPLIT_SCHEMA),
                      test_dir / f"{split}.parquet")
    log.info("bench data in %s: %d train images, %d test rows", root, len(train_rows),
             sum(len(r) for r in splits.values()))
    return BenchData(world_dir, tokenizers_dir, model_dir, test_dir, train_rows)
