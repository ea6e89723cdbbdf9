"""Resumable training checkpoints, without pickle.

A checkpoint is a directory `step-NNNNNNNN/` beside the run's outputs:
  model.safetensors      trainable parameters and persistent buffers (frozen weights come from the
                         init model the run starts from), full (unsharded) tensors
  optimizer.safetensors  the optimizer's per-parameter tensors, `state.<param name>.<key>`
  rng.safetensors        every rank's torch CPU (and CUDA) generator state, `<kind>.rank<r>`
  state.json             step, the run's fingerprint, the optimizer's scalars (step counts) and
                         param groups, the lr scheduler, the data sampler, the world size and the
                         losses so far
  train_log.csv          the log rows up to this step
Rank 0 writes it under a temporary name and renames it into place, so a `step-*` directory is always
complete; older ones are then removed. Parameter names are the model's own (DDP and FSDP unwrapped),
so a checkpoint resumes under any parallel mode and world size."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass

import torch
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_optimizer_state_dict)

from .distributed import DistContext, unwrap

log = logging.getLogger(__name__)

STEP_DIR = re.compile(r"^step-(\d{8})$")
FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


@dataclass
class Checkpointing:
    """Where and how often a run checkpoints; `fingerprint` holds the settings a checkpoint must match
    to be resumed (a checkpoint of other settings is discarded, not resumed)."""
    directory: str
    every: int
    fingerprint: dict

    def due(self, step: int, total_steps: int) -> bool:
        return self.every > 0 and step % self.every == 0 and step < total_steps


def _step_dirs(directory: str) -> list[tuple[int, str]]:
    if not os.path.isdir(directory):
        return []
    found = [(int(m.group(1)), os.path.join(directory, name))
             for name in os.listdir(directory) if (m := STEP_DIR.match(name))]
    return sorted(found)


def latest_checkpoint(directory: str) -> str | None:
    found = _step_dirs(directory)
    return found[-1][1] if found else None


def remove_checkpoints(directory: str) -> None:
    if os.path.isdir(directory):
        shutil.rmtree(directory)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _kept_model_names(model: torch.nn.Module) -> set[str]:
    """Trainable parameters (tied ones once, under their first name) and persistent buffers."""
    module = unwrap(model)
    names = {name for name, p in module.named_parameters() if p.requires_grad}
    non_persistent = {f"{prefix}.{b}" if prefix else b for prefix, m in module.named_modules()
                      for b in getattr(m, "_non_persistent_buffers_set", ())}
    names |= {name for name, _ in module.named_buffers() if name not in non_persistent}
    return names


def _plain(value):
    """JSON form of optimizer param-group values (tuples become lists)."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, torch.Tensor):
        return value.item()
    return value


def _flatten_optimizer(osd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for name, state in osd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.ndim > 0:
                tensors[f"state.{name}.{key}"] = value.detach().cpu().contiguous()
            elif isinstance(value, torch.Tensor):  # AdamW's step count: a 0-d tensor
                scalars.setdefault(name, {})[key] = {"value": value.item(), "dtype": str(value.dtype).split(".")[1]}
            else:
                scalars.setdefault(name, {})[key] = {"value": value, "dtype": None}
    groups = [{k: _plain(v) for k, v in g.items()} for g in osd["param_groups"]]
    return tensors, {"scalars": scalars, "param_groups": groups}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict, template_groups: list[dict]) -> dict:
    state: dict[str, dict] = {}
    for flat, value in tensors.items():
        name, key = flat[len("state."):].rsplit(".", 1)
        state.setdefault(name, {})[key] = value
    for name, entries in meta["scalars"].items():
        for key, entry in entries.items():
            value = entry["value"]
            state.setdefault(name, {})[key] = (torch.tensor(value, dtype=getattr(torch, entry["dtype"]))
                                               if entry["dtype"] else value)
    groups = []
    for saved, current in zip(meta["param_groups"], template_groups, strict=True):
        groups.append({k: tuple(v) if isinstance(current.get(k), tuple) else v for k, v in saved.items()})
    return {"state": state, "param_groups": groups}


