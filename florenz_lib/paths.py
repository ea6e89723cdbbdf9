"""Where every stage reads and writes, relative to the study's results_dir. The Snakefile and the
`florenz` command line both take their paths from here, so a stage run by hand lands where the DAG expects."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    root: str

    def _p(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    # data
    def world(self, name: str = "") -> str: return self._p("data", "world", name)
    def clip(self, name: str = "") -> str: return self._p("data", "clip", name)
    def embeddings(self, part: str, kind: str) -> str: return self._p("data", "embeddings", f"{part}_{kind}.npz")
    def alignment(self, part: str) -> str: return self._p("data", "alignment", f"{part}.parquet")
    def alignment_stats(self, part: str) -> str: return self._p("data", "alignment", f"{part}_stats.json")
    def shards(self) -> str: return self._p("data", "shards")
    def test(self, name: str = "") -> str: return self._p("data", "test", name)
    def benchmark(self, name: str = "") -> str: return self._p("data", "benchmarks", name)

    # models
    def tokenizers(self, name: str = "") -> str: return self._p("models", "tokenizers", name)
    def florence_base(self, name: str) -> str: return self._p("models", "bases", f"florence2-{name}")
    def gemma_base(self, name: str) -> str: return self._p("models", "bases", f"gemma2-{name}")
    def init_model(self, size: str, name: str = "") -> str: return self._p("models", size, "init", name)
    def model_stats(self, size: str) -> str: return self._p("models", size, "stats.json")
    def initial_ce(self, size: str) -> str: return self._p("models", size, "initial_ce.json")

    # runs
    def run_name(self, size: str, steps: int | str) -> str: return f"{size}_steps{steps}"
    def run(self, size: str, steps: int | str, name: str = "") -> str: return self._p("runs", size, f"steps{steps}", name)
    def run_ce(self, size: str, steps: int | str) -> str: return self.run(size, steps, "ce.json")
    def run_prefix(self, size: str, steps: int | str) -> str: return self.run(size, steps, "prefix.json")

    # report
    def table(self, name: str) -> str: return self._p("tables", name)
    def figures(self, name: str = "") -> str: return self._p("figures", name)
    def log(self, rule: str, name: str = "") -> str: return self._p("logs", rule, f"{name or rule}.log")
