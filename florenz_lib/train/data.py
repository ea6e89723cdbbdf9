"""Training examples from the Arrow shards: every step draws images in a seeded order, and each image
contributes one of its annotations, chosen by the online task-language balancer.

Data parallelism: every rank runs the same seeded global stream (image order and balancer choices are
cheap; images are decoded only by the rank that uses them) and keeps its own slice of each global
batch. So the ranks see disjoint samples, the balancer's shares are global, and a run's sample
sequence does not depend on how many processes or accumulation steps it is split into."""
from __future__ import annotations

from collections import Counter

import torch

from ..models.inputs import Example, png_to_tensor
from .balancing import TASK_LANGUAGE_KEYS, OnlineBalancer


class BalancedImageStream:
    def __init__(self, rows: list[dict], seed: int, balance_keys: tuple[str, ...] = TASK_LANGUAGE_KEYS):
        self.pngs = [r["png"] for r in rows]
        self.annotations = [r["annotations"] for r in rows]
        self.generator = torch.Generator().manual_seed(seed)
        self.balancer = OnlineBalancer(seed, balance_keys)
        self.order: list[int] = []

    def next_choices(self, n: int) -> list[tuple[int, dict]]:
        """The next n (image index, chosen annotation) pairs of the stream, nothing decoded."""
        choices = []
        for _ in range(n):
            if not self.order:  # a new epoch over the images, in a fresh seeded order
                self.order = torch.randperm(len(self.pngs), generator=self.generator).tolist()
            index = self.order.pop()
            choices.append((index, self.balancer.choose(self.annotations[index])))
        return choices

    def example(self, index: int, annotation: dict) -> Example:
        a = annotation
        return Example(png_to_tensor(self.pngs[index]), a["task"], a["lang"], a["source"], a["target"])

    def next_examples(self, n: int) -> list[Example]:
        return [self.example(i, a) for i, a in self.next_choices(n)]

    # the sampler position, for checkpoints (JSON-able)
    def state_dict(self) -> dict:
        version, internal, gauss = self.balancer.rng.getstate()
        return {"order": list(self.order), "generator": self.generator.get_state().tolist(),
                "balancer_counts": dict(self.balancer.counts),
                "balancer_rng": [version, list(internal), gauss]}

    def load_state_dict(self, state: dict) -> None:
        self.order = list(state["order"])
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
        self.balancer.counts = Counter(state["balancer_counts"])
        version, internal, gauss = state["balancer_rng"]
        self.balancer.rng.setstate((version, tuple(internal), gauss))


class RankBatches:
    """next() gives this rank's next micro-batch. A global batch of
    per_device_batch_size x world_size x grad_accum examples is drawn per optimizer step; micro-step k
    of rank r takes its consecutive slice [(k * world_size + r) * b, ... + b)."""

    def __init__(self, stream: BalancedImageStream, collate, per_device_batch_size: int, world_size: int = 1,
                 rank: int = 0, grad_accum: int = 1):
        self.stream, self.collate = stream, collate
        self.b, self.world_size, self.rank, self.grad_accum = per_device_batch_size, world_size, rank, grad_accum
        self.pending: list[list[tuple[int, dict]]] = []

    @property
    def global_batch_size(self) -> int:
        return self.b * self.world_size * self.grad_accum

    def __call__(self) -> dict:
        if not self.pending:
            choices = self.stream.next_choices(self.global_batch_size)
            chunk = self.b * self.world_size
            self.pending = [choices[k * chunk + self.rank * self.b: k * chunk + (self.rank + 1) * self.b]
                            for k in range(self.grad_accum)]
        return self.collate([self.stream.example(i, a) for i, a in self.pending.pop(0)])

    def state_dict(self) -> dict:
        if self.pending:
            raise RuntimeError("the sampler position is only defined between optimizer steps")
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.pending = []
        self.stream.load_state_dict(state)
