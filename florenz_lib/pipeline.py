"""The study's stages as functions of (config, wildcards). Snakemake rules and the `florenz` command
line call the same functions, which take every path from florenz_lib.paths.Layout.

Each stage imports its library inside the function: a job pays only for the libraries it uses
(torch, open_clip, faiss), and `florenz --help` answers at once."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import logging

from .paths import Layout

log = logging.getLogger(__name__)


def _layout(config: dict) -> Layout:
    return Layout(config["results_dir"])


def world(config: dict) -> None:
    from .world import generate_world
    generate_world(config["world"], config["seed"], _layout(config).world())


def clip(config: dict) -> None:
    from .data.clip import train_clip
    L = _layout(config)
    train_clip(L.world(), config["data"]["clip"], config["seed"], L.clip())


def embed(config: dict, part: str) -> None:
    from .data.embed import embed_images, embed_sentences
    L = _layout(config)
    embed_images(L.clip(), L.world(), part, L.embeddings(part, "images"))
    embed_sentences(L.clip(), L.world(), part, L.embeddings(part, "sentences"))


def align(config: dict, part: str) -> None:
    from .data.align import align as align_sentences
    L = _layout(config)
    align_sentences(L.embeddings(part, "images"), L.embeddings(part, "sentences"), L.world(), part,
                    config["data"]["align"], L.alignment(part), L.alignment_stats(part))


def shards(config: dict) -> None:
    from .data.shards import write_training_shards
    L = _layout(config)
    write_training_shards(L.world(), L.alignment("train"), config["data"]["shard_size"], L.shards())


def test_splits(config: dict) -> None:
    from .data.shards import write_test_splits
    L = _layout(config)
    write_test_splits(L.world(), L.alignment("heldout"), config["data"]["test_langs"],
                      config["data"]["max_test_samples_per_lang"], config["seed"], L.test())


def tokenizers(config: dict) -> None:
    from .models.base_pretraining import train_world_tokenizers
    L = _layout(config)
    train_world_tokenizers(L.world(), config["tokenizers"]["encoder_vocab_size"],
                           config["tokenizers"]["decoder_vocab_size"], L.tokenizers())


def pretrain_florence2(config: dict, base: str) -> None:
    from .models.base_pretraining import pretrain_florence2 as pretrain
    L, m = _layout(config), config["models"]
    out = L.florence_base(base)
    pretrain(L.world(), L.tokenizers(), m["florence_bases"][base], config["world"]["image_size"],
             m["base_pretraining"], m["max_prompt_tokens"], m["max_target_tokens"], config["seed"], out,
             f"{out}_train_log.csv")


def pretrain_gemma2(config: dict, base: str) -> None:
    from .models.base_pretraining import pretrain_gemma2 as pretrain
    L, m = _layout(config), config["models"]
    out = L.gemma_base(base)
    pretrain(L.world(), L.tokenizers(), m["gemma_bases"][base], m["base_pretraining"], m["max_target_tokens"],
             config["seed"], out, f"{out}_train_log.csv")


def restructure(config: dict, size: str) -> None:
    from .models.stages import restructure as restructure_size
    L, spec = _layout(config), config["models"]["sizes"][size]
    gemma_dir = L.gemma_base(spec["gemma"]) if spec["family"] == "gemma" else None
    restructure_size(spec["family"], L.florence_base(spec["florence"]), gemma_dir, L.tokenizers(), L.init_model(size),
                     seed=config["seed"])


def model_stats(config: dict, size: str) -> None:
    from .models.stages import model_stats as count
    L, e = _layout(config), config["evaluate"]
    count(L.init_model(size), config["world"]["image_size"], e["flops_encoder_tokens"], e["flops_decoder_tokens"],
          L.model_stats(size))


def _evaluate(config: dict, model_dir: str, out_json: str, threads: int) -> None:
    from .evaluate.ce import evaluate_ce
    L, m = _layout(config), config["models"]
    evaluate_ce(model_dir, L.test(), L.tokenizers(), config["world"]["image_size"], config["evaluate"]["batch_size"],
                m["max_prompt_tokens"], m["max_target_tokens"], out_json, threads)


def initial_loss(config: dict, size: str, threads: int = 1) -> None:
    L = _layout(config)
    _evaluate(config, L.init_model(size), L.initial_ce(size), threads)


def train(config: dict, size: str, steps: str) -> None:
    """Train one study run; under torchrun data-parallel over its processes, resumable from checkpoints."""
    from .train.runs import train_run
    L, m = _layout(config), config["models"]
    train_run(L.init_model(size), L.shards(), L.tokenizers(), config["train"], int(steps),
              config["world"]["image_size"], m["max_prompt_tokens"], m["max_target_tokens"], config["seed"],
              L.run(size, steps), fsdp=size in config["train"].get("fsdp_sizes", []))


def evaluate(config: dict, size: str, steps: str, threads: int = 1) -> None:
    L = _layout(config)
    _evaluate(config, L.run(size, steps), L.run_ce(size, steps), threads)


def benchmarks(config: dict) -> None:
    """Write the world's CoMMuTE-like and XM3600-like benchmarks (new scenes, own seed streams)."""
    from .world.benchmarks import generate_benchmarks
    generate_benchmarks(config["world"], config["data"]["benchmarks"], config["seed"], _layout(config).benchmark())


