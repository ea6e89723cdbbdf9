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
    """The cc12m world's alignment, the world being one image slice and one corpus chunk."""
    from .cc12m.align import align_chunks
    from .data.io import CORPUS_FILE, IMAGES_FILE
    L = _layout(config)
    align_chunks(part, [(L.world(IMAGES_FILE), L.embeddings(part, "images"))],
                 [(L.world(CORPUS_FILE), L.embeddings(part, "sentences"), L.alignment(part))],
                 config["data"]["align"], L.alignment_stats(part))


def shards(config: dict) -> None:
    from .data.shards import write_training_shards
    L = _layout(config)
    write_training_shards(L.world(), L.alignment("train"), config["data"]["shard_size"], L.shards())


def test_splits(config: dict) -> None:
    """The cc12m world's test splits, the world being one image slice."""
    from .cc12m.splits import write_cc12m_test_splits
    from .data.io import CAPTIONS_FILE, IMAGES_FILE
    L, d = _layout(config), config["data"]
    write_cc12m_test_splits([(L.world(IMAGES_FILE), L.world(CAPTIONS_FILE))], L.alignment("heldout"), d["test_langs"],
                            d["max_test_samples_per_lang"], config["seed"], L.test())


# ---- the cc12m world: the same products (training shards, test splits) from the paper's local files


def _cc12m(config: dict) -> dict:
    """The cc12m block with the world's resolution (the download size is the model's)."""
    return {**config["cc12m"], "image_size": config["world"]["image_size"]}


def _slices(config: dict) -> range:
    return range(config["cc12m"]["n_slices"])


def _corpus_chunks(config: dict) -> list[tuple[str, int]]:
    return [(lang, chunk) for lang in config["cc12m"]["corpus"]["files"]
            for chunk in range(config["cc12m"]["corpus"]["n_chunks"])]


def cc12m_download(config: dict, slice: str) -> None:
    """Download one slice of the CC12M TSV with img2dataset; join the English descriptions."""
    from .cc12m.download import download_slice
    L, i = _layout(config), int(slice)
    download_slice(_cc12m(config), config["seed"], i, L.cc12m("download"), L.cc12m_images(i),
                   L.cc12m_en_captions(i), L.cc12m_images(i, "_stats.json"))


def cc12m_captions(config: dict, slice: str) -> None:
    """A slice's captions: English, German by NLLB for every image, the UC languages for held-out images."""
    from .cc12m.translate import translate_captions
    L, i = _layout(config), int(slice)
    unseen = tuple(lang for lang in config["data"]["test_langs"]["UC"] if lang not in ("en", "de"))
    translate_captions(L.cc12m_en_captions(i), L.cc12m_images(i), config["cc12m"]["translator"], L.cc12m_captions(i),
                       L.cc12m_captions(i, "_stats.json"), heldout_langs=unseen, all_langs=("de",))


def cc12m_corpus(config: dict, lang: str) -> None:
    """One language's CCMatrix pairs, filtered, hash-partitioned into corpus chunks."""
    from .cc12m.ccmatrix import build_corpus
    build_corpus(lang, config["cc12m"]["corpus"], config["seed"], _layout(config).cc12m("corpus"))


def cc12m_embed_images(config: dict, slice: str) -> None:
    """open_clip image embeddings of one slice."""
    from .cc12m.embed import embed_image_slice
    L, i = _layout(config), int(slice)
    embed_image_slice(config["cc12m"]["clip"], L.cc12m_images(i), L.cc12m_image_embeddings(i))


def cc12m_embed_sentences(config: dict, lang: str, chunk: str) -> None:
    """open_clip text embeddings of the English side of one corpus chunk."""
    from .cc12m.embed import embed_sentence_chunk
    L = _layout(config)
    embed_sentence_chunk(config["cc12m"]["clip"], L.cc12m_corpus(lang, int(chunk)),
                         L.cc12m_sentence_embeddings(lang, int(chunk)))


