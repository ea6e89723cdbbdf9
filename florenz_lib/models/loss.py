"""Per-sample mean token cross entropy, the study's metric and training loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def per_sample_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean CE over each sample's target tokens (labels == -100 are ignored); shape [batch]."""
    token_ce = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")
    counts = (labels != IGNORE_INDEX).sum(dim=1)
    if (counts == 0).any():
        raise ValueError("a sample has no target tokens")
    return token_ce.sum(dim=1) / counts
