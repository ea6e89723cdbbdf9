"""Online task-language balancing (the authors' sampler): each sample picks, among its image's candidate
annotations, one whose task-language key is still below its target share."""
from __future__ import annotations

import random
from collections import Counter

TASK_LANGUAGE_KEYS = ("caption-en", "caption-de", "translation-de", "translation-es",
                      "translation-fr", "translation-zh", "translation-ru")


def task_language_key(annotation: dict) -> str:
    return f"{annotation['task']}-{annotation['lang']}"


class OnlineBalancer:
    def __init__(self, seed: int, keys: tuple[str, ...] = TASK_LANGUAGE_KEYS):
        self.target_share = {k: 1.0 / len(keys) for k in keys}
        self.counts: Counter[str] = Counter()
        self.rng = random.Random(seed)

    def choose(self, annotations: list[dict]) -> dict:
        candidates = [a for a in annotations if task_language_key(a) in self.target_share]
        if not candidates:
            raise ValueError(f"no annotation with a balanced task-language key among {annotations}")
        total = sum(self.counts.values())
        below = [a for a in candidates
                 if self.counts[task_language_key(a)] < self.target_share[task_language_key(a)] * (total + 1)]
        if below:
            chosen = self.rng.choice(below)
        else:  # every key over its share: take the least served one
            chosen = min(candidates, key=lambda a: (self.counts[task_language_key(a)], task_language_key(a)))
        self.counts[task_language_key(chosen)] += 1
        return chosen
