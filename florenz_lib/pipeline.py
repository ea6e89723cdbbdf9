"""The study's stages as functions of (config, wildcards). Snakemake rules and the `florenz` command
line call the same functions, which take every path from florenz_lib.paths.Layout.

Each stage imports its library inside the function: a job pays only for the libraries it uses
(torch, open_clip, faiss), and `florenz --help` answers at once."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .paths import Layout


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
    restructure_size(spec["family"], L.florence_base(spec["florence"]), gemma_dir, L.tokenizers(), L.init_model(size))


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
    from .train.runs import train_run
    L, m = _layout(config), config["models"]
    train_run(L.init_model(size), L.shards(), L.tokenizers(), config["train"], int(steps),
              config["world"]["image_size"], m["max_prompt_tokens"], m["max_target_tokens"], config["seed"],
              L.run(size, steps))


def evaluate(config: dict, size: str, steps: str, threads: int = 1) -> None:
    L = _layout(config)
    _evaluate(config, L.run(size, steps), L.run_ce(size, steps), threads)


def tables(config: dict) -> None:
    from .report.runs_table import models_table, runs_table
    from .report.tables import write_table
    L = _layout(config)
    sizes = list(config["models"]["sizes"])
    write_table(runs_table(L, sizes, config["train"]["steps"], config["train"]["batch_size"]), L.table("runs.csv"))
    write_table(models_table(L, sizes), L.table("models.csv"))


def report(config: dict) -> None:
    from .report.build import write_report
    L = _layout(config)
    write_report(L.table("runs.csv"), L.table(""), L.figures())


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
    "tables": Stage(tables),
    "report": Stage(report),
}
