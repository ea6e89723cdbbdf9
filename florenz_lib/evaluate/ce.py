"""CE on the test splits: per sample the mean token CE over its target, averaged over samples; a split's
value is the sample-weighted mean over its languages."""
from __future__ import annotations

import os
from collections import defaultdict

import torch
from tqdm import tqdm

from ..io import read_parquet, write_json
from ..models.florenz import load_florenz
from ..models.inputs import Example, png_to_tensor
from ..train.runs import batch_ce, model_collator

SPLITS = ("UC", "ST", "SC")


@torch.no_grad()
def evaluate_ce(model_dir: str, test_dir: str, tokenizers_dir: str, image_size: int, batch_size: int,
                max_prompt_tokens: int, max_target_tokens: int, out_json: str, threads: int = 1) -> dict:
    torch.set_num_threads(threads)
    model = load_florenz(model_dir).eval()
    collate = model_collator(model, tokenizers_dir, image_size, max_prompt_tokens, max_target_tokens)
    result = {"per_lang": {}}
    for split in SPLITS:
        rows = read_parquet(os.path.join(test_dir, f"{split}.parquet"),
                            ["png", "task", "lang", "source", "target"]).to_pylist()
        if not rows:
            raise ValueError(f"test split {split} in {test_dir} is empty")
        per_lang = defaultdict(list)
        for start in tqdm(range(0, len(rows), batch_size), desc=f"CE {split}", mininterval=5):
            chunk = rows[start:start + batch_size]
            examples = [Example(png_to_tensor(r["png"]), r["task"], r["lang"], r["source"], r["target"]) for r in chunk]
            for row, ce in zip(chunk, batch_ce(model, collate(examples)).tolist()):
                per_lang[row["lang"]].append(ce)
        values = [v for vs in per_lang.values() for v in vs]
        result[split] = sum(values) / len(values)
        result["per_lang"][split] = {lang: {"ce": sum(vs) / len(vs), "n": len(vs)} for lang, vs in per_lang.items()}
    write_json(result, out_json)
    return result
