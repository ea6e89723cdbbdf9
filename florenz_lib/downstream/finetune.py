"""Downstream fine-tuning (Table 2): a study run trained further on a mix with every task in every
language, with the project's trainer (same schedule, checkpoints and parallelism as pretraining)."""
from __future__ import annotations

from ..train.runs import train_run
from ..world.finetune import FINETUNE_KEYS


def finetune_run(pretrained_dir: str, shard_dir: str, tokenizers_dir: str, finetune_cfg: dict,
                 max_prompt_tokens: int, max_target_tokens: int, seed: int, out_dir: str,
                 fsdp: bool = False, loss_reduction: str = "token_mean") -> dict:
    """Fine-tune the model in pretrained_dir for finetune_cfg["steps"] steps at finetune_cfg["image_size"],
    balancing the 11 task-language keys of the mix; writes out_dir as a training run does. loss_reduction
    as in train_run ("token_mean" or "sample_mean")."""
    return train_run(pretrained_dir, shard_dir, tokenizers_dir, finetune_cfg, finetune_cfg["steps"],
                     finetune_cfg["image_size"], max_prompt_tokens, max_target_tokens, seed, out_dir,
                     fsdp=fsdp, balance_keys=FINETUNE_KEYS, loss_reduction=loss_reduction)
