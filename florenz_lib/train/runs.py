"""One training run of the study: a restructured model trained for a budget of steps, in one process or
data-parallel under torchrun (DDP, or FSDP for the sizes listed in train.fsdp_sizes), resumable from
its last checkpoint after a crash."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil

import torch
from torch.distributed.checkpoint.state_dict import get_model_state_dict

from ..io import write_json
from ..models.configs import num_image_tokens
from ..models.florenz import DECODER_START, load_florenz, save_florenz
from ..models.freezing import apply_freezing_policy
from ..models.inputs import Seq2SeqCollator
from ..models.loss import per_sample_ce, target_token_counts, token_ce
from ..models.tokenizers import load_tokenizer
from ..data.shards import read_training_shards
from .balancing import TASK_LANGUAGE_KEYS
from .checkpoint import FULL, Checkpointing, find_resumable, load_model_state, remove_checkpoints
from .data import BalancedImageStream, RankBatches
from .distributed import (DistContext, init_distributed, parallel_mode, shutdown_distributed, unwrap,
                          wrap_model)
from .loop import OptimConfig, train_loop

log = logging.getLogger(__name__)


def model_collator(model, tokenizers_dir: str, image_size: int, max_prompt_tokens: int,
                   max_target_tokens: int) -> Seq2SeqCollator:
    return Seq2SeqCollator(load_tokenizer(os.path.join(tokenizers_dir, "encoder.json")),
                           load_tokenizer(os.path.join(tokenizers_dir, "decoder.json")),
                           num_image_tokens(model.config.florence2_config().vision_config, image_size),
                           max_prompt_tokens, max_target_tokens, decoder_start_id=DECODER_START,
                           image_size=image_size)


def _logits(model, batch: dict) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 pixel_values=batch["pixel_values"], decoder_input_ids=batch["decoder_input_ids"],
                 decoder_attention_mask=batch["decoder_attention_mask"]).logits


def batch_ce(model, batch: dict) -> torch.Tensor:
    """Per-sample mean token CE of a collated batch."""
    return per_sample_ce(_logits(model, batch), batch["labels"])


def token_ce_sum(model, batch: dict) -> torch.Tensor:
    """CE summed over every target token of a collated batch."""
    return token_ce(_logits(model, batch), batch["labels"]).sum()


def sample_ce_sum(model, batch: dict) -> torch.Tensor:
    """Per-sample mean token CE summed over the samples of a collated batch."""
    return batch_ce(model, batch).sum()


# train_loop's (compute_loss, count_units) per reduction; a step's loss is the sum over all its units divided
# by their number. token_mean, as the authors: every target token of the step weighs the same, so a long
# caption weighs more than a short translation. sample_mean: the mean of per-sample means.
LOSS_REDUCTIONS = {
    "token_mean": (token_ce_sum, lambda batch: int(target_token_counts(batch["labels"]).sum())),
    "sample_mean": (sample_ce_sum, lambda batch: len(batch["labels"])),
}


def check_loss_reduction(loss_reduction: str) -> None:
    if loss_reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"unknown loss reduction {loss_reduction!r}; expected one of {tuple(LOSS_REDUCTIONS)}")


def batch_geometry(batch_size: int, micro_batch_size: int | None, world_size: int) -> tuple[int, int]:
    """(samples per process per micro-batch, gradient accumulation steps) for a global batch of
    batch_size over world_size processes, with micro-batches of at most micro_batch_size samples: the
    fewest accumulation steps that split the batch evenly."""
    if batch_size % world_size:
        raise ValueError(f"train.batch_size {batch_size} cannot be split evenly over {world_size} processes")
    per_process = batch_size // world_size
    limit = micro_batch_size or per_process
    accum = next(a for a in range(-(-per_process // limit), per_process + 1) if per_process % a == 0)
    return per_process // accum, accum


def _file_signature(path: str) -> list:
    stat = os.stat(path)
    return [os.path.basename(path), stat.st_size, stat.st_mtime_ns]


def run_fingerprint(init_dir: str, shard_dir: str, train_cfg: dict, steps: int, seed: int,
                    loss_reduction: str) -> dict:
    """What a checkpoint must share with this run to be resumed: the schedule, optimizer settings, loss
    reduction, seed, and the init model and shard files (by name, size and mtime). Not the world size or
    micro-batch size: the sample sequence does not depend on them."""
    shards = sorted(os.path.join(shard_dir, n) for n in os.listdir(shard_dir) if n.endswith(".parquet"))
    files = [_file_signature(os.path.join(init_dir, "model.safetensors"))] + [_file_signature(p) for p in shards]
    return {"steps": steps, "batch_size": train_cfg["batch_size"], "lr": train_cfg["lr"],
            "weight_decay": train_cfg["weight_decay"], "warmup_steps": train_cfg["warmup_steps"],
            "grad_clip": train_cfg["grad_clip"], "loss": loss_reduction, "seed": seed,
            "files": hashlib.sha256(json.dumps(files).encode()).hexdigest()}


def _save_final(model, mode: str, ctx: DistContext, init_dir: str, out_dir: str) -> None:
    """save_florenz of the trained weights by rank 0 (under FSDP, or from a GPU, through the full state
    dict loaded into a CPU copy of the model)."""
    if mode != "fsdp" and ctx.device.type == "cpu":
        if ctx.is_main:
            save_florenz(unwrap(model), out_dir)
        return
    state = get_model_state_dict(model, options=FULL)  # collective under FSDP
    if ctx.is_main:
        copy = load_florenz(init_dir)
        copy.load_state_dict(state)
        save_florenz(copy, out_dir)


def train_run(init_dir: str, shard_dir: str, tokenizers_dir: str, train_cfg: dict, steps: int, image_size: int,
              max_prompt_tokens: int, max_target_tokens: int, seed: int, out_dir: str, fsdp: bool = False,
              balance_keys: tuple[str, ...] = TASK_LANGUAGE_KEYS, loss_reduction: str = "token_mean") -> dict:
    """Train and write out_dir/{model.safetensors, config.json, train_log.csv, train_summary.json}
    (plus tensorboard/ events; checkpoints/ exists while the run is unfinished). Images are resized to
    image_size when the shards hold another size. Pretraining balances the paper's 7 task-language
    keys; fine-tuning passes its own (every task in every language). loss_reduction: "token_mean" (the
    mean CE over every target token of the optimizer step) or "sample_mean" (of per-sample means)."""
    check_loss_reduction(loss_reduction)
    ctx = init_distributed()
    try:
        if not ctx.is_main:
            logging.getLogger().setLevel(logging.WARNING)
        return _train_run(ctx, init_dir, shard_dir, tokenizers_dir, train_cfg, steps, image_size,
                          max_prompt_tokens, max_target_tokens, seed, out_dir, fsdp, balance_keys, loss_reduction)
    finally:
        shutdown_distributed(ctx)


def _train_run(ctx: DistContext, init_dir, shard_dir, tokenizers_dir, train_cfg, steps, image_size,
               max_prompt_tokens, max_target_tokens, seed, out_dir, fsdp, balance_keys, loss_reduction) -> dict:
    torch.set_num_threads(train_cfg["threads"])
    batch_size = train_cfg["batch_size"]
    micro, accum = batch_geometry(batch_size, train_cfg.get("micro_batch_size"), ctx.world_size)
    mode = parallel_mode(ctx, fsdp)
    checkpointing = Checkpointing(os.path.join(out_dir, "checkpoints"), train_cfg.get("checkpoint_every", 0),
                                  run_fingerprint(init_dir, shard_dir, train_cfg, steps, seed, loss_reduction))
    resumed = find_resumable(checkpointing)
    log.info("%s: %d steps of %d samples = %d process(es) x %d per micro-batch x %d accumulation, %s on %s, "
             "loss %s%s", out_dir, steps, batch_size, ctx.world_size, micro, accum, mode, ctx.device, loss_reduction,
             f", resuming at step {resumed.step}" if resumed else "")

    if resumed is None and ctx.is_main:  # a fresh start: drop stale checkpoints and events
        remove_checkpoints(checkpointing.directory)
        shutil.rmtree(os.path.join(out_dir, "tensorboard"), ignore_errors=True)
    ctx.barrier()

    torch.manual_seed(seed + ctx.rank)  # dropout differs across ranks; the data stream is shared
    model = load_florenz(init_dir)
    apply_freezing_policy(model)
    if resumed is not None:
        load_model_state(model, resumed)
    collate = model_collator(model, tokenizers_dir, image_size, max_prompt_tokens, max_target_tokens)
    stream = BalancedImageStream(read_training_shards(shard_dir).to_pylist(), seed, balance_keys)
    batches = RankBatches(stream, collate, micro, ctx.world_size, ctx.rank, accum)
    wrapped = wrap_model(model, ctx, mode)
    optim = OptimConfig(lr=train_cfg["lr"], weight_decay=train_cfg["weight_decay"],
                        warmup_steps=train_cfg["warmup_steps"], grad_clip=train_cfg["grad_clip"])
    os.makedirs(out_dir, exist_ok=True)
    compute_loss, count_units = LOSS_REDUCTIONS[loss_reduction]
    losses = train_loop(wrapped, batches, compute_loss, steps, batch_size, optim,
                        os.path.join(out_dir, "train_log.csv"), desc=os.path.basename(out_dir.rstrip("/")),
                        count_units=count_units, grad_accum=accum, ctx=ctx, checkpointing=checkpointing,
                        resumed=resumed, sampler=batches, tensorboard_dir=os.path.join(out_dir, "tensorboard"))
    _save_final(wrapped, mode, ctx, init_dir, out_dir)
    summary = {"steps": steps, "batch_size": batch_size, "seen_samples": steps * batch_size,
               "loss": loss_reduction, "first_loss": losses[0], "final_loss": losses[-1],
               "task_language_counts": dict(sorted(stream.balancer.counts.items())),
               "processes": ctx.world_size, "micro_batch_size": micro, "grad_accum": accum, "parallel": mode,
               "resumed_from_step": resumed.step if resumed else 0}
    if ctx.is_main:
        write_json(summary, os.path.join(out_dir, "train_summary.json"))
        remove_checkpoints(checkpointing.directory)
    ctx.barrier()
    return summary