def save_checkpoint(ckpt: Checkpointing, step: int, model, optimizer, scheduler, ctx: DistContext,
                    sampler_state: dict, log_rows: list[list], losses: list[float]) -> str | None:
    """Every rank calls this (the full state is gathered collectively); rank 0 writes. Returns the path."""
    model_sd = get_model_state_dict(model, options=FULL)
    optim_sd = get_optimizer_state_dict(model, optimizer, options=FULL)
    rng = {"torch_cpu": torch.get_rng_state()}
    if ctx.device.type == "cuda":
        rng["torch_cuda"] = torch.cuda.get_rng_state(ctx.device)
    all_rng = ctx.gather_objects({k: v.tolist() for k, v in rng.items()})
    final = None
    if ctx.is_main:
        os.makedirs(ckpt.directory, exist_ok=True)
        final = os.path.join(ckpt.directory, f"step-{step:08d}")
        tmp = os.path.join(ckpt.directory, f".step-{step:08d}.tmp-{uuid.uuid4().hex}")
        os.makedirs(tmp)
        try:
            kept = _kept_model_names(model)
            save_file({k: v.detach().cpu().contiguous() for k, v in model_sd.items() if k in kept},
                      os.path.join(tmp, "model.safetensors"))
            optim_tensors, optim_meta = _flatten_optimizer(optim_sd)
            save_file(optim_tensors, os.path.join(tmp, "optimizer.safetensors"))
            save_file({f"{kind}.rank{r}": torch.tensor(values, dtype=torch.uint8)
                       for r, states in enumerate(all_rng) for kind, values in states.items()},
                      os.path.join(tmp, "rng.safetensors"))
            state = {"step": step, "fingerprint": ckpt.fingerprint, "world_size": ctx.world_size,
                     "optimizer": optim_meta, "scheduler": scheduler.state_dict(), "sampler": sampler_state,
                     "losses": losses}
            with open(os.path.join(tmp, "state.json"), "w") as f:
                json.dump(state, f)
            with open(os.path.join(tmp, "train_log.csv"), "w") as f:
                f.writelines(",".join(map(str, row)) + "\n" for row in log_rows)
            for name in os.listdir(tmp):
                _fsync(os.path.join(tmp, name))
            if os.path.exists(final):
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync(ckpt.directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for old_step, old in _step_dirs(ckpt.directory):
            if old_step < step:
                shutil.rmtree(old, ignore_errors=True)
        log.info("checkpoint at step %d: %s", step, final)
    ctx.barrier()
    return final


@dataclass
class Resumed:
    path: str
    step: int
    state: dict
    log_rows: list[list[str]]
    losses: list[float]


def find_resumable(ckpt: Checkpointing) -> Resumed | None:
    """The latest complete checkpoint whose fingerprint matches this run; stale ones are ignored."""
    path = latest_checkpoint(ckpt.directory)
    if path is None:
        return None
    with open(os.path.join(path, "state.json")) as f:
        state = json.load(f)
    if state["fingerprint"] != ckpt.fingerprint:
        changed = sorted(k for k in set(state["fingerprint"]) | set(ckpt.fingerprint)
                         if state["fingerprint"].get(k) != ckpt.fingerprint.get(k))
        log.warning("checkpoint %s was made with other settings (%s): starting from scratch", path, changed)
        return None
    with open(os.path.join(path, "train_log.csv")) as f:
        rows = [line.rstrip("\n").split(",") for line in f if line.strip()]
    return Resumed(path, state["step"], state, rows, state["losses"])


def load_model_state(model: torch.nn.Module, resumed: Resumed) -> None:
    """Into the plain (unwrapped) model, before DDP/FSDP wrapping."""
    tensors = load_file(os.path.join(resumed.path, "model.safetensors"))
    missing_trainable = _kept_model_names(model) - set(tensors)
    if missing_trainable:
        raise KeyError(f"checkpoint {resumed.path} lacks {sorted(missing_trainable)[:5]}")
    result = model.load_state_dict(tensors, strict=False)
    if result.unexpected_keys:
        raise KeyError(f"checkpoint {resumed.path} has unknown weights {result.unexpected_keys[:5]}")


def load_training_state(model, optimizer, scheduler, ctx: DistContext, resumed: Resumed) -> None:
    """Optimizer (sharded as the model is), scheduler and, if the world size is unchanged, RNG states."""
    tensors = load_file(os.path.join(resumed.path, "optimizer.safetensors"))
    osd = _unflatten_optimizer(tensors, resumed.state["optimizer"], optimizer.param_groups)
    set_optimizer_state_dict(model, optimizer, osd, options=StateDictOptions(full_state_dict=True))
    scheduler.load_state_dict(resumed.state["scheduler"])
    if resumed.state["world_size"] == ctx.world_size:
        rng = load_file(os.path.join(resumed.path, "rng.safetensors"))
        torch.set_rng_state(rng[f"torch_cpu.rank{ctx.rank}"])
        if ctx.device.type == "cuda" and f"torch_cuda.rank{ctx.rank}" in rng:
            torch.cuda.set_rng_state(rng[f"torch_cuda.rank{ctx.rank}"], ctx.device)
    else:
        log.warning("resuming %d processes from a checkpoint of %d: dropout RNG streams start afresh",
                    ctx.world_size, resumed.state["world_size"])