def prefix_eval(config: dict, size: str, steps: str, threads: int = 1) -> None:
    """Caption the XM3600-like benchmark with and without a language prefix: target-language share, CIDEr."""
    from .evaluate.prefix import evaluate_prefix
    from .world.benchmarks import XM3600_DIR
    L, m = _layout(config), config["models"]
    evaluate_prefix(L.run(size, steps), L.benchmark(XM3600_DIR), L.tokenizers(), config["world"]["image_size"],
                    m["max_prompt_tokens"], m["max_target_tokens"], config["evaluate"]["generation"],
                    L.run_prefix(size, steps), L.run_name(size, steps), threads)


def prefix_table(config: dict) -> None:
    """The prefix table (prefix.csv/.md) and its figure (prefix.png) from every run's prefix.json."""
    from .report.prefix import plot_prefix, prefix_results, prefix_table as table
    from .report.tables import write_table
    L = _layout(config)
    results = prefix_results(L, list(config["models"]["sizes"]), config["train"]["steps"])
    write_table(table(results), L.table("prefix.csv"))
    plot_prefix(results, L.figures("prefix.png"))


def tables(config: dict) -> None:
    from .report.runs_table import runs_table
    from .report.tables import write_table
    L = _layout(config)
    sizes = list(config["models"]["sizes"])
    write_table(runs_table(L, sizes, config["train"]["steps"], config["train"]["batch_size"]), L.table("runs.csv"))


def models(config: dict) -> None:
    """Table of the paper's four sizes (built on the meta device, no weights needed) and the configured
    world sizes (those already restructured): P, Pt, F and vocab sizes; printed and written to models.csv."""
    import os

    import pandas as pd

    from .models.paper import paper_model_table, parameter_count
    from .report.runs_table import models_table
    from .report.tables import write_table
    L = _layout(config)
    built = [size for size in config["models"]["sizes"] if os.path.exists(L.model_stats(size))]
    for size in config["models"]["sizes"]:
        if size not in built:
            log.warning("world size %s is not restructured yet (no %s): left out", size, L.model_stats(size))
    table = pd.concat([paper_model_table(), models_table(L, built)], ignore_index=True)
    write_table(table, L.table("models.csv"))
    shown = table.assign(**{c: table[c].map(parameter_count) for c in ("P", "Pt")},
                         F=table["F"].map(lambda macs: f"{macs / 1e9:.2f}G"))
    print(shown.to_markdown(index=False))


def report(config: dict) -> None:
    from .report.build import write_report
    L = _layout(config)
    write_report(L.table("runs.csv"), L.table(""), L.figures(), targets=config["report"]["targets"],
                 bootstrap_samples=config["report"]["bootstrap_samples"], seed=config["seed"])


@dataclass(frozen=True)
class Stage:
    run: Callable[..., None]
    wildcards: tuple[str, ...] = ()
    takes_threads: bool = False


STAGES: dict[str, Stage] = {
    "world": Stage(world),
    "clip": Stage(clip),
    "embed": Stage(embed, ("part",)),
    "align": Stage(align, ("part",)),
    "shards": Stage(shards),
    "test-splits": Stage(test_splits),
    "tokenizers": Stage(tokenizers),
    "pretrain-florence2": Stage(pretrain_florence2, ("base",)),
    "pretrain-gemma2": Stage(pretrain_gemma2, ("base",)),
    "restructure": Stage(restructure, ("size",)),
    "model-stats": Stage(model_stats, ("size",)),
    "initial-loss": Stage(initial_loss, ("size",), takes_threads=True),
    "train": Stage(train, ("size", "steps")),
    "evaluate": Stage(evaluate, ("size", "steps"), takes_threads=True),
    "benchmarks": Stage(benchmarks),
    "prefix-eval": Stage(prefix_eval, ("size", "steps"), takes_threads=True),
    "prefix-table": Stage(prefix_table),
    "tables": Stage(tables),
    "models": Stage(models),
    "report": Stage(report),
}
