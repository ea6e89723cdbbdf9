"""Downstream evaluation of one model (Table 2): every configured benchmark, scored as the paper does.

Which benchmarks: in the synthetic world its analogues of the paper's benchmarks, written by the
`benchmarks` rule in the public layouts and named "world:<benchmark>"; in every world the public
benchmarks whose local copies are configured under `downstream.benchmarks`. A public benchmark
that is not configured is skipped, and the skip is recorded (one line in the report); a configured
one whose files are missing or malformed stops with the loader's error naming the file and line.

Per benchmark and language:
- translation (Multi30K Task 1): beam-search translations, sacrebleu BLEU with its signature;
- captioning (COCO Karpathy, Multi30K Task 2): beam-search captions, CIDEr-D after the PTB tokenizer;
- XM3600: CIDEr-D on the XM3600 recipe (segmenter recorded), without and with the language prefix
  (metrics "cider" and "cider_prefix"); the prefixes are the world's (`prefixes`: in the cc12m world the
  authors' XM3600 prefixes, florenz_lib.study.XM3600_PREFIXES), and the prefix-mode candidate is the
  continuation alone unless `cider_includes_prefix`;
- CoMMuTE: accuracy by perplexity of the correct against the incorrect translation, and BLEU of the
  beam-search translation against the correct one.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from ..evaluate.generation import generate_texts, join_prefix, lang_prefix, prefix_start
from ..io import write_json
from ..models.florenz import DECODER_START, load_florenz
from ..models.inputs import Example, image_file_to_tensor
from ..models.tokenizers import load_tokenizer
from ..train.runs import batch_ce, model_collator
from ..world import benchmarks as world_benchmarks
from . import benchmarks as public
from .metrics import coco_cider, commute_accuracy, corpus_bleu, xm3600_cider

log = logging.getLogger(__name__)

PUBLIC_BENCHMARKS = ("multi30k", "multi30k_task2", "coco_karpathy", "xm3600", "commute")
WORLD_PREFIX = "world:"
SAMPLES_KEPT = 5  # generated texts kept per benchmark and language in the json, for a look


@dataclass(frozen=True)
class BenchmarkTask:
    """One benchmark in one language: how to load it and how to score it."""
    benchmark: str                  # the Table 2 column: "multi30k", "world:xm3600", ...
    kind: str                       # "translation", "caption", "xm3600" or "commute"
    lang: str
    load: Callable[[], object]      # -> public.TranslationBenchmark | CaptionBenchmark | CommuteBenchmark
    stanza_dir: str | None = None   # XM3600 segmentation resources


def _tasks_of(name: str, cfg: dict, label: str) -> list[BenchmarkTask]:
    """The tasks of public benchmark `name` configured by `cfg` (local paths), labelled `label`."""
    if name == "multi30k":
        split = cfg.get("split", public.MULTI30K_TASK1_SPLITS[0])
        return [BenchmarkTask(label, "translation", lang,
                              lambda lang=lang: public.load_multi30k_task1(cfg["root"], split, lang, cfg["images"]))
                for lang in cfg["langs"]]
    if name == "multi30k_task2":
        split = cfg.get("split", public.MULTI30K_TASK2_SPLIT)
        return [BenchmarkTask(label, "caption", lang,
                              lambda lang=lang: public.load_multi30k_task2(cfg["root"], split, lang, cfg["images"]))
                for lang in cfg["langs"]]
    if name == "coco_karpathy":
        return [BenchmarkTask(label, "caption", "en",
                              lambda: public.load_coco_karpathy(cfg["annotations"], cfg["images"]))]
    if name == "xm3600":
        return [BenchmarkTask(label, "xm3600", lang,
                              lambda lang=lang: public.load_xm3600(cfg["captions"], cfg["images"], lang),
                              stanza_dir=cfg.get("stanza_dir"))
                for lang in cfg["langs"]]
    if name == "commute":
        return [BenchmarkTask(label, "commute", lang,
                              lambda lang=lang: public.load_commute(cfg["root"], lang, cfg.get("images")))
                for lang in cfg["langs"]]
    raise ValueError(f"unknown benchmark {name!r}; expected one of {PUBLIC_BENCHMARKS}")


def world_benchmark_configs(bench_dir: str) -> dict[str, dict]:
    """The synthetic world's analogues, as configs of the public loaders."""
    join = lambda *parts: os.path.join(bench_dir, *parts)  # noqa: E731
    images = world_benchmarks.IMAGES_DIR
    return {
        "multi30k": {"root": join(world_benchmarks.MULTI30K_DIR), "images": join(world_benchmarks.MULTI30K_DIR, images),
                     "split": world_benchmarks.MULTI30K_SPLIT, "langs": list(world_benchmarks.MULTI30K_LANGS)},
        "coco_karpathy": {"annotations": join(world_benchmarks.COCO_DIR, "dataset_coco.json"),
                          "images": join(world_benchmarks.COCO_DIR)},
        "xm3600": {"captions": join(world_benchmarks.XM3600_DIR, world_benchmarks.XM3600_CAPTIONS),
                   "images": join(world_benchmarks.XM3600_DIR, images), "langs": list(world_benchmarks.LANGS)},
        "commute": {"root": join(world_benchmarks.COMMUTE_DIR), "langs": list(world_benchmarks.COMMUTE_LANGS)},
    }