def cc12m_align(config: dict, part: str) -> None:
    """Streamed FAISS top-k of the part's sentences to its images, dedup, one assignment by score and capacity."""
    from .cc12m.align import align_part
    L = _layout(config)
    images = [(L.cc12m_images(i), L.cc12m_image_embeddings(i)) for i in _slices(config)]
    chunks = [(L.cc12m_corpus(lang, c), L.cc12m_sentence_embeddings(lang, c)) for lang, c in _corpus_chunks(config)]
    align_part(part, images, chunks, config["data"]["align"], L.cc12m_alignment(part), L.cc12m_alignment_stats(part))


def cc12m_slice_shards(config: dict, slice: str) -> None:
    """Training shards of one slice's train images: en/de captions and aligned translations."""
    from .cc12m.splits import write_slice_shards
    L, i = _layout(config), int(slice)
    write_slice_shards(i, L.cc12m_images(i), L.cc12m_captions(i), L.cc12m_alignment("train"),
                       config["data"]["shard_size"], L.cc12m_slice_shards(i))


def cc12m_shards(config: dict) -> None:
    """Gather the slices' shards (hard links) into the training shard directory."""
    from .cc12m.splits import gather_shards
    L = _layout(config)
    gather_shards([L.cc12m_slice_shards(i) for i in _slices(config)], L.shards())


def cc12m_test_splits(config: dict) -> None:
    """UC, ST and SC from the held-out images of every slice."""
    from .cc12m.splits import write_cc12m_test_splits
    L, d = _layout(config), config["data"]
    write_cc12m_test_splits([(L.cc12m_images(i), L.cc12m_captions(i)) for i in _slices(config)],
                            L.cc12m_alignment("heldout"), d["test_langs"], d["max_test_samples_per_lang"],
                            config["seed"], L.test())


def cc12m_stats(config: dict) -> None:
    """data/cc12m/stats.json: every stage's counts, checked to reconcile from the TSV to the shards."""
    from .cc12m.stats import gather_cc12m_stats
    gather_cc12m_stats(_layout(config), list(_slices(config)), list(config["cc12m"]["corpus"]["files"]))


def tokenizers(config: dict) -> None:
    """encoder.json and decoder.json: trained on the synthetic world's text, or the cc12m world's Florence-2
    BART tokenizer (with an <image> placeholder) and Gemma-2 tokenizer (labels closed by <eos>)."""
    L = _layout(config)
    if config["world"]["name"] == "cc12m":
        from .models.tokenizers import prepare_tokenizers
        files = config["cc12m"]["tokenizers"]
        prepare_tokenizers(files["florence"], files["gemma"], L.tokenizers())
        return
    from .models.base_pretraining import train_world_tokenizers
    train_world_tokenizers(L.world(), config["tokenizers"]["encoder_vocab_size"],
                           config["tokenizers"]["decoder_vocab_size"], L.tokenizers())


def convert_florence2(config: dict, base: str) -> None:
    """A published Florence-2 checkpoint (remote-code or native layout) in transformers' native layout."""
    from .models.convert import convert_florence2 as convert
    convert(config["cc12m"]["checkpoints"]["florence"][base], _layout(config).florence_base(base))


def convert_gemma2(config: dict, base: str) -> None:
    """A published Gemma-2 checkpoint (Hugging Face layout), validated and linked into the study."""
    from .models.convert import import_gemma2
    import_gemma2(config["cc12m"]["checkpoints"]["gemma"][base], _layout(config).gemma_base(base))


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
                m["max_prompt_tokens"], config["evaluate"]["max_target_tokens"], out_json, threads)


def initial_loss(config: dict, size: str, threads: int = 1) -> None:
    L = _layout(config)
    _evaluate(config, L.init_model(size), L.initial_ce(size), threads)


def train(config: dict, size: str, steps: str) -> None:
    """Train one study run; under torchrun data-parallel over its processes, resumable from checkpoints."""
    from .train.runs import train_run
    L, m = _layout(config), config["models"]
    train_run(L.init_model(size), L.shards(), L.tokenizers(), config["train"], int(steps),
              config["world"]["image_size"], m["max_prompt_tokens"], m["max_target_tokens"], config["seed"],
              L.run(size, steps), fsdp=size in config["train"].get("fsdp_sizes", []),
              loss_reduction=config["train"]["loss"])


