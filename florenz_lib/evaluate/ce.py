"""CE on the test splits: per sample the mean token CE over its whole target, averaged over samples; a split's
value is the sample-weighted mean over its languages (the authors' eval_loss.py)."""
from __future__ import annotations

import logging
import os
from collections import defaultdict

import torch
from tqdm import tqdm

from ..io import read_parquet, write_json
from ..models.florenz import load_florenz
from ..models.inputs import Example, Seq2SeqCollator, png_to_tensor
from ..train.runs import batch_ce, model_collator

log = logging.getLogger(__name__)
SPLITS = ("UC", "ST", "SC")


def decoder_positions(model) -> int:
    """The most decoder tokens the model has positions for (BART's learned positions; Gemma's RoPE range)."""
    return model.config.get_text_config().max_position_embeddings


def split_ce(model, collate: Seq2SeqCollator, rows: list[dict], target_lengths: list[int], batch_size: int,
             desc: str = "CE") -> list[float]:
    """Per-sample CE of rows, in their order. Batches hold targets of similar length (sorted by length),
    so padding does not dominate the forward."""
    order = sorted(range(len(rows)), key=target_lengths.__getitem__)
    ces = [0.0] * len(rows)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, mininterval=5):
        chunk = order[start:start + batch_size]
        examples = [Example(png_to_tensor(rows[i]["png"]), rows[i]["task"], rows[i]["lang"], rows[i]["source"],
                            rows[i]["target"]) for i in chunk]
        for i, ce in zip(chunk, batch_ce(model, collate(examples)).tolist()):
            ces[i] = ce
    return ces


@torch.no_grad()
def evaluate_ce(model_dir: str, test_dir: str, tokenizers_dir: str, image_size: int, batch_size: int,
                max_prompt_tokens: int, max_eval_target_tokens: int, out_json: str, threads: int = 1) -> dict:
    """Write out_json with each split's CE, per language {"ce", "n"}, the target limit used, and per split and
    language the targets longer than it ({"samples", "tokens" cut}). Targets are scored whole up to
    max_eval_target_tokens decoder tokens (the authors: 1024), capped by the decoder's positions, not at the
    training limit; a longer one is cut as in training (its closing eos kept) and counted."""
    torch.set_num_threads(threads)
    model = load_florenz(model_dir).eval()
    limit = min(max_eval_target_tokens, decoder_positions(model))
    collate = model_collator(model, tokenizers_dir, image_size, max_prompt_tokens, limit)
    result = {"per_lang": {}, "max_target_tokens": limit, "truncated": {}}
    for split in SPLITS:
        rows = read_parquet(os.path.join(test_dir, f"{split}.parquet"),
                            ["png", "task", "lang", "source", "target"]).to_pylist()
        if not rows:
            raise ValueError(f"test split {split} in {test_dir} is empty")
        lengths = [len(enc.ids) for enc in collate.decoder_tokenizer.encode_batch([r["target"] for r in rows])]
        per_lang = defaultdict(list)
        truncated = defaultdict(lambda: {"samples": 0, "tokens": 0})
        for row, length, ce in zip(rows, lengths, split_ce(model, collate, rows, lengths, batch_size, f"CE {split}")):
            per_lang[row["lang"]].append(ce)
            cut = truncated[row["lang"]]  # every language gets an entry, zeros when nothing was cut
            if length > limit:
                cut["samples"] += 1
                cut["tokens"] += length - limit
        values = [v for vs in per_lang.values() for v in vs]
        result[split] = sum(values) / len(values)
        result["per_lang"][split] = {lang: {"ce": sum(vs) / len(vs), "n": len(vs)} for lang, vs in per_lang.items()}
        result["truncated"][split] = dict(truncated)
        for lang, cut in truncated.items():
            if cut["samples"]:
                log.warning("CE %s %s: %d of %d targets are longer than %d decoder tokens and were cut (%d tokens)",
                            split, lang, cut["samples"], len(per_lang[lang]), limit, cut["tokens"])
    write_json(result, out_json)
    return result
