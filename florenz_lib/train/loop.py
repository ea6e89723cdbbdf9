"""The optimisation loop shared by base pretraining and the study's runs: AdamW (weight decay on
>= 2-D weights only), linear warmup then cosine decay, gradient clipping, CSV log, progress bar."""
from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from ..io import replacing


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
               steps: int, batch_size: int, cfg: OptimConfig, log_csv: str, desc: str = "train") -> list[float]:
    """Run `steps` optimizer steps; log step, loss, lr, samples/s and seen samples to log_csv."""
    optimizer = make_optimizer(model, cfg)
    scheduler = warmup_cosine(optimizer, cfg.warmup_steps, steps)
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.train()
    losses = []
    with replacing(log_csv) as tmp_log, open(tmp_log, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "loss", "lr", "samples_per_s", "seen_samples"])
        progress = tqdm(range(1, steps + 1), desc=desc, mininterval=5)
        for step in progress:
            started = time.perf_counter()
            batch = next_batch()
            loss = compute_loss(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{desc}: loss is {loss.item()} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            throughput = batch_size / (time.perf_counter() - started)
            writer.writerow([step, f"{losses[-1]:.6f}", f"{lr:.6g}", f"{throughput:.1f}", step * batch_size])
            progress.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    return losses