def evaluate(config: dict, size: str, steps: str, threads: int = 1) -> None:
    L = _layout(config)
    _evaluate(config, L.run(size, steps), L.run_ce(size, steps), threads)


def benchmarks(config: dict) -> None:
    """The benchmark files: the world's CoMMuTE-, XM3600-, Multi30K- and COCO-like benchmarks (new scenes,
    own seed streams), or in the cc12m world the configured local XM3600 in its public layout."""
    out = _layout(config).benchmark()
    if config["world"]["name"] == "cc12m":
        from .cc12m.benchmarks import import_xm3600
        xm3600 = config["downstream"]["benchmarks"]["xm3600"]
        import_xm3600(xm3600["captions"], xm3600["images"], config["evaluate"]["generation"]["langs"], out)
        return
    from .world.benchmarks import generate_benchmarks
    generate_benchmarks(config["world"], config["data"]["benchmarks"], config["seed"], out)


def prefix_eval(config: dict, size: str, steps: str, threads: int = 1) -> None:
    """Caption XM3600 (the world's analogue or the local public copy) with and without a language prefix:
    target-language share and CIDEr per language."""
    from .evaluate.prefix import evaluate_prefix
    from .paths import XM3600_DIR
    L, m = _layout(config), config["models"]
    evaluate_prefix(L.run(size, steps), L.benchmark(XM3600_DIR), L.tokenizers(), config["world"]["image_size"],
                    m["max_prompt_tokens"], m["max_target_tokens"], config["evaluate"]["generation"],
                    L.run_prefix(size, steps), L.run_name(size, steps), threads, world=config["world"]["name"],
                    stanza_dir=(config["downstream"]["benchmarks"].get("xm3600") or {}).get("stanza_dir"))


def finetune_data(config: dict) -> None:
    """The fine-tuning mix with every task in every language, as training shards: in the synthetic world new
    scenes; in the cc12m world the configured local sources, the languages the translation corpus has (and
    English) filled in by NLLB."""
    out = _layout(config).finetune_shards()
    if config["world"]["name"] == "cc12m":
        from .cc12m.finetune_mix import write_cc12m_finetune_mix
        langs = ["en", *config["cc12m"]["corpus"]["files"]]
        write_cc12m_finetune_mix(config["cc12m"]["finetune"], config["cc12m"]["translator"], langs,
                                 config["data"]["shard_size"], out)
    else:
        from .world.finetune import write_finetune_shards
        write_finetune_shards(config["world"], config["finetune"]["n_images"], config["data"]["shard_size"],
                              config["seed"], out)


def finetune(config: dict, size: str) -> None:
    """Fine-tune the size's largest-budget run on the full task-language mix (under torchrun as train)."""
    from .downstream.finetune import finetune_run
    L, m = _layout(config), config["models"]
    finetune_run(L.run(size, max(config["train"]["steps"])), L.finetune_shards(), L.tokenizers(), config["finetune"],
                 m["max_prompt_tokens"], m["max_target_tokens"], config["seed"], L.finetuned(size),
                 fsdp=size in config["train"].get("fsdp_sizes", []), loss_reduction=config["finetune"]["loss"])


def downstream_eval(config: dict, size: str, stage: str, threads: int = 1) -> None:
    """Score the size's largest-budget run before or after fine-tuning (stage) on the benchmarks."""
    from .downstream.evaluate import evaluate_downstream
    from .evaluate.generation import world_prefixes
    L, m = _layout(config), config["models"]
    steps = max(config["train"]["steps"])
    model_dir = {"pretrained": L.run(size, steps), "finetuned": L.finetuned(size)}[stage]
    world_bench = L.benchmark() if config["world"]["name"] == "synthetic" else None
    evaluate_downstream(model_dir, L.tokenizers(), config["finetune"]["image_size"], m["max_prompt_tokens"],
                        m["max_target_tokens"], config["downstream"],
                        config["evaluate"]["generation"]["cider_includes_prefix"], world_bench,
                        L.downstream(size, stage), L.run_name(size, steps), stage, threads,
                        prefixes=world_prefixes(config["world"]["name"]))


