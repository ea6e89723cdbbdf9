"""Data-parallel training under torchrun: the process group (nccl on GPUs, gloo on CPU), DDP or FSDP
wrapping, and the few collectives the trainer needs. A process started without torchrun (or by
torchrun with one process) runs the same code with no process group at all."""
from __future__ import annotations

import contextlib
import datetime
import os
import signal
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

PARALLEL_MODES = ("none", "ddp", "fsdp")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sum(self, value: torch.Tensor | float) -> float:
        """The sum of a scalar over all ranks, in float64 (every rank gets the same value)."""
        if self.distributed:
            value = torch.as_tensor(value).detach().to(self.device, torch.float64).clone()
            dist.all_reduce(value)
        return float(value)

    def gather_objects(self, obj) -> list:
        """obj of every rank, in rank order (JSON-able objects only: sent, never stored)."""
        if not self.distributed:
            return [obj]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def autocast(self):
        """bf16 autocast on GPUs; on CPU a no-op (fp32), so CPU runs are exact and reproducible."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def _die_with_launcher() -> None:
    """torchrun starts every worker in a session of its own, so a kill -9 of the job's launcher (all a
    crashing or cancelled job may get) would leave its workers training on unsupervised, racing the
    rerun for the run's files. On Linux a worker is killed when its launcher dies."""
    if not sys.platform.startswith("linux") or "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    import ctypes
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the launcher was gone before prctl
        os._exit(1)


def init_distributed(timeout_s: int = 1800) -> DistContext:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); start the process group when there
    are several processes. Each process gets its own GPU where there are GPUs."""
    _die_with_launcher()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s),
                                **({"device_id": device} if device.type == "cuda" else {}))
    return DistContext(rank, world_size, local_rank, device)


def shutdown_distributed(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def parallel_mode(ctx: DistContext, fsdp: bool) -> str:
    if not ctx.distributed:
        return "none"
    return "fsdp" if fsdp else "ddp"


def wrap_model(model: nn.Module, ctx: DistContext, mode: str) -> nn.Module:
    """Move to the device and wrap: DDP replicates the model, FSDP (fully_shard, per decoder and encoder
    layer, then the root with the tied embeddings) shards parameters, gradients and optimizer state."""
    if mode not in PARALLEL_MODES:
        raise ValueError(f"parallel mode must be one of {PARALLEL_MODES}, got {mode!r}")
    model.to(ctx.device)
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel
        return DistributedDataParallel(model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard
        for stack in (getattr(model, "encoder", None), getattr(model, "decoder", None)):
            for layer in getattr(stack, "layers", []):
                fully_shard(layer)
        fully_shard(model)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The module whose parameter names are the model's own (DDP keeps it as .module)."""
    return getattr(model, "module", model)


def gradient_sync(model: nn.Module, enabled: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of a gradient-accumulation step."""
    if enabled:
        return contextlib.nullcontext()
    if hasattr(model, "no_sync"):  # DDP
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        @contextlib.contextmanager
        def fsdp_no_sync():
            model.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                model.set_requires_gradient_sync(True)
        return fsdp_no_sync()
    return contextlib.nullcontext()