def benchmark_tasks(public_cfg: dict, world_bench_dir: str | None) -> tuple[list[BenchmarkTask], list[dict]]:
    """(tasks to score, skipped benchmarks with the reason): the world's analogues when world_bench_dir is
    given, then every configured public benchmark."""
    tasks = []
    if world_bench_dir is not None:
        for name, cfg in world_benchmark_configs(world_bench_dir).items():
            tasks += _tasks_of(name, cfg, WORLD_PREFIX + name)
    skipped = []
    for name in PUBLIC_BENCHMARKS:
        cfg = public_cfg.get(name)
        if cfg is None:
            skipped.append({"benchmark": name,
                            "reason": f"not configured (config key 'downstream.benchmarks.{name}'): skipped"})
        else:
            tasks += _tasks_of(name, cfg, name)
    return tasks, skipped


@dataclass
class _Scorer:
    model: torch.nn.Module
    collate: object
    decoder_tokenizer: object
    settings: dict

    def generate(self, examples: list[Example], start: list[int]) -> list[str]:
        s = self.settings
        return generate_texts(self.model, self.collate, self.decoder_tokenizer, examples, start, s["num_beams"],
                              s["max_new_tokens"], s["batch_size"])

    @torch.no_grad()
    def nll(self, examples: list[Example]) -> list[float]:
        """Per-example mean token NLL of the target given image and prompt."""
        size = self.settings["batch_size"]
        return [float(x) for first in range(0, len(examples), size)
                for x in batch_ce(self.model, self.collate(examples[first:first + size]))]


def _record(task: BenchmarkTask, metric: str, value: float, n: int, outputs: list[str], **details) -> dict:
    return {"benchmark": task.benchmark, "lang": task.lang, "metric": metric, "value": float(value), "n": n,
            "samples": outputs[:SAMPLES_KEPT], **details}


