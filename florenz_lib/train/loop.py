"""The optimisation loop shared by base pretraining and the study's runs: AdamW (weight decay on
>= 2-D weights only), linear warmup then cosine decay, gradient accumulation, gradient clipping,
data parallelism (DDP/FSDP under torchrun), bf16 autocast on GPUs, resumable checkpoints, and logs of
loss, lr, throughput and seen samples to CSV and TensorBoard, with a progress bar."""
from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from ..io import replacing
from .checkpoint import Checkpointing, Resumed, load_training_state, save_checkpoint
from .distributed import DistContext, gradient_sync

log = logging.getLogger(__name__)
LOG_COLUMNS = ["step", "loss", "lr", "samples_per_s", "seen_samples"]


@dataclass
class OptimConfig:
    lr: float
    weight_decay: float = 0.01
    warmup_steps: int = 0
    grad_clip: float = 1.0


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    groups = [{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """Linear warmup to the peak lr, then cosine decay to 0 at total_steps."""
    warmup_steps = min(warmup_steps, total_steps - 1) if total_steps > 1 else 0

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_loop(model: nn.Module, next_batch: Callable[[], dict], compute_loss: Callable[[nn.Module, dict], torch.Tensor],
               steps: int, batch_size: int, cfg: OptimConfig, log_csv: str, desc: str = "train", *,
               count_units: Callable[[dict], int] | None = None, grad_accum: int = 1, ctx: DistContext | None = None,
               checkpointing: Checkpointing | None = None, resumed: Resumed | None = None, sampler=None,
               tensorboard_dir: str | None = None) -> list[float]:
    """Run `steps` optimizer steps of `batch_size` samples (all ranks and micro-batches together) and
    return the loss of every step (the same on every rank).

    `next_batch()` gives this rank's next micro-batch; it is called `grad_accum` times per step. A step's
    loss is the mean of a loss per unit over the whole global batch: `compute_loss(model, batch)` returns
    the micro-batch's loss summed over its units and `count_units(batch)` their number (target tokens for
    a token mean, samples for a sample mean). Without count_units, compute_loss returns the micro-batch's
    mean loss and every micro-batch weighs the same. Under DDP/FSDP `model` is the wrapped module.

    With `checkpointing`, every `checkpointing.every` steps the full training state (including
    `sampler.state_dict()`) is saved; `resumed` (from checkpoint.find_resumable, whose model weights
    are already loaded) continues such a run. Rank 0 writes log_csv (atomically, at the end; columns
    LOG_COLUMNS) and TensorBoard events to `tensorboard_dir`."""
    ctx = ctx or DistContext()
    optimizer = make_optimizer(model, cfg)
    scheduler = warmup_cosine(optimizer, cfg.warmup_steps, steps)
    trainable = [p for p in model.parameters() if p.requires_grad]
    rows: list[list] = []
    losses: list[float] = []
    start = 0
    if resumed is not None:
        load_training_state(model, optimizer, scheduler, ctx, resumed)
        if sampler is not None:
            sampler.load_state_dict(resumed.state["sampler"])
        start, rows, losses = resumed.step, resumed.log_rows, resumed.losses
        log.info("%s: resumed at step %d of %d from %s", desc, start, steps, resumed.path)
    writer = None
    if tensorboard_dir and ctx.is_main:
        from torch.utils.tensorboard import SummaryWriter
        # purge_step drops the events a crashed attempt logged after its last checkpoint
        writer = SummaryWriter(tensorboard_dir, purge_step=start + 1 if start else None)
    model.train()
    progress = tqdm(range(start + 1, steps + 1), desc=desc, mininterval=5, initial=start, total=steps,
                    disable=not ctx.is_main)
    for step in progress:
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        # the units of the whole step are counted before any forward, so each micro-batch's backward can be
        # scaled to its share of the global mean; DDP and FSDP average gradients over ranks, hence
        # world_size: the gradient is that of the global mean however the batch is split
        batches = [next_batch() for _ in range(grad_accum)]
        total_units = ctx.sum(sum(count_units(b) for b in batches) if count_units else grad_accum)
        scale = ctx.world_size / total_units
        loss_sum = torch.zeros((), device=ctx.device, dtype=torch.float64)
        for micro, batch in enumerate(batches):
            if ctx.device.type != "cpu":
                batch = {k: v.to(ctx.device, non_blocking=True) for k, v in batch.items()}
            with gradient_sync(model, micro == grad_accum - 1):
                with ctx.autocast():
                    loss = compute_loss(model, batch)
                (loss * scale).backward()
            loss_sum += loss.detach()
        step_loss = ctx.sum(loss_sum) / total_units
        if not math.isfinite(step_loss):
            raise FloatingPointError(f"{desc}: loss is {step_loss} at step {step}")
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        losses.append(step_loss)
        throughput = batch_size / (time.perf_counter() - started)
        rows.append([step, f"{step_loss:.6f}", f"{lr:.6g}", f"{throughput:.1f}", step * batch_size])
        if writer is not None:
            writer.add_scalar("train/loss", step_loss, step)
            writer.add_scalar("train/lr", lr, step)
            writer.add_scalar("train/samples_per_s", throughput, step)
            writer.add_scalar("train/seen_samples", step * batch_size, step)
            writer.add_scalar("train/grad_norm", float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor")
                                                       else grad_norm), step)
        progress.set_postfix(loss=f"{step_loss:.3f}", refresh=False)
        if checkpointing is not None and checkpointing.due(step, steps):
            save_checkpoint(checkpointing, step, model, optimizer, scheduler, ctx,
                            sampler.state_dict() if sampler is not None else {}, rows, losses)
    progress.close()
    if writer is not None:
        writer.close()
    if ctx.is_main:
        with replacing(log_csv) as tmp_log, open(tmp_log, "w", newline="") as f:
            csv_writer = csv.writer(f)
            csv_writer.writerow(LOG_COLUMNS)
            csv_writer.writerows(rows)
    return losses