def downstream_table(config: dict) -> None:
    """downstream.csv/.md (Table 2 analogue), downstream_skipped.csv/.md and downstream.png."""
    from .report.downstream import STAGES as DOWNSTREAM_STAGES, downstream_results, plot_downstream
    from .report.tables import write_table
    L = _layout(config)
    table, skipped = downstream_results([L.downstream(size, stage) for size in config["models"]["sizes"]
                                         for stage in DOWNSTREAM_STAGES])
    write_table(table, L.table("downstream.csv"))
    write_table(skipped, L.table("downstream_skipped.csv"))
    plot_downstream(table, L.figures("downstream.png"))


def stage_times(config: dict) -> None:
    """stage_times.csv/.md (per rule: wall seconds, peak RSS), stage_time_jobs.csv and stage_times.png."""
    from .report.stage_times import job_times, plot_stage_times, stage_times as per_rule
    from .report.tables import write_table
    L = _layout(config)
    jobs = job_times(L.stage_times())
    write_table(jobs, L.table("stage_time_jobs.csv"))
    table = per_rule(jobs)
    write_table(table, L.table("stage_times.csv"))
    plot_stage_times(table, L.figures("stage_times.png"))


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
    study sizes (those already restructured): P, Pt, F and vocab sizes; printed and written to models.csv."""
    import os

    import pandas as pd

    from .models.paper import paper_model_table, parameter_count
    from .report.runs_table import models_table
    from .report.tables import write_table
    L = _layout(config)
    built = [size for size in config["models"]["sizes"] if os.path.exists(L.model_stats(size))]
    for size in config["models"]["sizes"]:
        if size not in built:
            log.warning("study size %s is not restructured yet (no %s): left out", size, L.model_stats(size))
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
    "cc12m-download": Stage(cc12m_download, ("slice",)),
    "cc12m-captions": Stage(cc12m_captions, ("slice",)),
    "cc12m-corpus": Stage(cc12m_corpus, ("lang",)),
    "cc12m-embed-images": Stage(cc12m_embed_images, ("slice",)),
    "cc12m-embed-sentences": Stage(cc12m_embed_sentences, ("lang", "chunk")),
    "cc12m-align": Stage(cc12m_align, ("part",)),
    "cc12m-slice-shards": Stage(cc12m_slice_shards, ("slice",)),
    "cc12m-shards": Stage(cc12m_shards),
    "cc12m-test-splits": Stage(cc12m_test_splits),
    "cc12m-stats": Stage(cc12m_stats),
    "tokenizers": Stage(tokenizers),
    "pretrain-florence2": Stage(pretrain_florence2, ("base",)),
    "pretrain-gemma2": Stage(pretrain_gemma2, ("base",)),
    "convert-florence2": Stage(convert_florence2, ("base",)),
    "convert-gemma2": Stage(convert_gemma2, ("base",)),
    "restructure": Stage(restructure, ("size",)),
    "model-stats": Stage(model_stats, ("size",)),
    "initial-loss": Stage(initial_loss, ("size",), takes_threads=True),
    "train": Stage(train, ("size", "steps")),
    "evaluate": Stage(evaluate, ("size", "steps"), takes_threads=True),
    "benchmarks": Stage(benchmarks),
    "prefix-eval": Stage(prefix_eval, ("size", "steps"), takes_threads=True),
    "prefix-table": Stage(prefix_table),
    "finetune-data": Stage(finetune_data),
    "finetune": Stage(finetune, ("size",)),
    "downstream-eval": Stage(downstream_eval, ("size", "stage"), takes_threads=True),
    "downstream-table": Stage(downstream_table),
    "stage-times": Stage(stage_times),
    "tables": Stage(tables),
    "models": Stage(models),
    "report": Stage(report),
}
