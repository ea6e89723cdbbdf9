"""Token cross entropy: per sample the mean over its target tokens (the study's metric), and the token sums
the training loss reduces over a whole optimizer step."""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def token_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CE of every target token, 0 where labels == -100; shape [batch, length]."""
    return F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")


def target_token_counts(labels: torch.Tensor) -> torch.Tensor:
    """Target tokens of each sample; shape [batch]."""
    return (labels != IGNORE_INDEX).sum(dim=1)


def per_sample_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean CE over each sample's target tokens (labels == -100 are ignored); shape [batch]."""
    counts = target_token_counts(labels)
    if (counts == 0).any():
        raise ValueError("a sample has no target tokens")
    return token_ce(logits, labels).sum(dim=1) / counts
