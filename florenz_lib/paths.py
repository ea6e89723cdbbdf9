"""Where every stage reads and writes, relative to the study's results_dir. The Snakefile and the
`florenz` command line both take their paths from here, so a stage run by hand lands where the DAG expects."""
from __future__ import annotations

import os
from dataclasses import dataclass


# The benchmark files' public layout, the same in both worlds: data/benchmarks/xm3600/{captions.jsonl, images/}.
XM3600_DIR = "xm3600"
XM3600_CAPTIONS = "captions.jsonl"
IMAGES_DIR = "images"


def _n(number, width: int) -> str:
    """A slice or chunk number zero-padded to `width`; a string (a wildcard pattern) as it is."""
    return number if isinstance(number, str) else f"{number:0{width}d}"


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
    def finetune_shards(self) -> str: return self._p("data", "finetune", "shards")

    # the cc12m world (slices of the image list, chunks of each language's corpus); a slice or chunk
    # number may be a Snakemake wildcard pattern ("{slice}") instead of an int
    def cc12m(self, *parts: str) -> str: return self._p("data", "cc12m", *parts)
    def cc12m_images(self, i, suffix: str = ".parquet") -> str: return self.cc12m("images", f"slice-{_n(i, 5)}{suffix}")
    def cc12m_en_captions(self, i, suffix: str = ".parquet") -> str:
        return self.cc12m("captions_en", f"slice-{_n(i, 5)}{suffix}")
    def cc12m_captions(self, i, suffix: str = ".parquet") -> str: return self.cc12m("captions", f"slice-{_n(i, 5)}{suffix}")
    def cc12m_corpus(self, lang: str, chunk) -> str: return self.cc12m("corpus", f"{lang}-{_n(chunk, 3)}.parquet")
    def cc12m_corpus_stats(self, lang: str) -> str: return self.cc12m("corpus", f"{lang}_stats.json")
    def cc12m_image_embeddings(self, i) -> str: return self.cc12m("embeddings", "images", f"slice-{_n(i, 5)}.npz")
    def cc12m_sentence_embeddings(self, lang: str, chunk) -> str:
        return self.cc12m("embeddings", "sentences", f"{lang}-{_n(chunk, 3)}.npz")
    def cc12m_alignment(self, part: str) -> str: return self.cc12m("alignment", part)
    def cc12m_alignment_stats(self, part: str) -> str: return self.cc12m("alignment", f"{part}_stats.json")
    def cc12m_slice_shards(self, i) -> str: return self.cc12m("shards_parts", f"slice-{_n(i, 5)}")
    def cc12m_stats(self) -> str: return self.cc12m("stats.json")

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
    def finetuned(self, size: str, name: str = "") -> str: return self._p("runs", size, "finetuned", name)
    def downstream(self, size: str, stage: str) -> str: return self._p("runs", size, f"downstream_{stage}.json")

    # report
    def table(self, name: str) -> str: return self._p("tables", name)
    def figures(self, name: str = "") -> str: return self._p("figures", name)
    def log(self, rule: str, name: str = "") -> str: return self._p("logs", rule, f"{name or rule}.log")
    def stage_time(self, rule: str, name: str = "") -> str: return self._p("stage_times", rule, f"{name or rule}.tsv")
    def stage_times(self) -> str: return self._p("stage_times")
