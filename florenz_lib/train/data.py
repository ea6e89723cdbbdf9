"""Training examples from the Arrow shards: every step draws images in a seeded order, and each image
contributes one of its annotations, chosen by the online task-language balancer."""
from __future__ import annotations

import torch

from ..models.inputs import Example, png_to_tensor
from .balancing import OnlineBalancer


class BalancedImageStream:
    def __init__(self, rows: list[dict], seed: int):
        self.images = [png_to_tensor(r["png"]) for r in rows]
        self.annotations = [r["annotations"] for r in rows]
        self.generator = torch.Generator().manual_seed(seed)
        self.balancer = OnlineBalancer(seed)
        self.order: list[int] = []

    def next_examples(self, n: int) -> list[Example]:
        examples = []
        for _ in range(n):
            if not self.order:  # a new epoch over the images, in a fresh seeded order
                self.order = torch.randperm(len(self.images), generator=self.generator).tolist()
            index = self.order.pop()
            a = self.balancer.choose(self.annotations[index])
            examples.append(Example(self.images[index], a["task"], a["lang"], a["source"], a["target"]))
        return examples