def score_task(scorer: _Scorer, task: BenchmarkTask, max_items: int | None, cider_includes_prefix: bool,
               prefixes: Mapping[str, str]) -> list[dict]:
    """The metrics of one benchmark task (its first max_items items); XM3600's prefix mode seeds the
    decoder with prefixes[task.lang]."""
    items = task.load().items[:max_items]
    images = [image_file_to_tensor(item.image_path) for item in items]
    plain = [DECODER_START]
    if task.kind == "translation":
        outputs = scorer.generate([Example(im, "translation", task.lang, it.source, "") for im, it in zip(images, items)],
                                  plain)
        bleu, signature = corpus_bleu(outputs, [it.references for it in items], task.lang)
        return [_record(task, "bleu", bleu, len(items), outputs, signature=signature)]
    if task.kind == "commute":
        prompts = [(im, it.source) for im, it in zip(images, items)]
        correct = scorer.nll([Example(im, "translation", task.lang, src, it.correct) for (im, src), it in zip(prompts, items)])
        wrong = scorer.nll([Example(im, "translation", task.lang, src, it.incorrect) for (im, src), it in zip(prompts, items)])
        outputs = scorer.generate([Example(im, "translation", task.lang, src, "") for im, src in prompts], plain)
        bleu, signature = corpus_bleu(outputs, [[it.correct] for it in items], task.lang)
        return [_record(task, "accuracy", commute_accuracy(correct, wrong), len(items), outputs),
                _record(task, "bleu", bleu, len(items), outputs, signature=signature)]
    captions = [Example(im, "caption", task.lang, "", "") for im in images]
    references = [it.references for it in items]
    outputs = scorer.generate(captions, plain)
    if task.kind == "caption":
        return [_record(task, "cider", coco_cider(outputs, references), len(items), outputs, tokenizer="PTB")]
    cider, segmenter = xm3600_cider(outputs, references, task.lang, task.stanza_dir)
    prefix = lang_prefix(prefixes, task.lang)
    continued = scorer.generate(captions, prefix_start(scorer.decoder_tokenizer, prefix))
    scored = [join_prefix(prefix, t, task.lang) for t in continued] if cider_includes_prefix else continued
    cider_prefix, _ = xm3600_cider(scored, references, task.lang, task.stanza_dir)
    return [_record(task, "cider", cider, len(items), outputs, segmenter=segmenter),
            _record(task, "cider_prefix", cider_prefix, len(items), scored, segmenter=segmenter, prefix=prefix,
                    candidate="prefix + continuation" if cider_includes_prefix else "continuation")]


def evaluate_downstream(model_dir: str, tokenizers_dir: str, image_size: int, max_prompt_tokens: int,
                        max_target_tokens: int, settings: dict, cider_includes_prefix: bool, world_bench_dir: str | None,
                        out_json: str, run: str, stage: str, threads: int = 1, *,
                        prefixes: Mapping[str, str]) -> dict:
    """Score the model in model_dir on every benchmark task; write out_json (results, skipped, settings).
    `prefixes` (language -> decoder prefix) seed XM3600's prefix mode: the world's,
    florenz_lib.evaluate.generation.world_prefixes(world name)."""
    torch.set_num_threads(threads)
    tasks, skipped = benchmark_tasks(settings.get("benchmarks") or {}, world_bench_dir)
    for lang in sorted({t.lang for t in tasks if t.kind == "xm3600"}):
        lang_prefix(prefixes, lang)  # a language without a prefix stops here, before any model runs
    for line in skipped:
        log.info("%s", f"{line['benchmark']}: {line['reason']}")
    model = load_florenz(model_dir).eval()
    scorer = _Scorer(model, model_collator(model, tokenizers_dir, image_size, max_prompt_tokens, max_target_tokens),
                     load_tokenizer(os.path.join(tokenizers_dir, "decoder.json")), settings)
    results, started = [], time.perf_counter()
    for task in tasks:
        records = score_task(scorer, task, settings.get("max_items"), cider_includes_prefix, prefixes)
        for r in records:
            log.info("%s %s %s %s %s = %.3f (n=%d)", run, stage, r["benchmark"], r["lang"], r["metric"], r["value"], r["n"])
        results += records
    out = {"run": run, "stage": stage, "model": model_dir, "results": results, "skipped": skipped,
           "seconds": time.perf_counter() - started,
           "settings": {k: v for k, v in settings.items() if k != "benchmarks"} | {"image_size": image_size,
                                                                                  "threads": threads},
           "prefixes": dict(prefixes)}
    write_json(out, out_json)
    return out
