"""One training run of the study: a restructured model trained for a budget of steps."""
from __future__ import annotations

import os

import torch

from ..io import write_json
from ..models.configs import num_image_tokens
from ..models.florenz import DECODER_START, load_florenz, save_florenz
from ..models.freezing import apply_freezing_policy
from ..models.inputs import Seq2SeqCollator
from ..models.loss import per_sample_ce
from ..models.tokenizers import load_tokenizer
from ..data.shards import read_training_shards
from .data import BalancedImageStream
from .loop import OptimConfig, train_loop


def model_collator(model, tokenizers_dir: str, image_size: int, max_prompt_tokens: int,
                   max_target_tokens: int) -> Seq2SeqCollator:
    return Seq2SeqCollator(load_tokenizer(os.path.join(tokenizers_dir, "encoder.json")),
                           load_tokenizer(os.path.join(tokenizers_dir, "decoder.json")),
                           num_image_tokens(model.spec.florence2_config().vision_config, image_size),
                           max_prompt_tokens, max_target_tokens, decoder_start_id=DECODER_START)


def batch_ce(model, batch: dict) -> torch.Tensor:
    """Per-sample mean token CE of a collated batch."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   pixel_values=batch["pixel_values"], decoder_input_ids=batch["decoder_input_ids"],
                   decoder_attention_mask=batch["decoder_attention_mask"])
    return per_sample_ce(logits, batch["labels"])


def train_run(init_dir: str, shard_dir: str, tokenizers_dir: str, train_cfg: dict, steps: int, image_size: int,
              max_prompt_tokens: int, max_target_tokens: int, seed: int, out_dir: str) -> dict:
    torch.manual_seed(seed)
    torch.set_num_threads(train_cfg["threads"])
    model = load_florenz(init_dir)
    apply_freezing_policy(model)
    collate = model_collator(model, tokenizers_dir, image_size, max_prompt_tokens, max_target_tokens)
    stream = BalancedImageStream(read_training_shards(shard_dir).to_pylist(), seed)
    batch_size = train_cfg["batch_size"]
    optim = OptimConfig(lr=train_cfg["lr"], weight_decay=train_cfg["weight_decay"],
                        warmup_steps=train_cfg["warmup_steps"], grad_clip=train_cfg["grad_clip"])
    os.makedirs(out_dir, exist_ok=True)
    losses = train_loop(model, lambda: collate(stream.next_examples(batch_size)), lambda m, b: batch_ce(m, b).mean(),
                        steps, batch_size, optim, os.path.join(out_dir, "train_log.csv"),
                        desc=os.path.basename(out_dir))
    save_florenz(model, out_dir)
    summary = {"steps": steps, "batch_size": batch_size, "seen_samples": steps * batch_size,
               "first_loss": losses[0], "final_loss": losses[-1],
               "task_language_counts": dict(sorted(stream.balancer.counts.items()))}
    write_json(summary, os.path.join(out_dir, "train_summary.json"))
    return summary
