"""The downstream evaluation stage: which benchmarks it scores, what it skips, the records it writes."""
import json

import pytest
import torch

from florenz_lib.downstream.evaluate import PUBLIC_BENCHMARKS, benchmark_tasks, evaluate_downstream
from florenz_lib.evaluate.generation import world_prefixes
from florenz_lib.models.florenz import save_florenz
from florenz_lib.models.restructure import florenz_from_florence2_and_gemma2
from florenz_lib.models.tokenizers import save_tokenizer
from florenz_lib.report.downstream import DOWNSTREAM_COLUMNS, downstream_results
from florenz_lib.world.benchmarks import COMMUTE_LANGS, generate_benchmarks

WORLD = {"image_size": 32, "max_objects": 2}
BENCH = {"commute_scenes": 4, "xm3600_images": 3, "multi30k_images": 3, "coco_images": 3}
SETTINGS = {"num_beams": 2, "max_new_tokens": 5, "batch_size": 4, "max_items": 2, "benchmarks": {}}


@pytest.fixture(scope="module")
def world_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    generate_benchmarks(WORLD, BENCH, 0, out)
    return out


@pytest.fixture(scope="module")
def model_and_tokenizers(tmp_path_factory, base_models, tokenizers):
    root = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    save_florenz(florenz_from_florence2_and_gemma2(*base_models), root / "model")
    save_tokenizer(tokenizers[0], root / "tok" / "encoder.json")
    save_tokenizer(tokenizers[1], root / "tok" / "decoder.json")
    return root / "model", root / "tok"


def test_world_analogues_are_scored_and_unconfigured_public_benchmarks_skipped(world_bench):
    tasks, skipped = benchmark_tasks({}, str(world_bench))
    assert {(t.benchmark, t.lang) for t in tasks if t.benchmark == "world:commute"} == \
        {("world:commute", lang) for lang in COMMUTE_LANGS}
    assert {t.benchmark for t in tasks} == {"world:multi30k", "world:coco_karpathy", "world:xm3600", "world:commute"}
    assert [s["benchmark"] for s in skipped] == list(PUBLIC_BENCHMARKS)
    assert all("downstream.benchmarks." in s["reason"] for s in skipped)
    # the cc12m world has no analogues: only configured public benchmarks
    tasks, skipped = benchmark_tasks({"coco_karpathy": {"annotations": str(world_bench / "coco" / "dataset_coco.json"),
                                                        "images": str(world_bench / "coco")}}, None)
    assert [(t.benchmark, t.kind, t.lang) for t in tasks] == [("coco_karpathy", "caption", "en")]
    assert "coco_karpathy" not in [s["benchmark"] for s in skipped] and len(skipped) == 4


def test_configured_public_benchmark_with_a_missing_file_names_it(world_bench, model_and_tokenizers, tmp_path):
    model, tok = model_and_tokenizers
    missing = tmp_path / "nowhere" / "dataset_coco.json"
    settings = {**SETTINGS, "benchmarks": {"coco_karpathy": {"annotations": str(missing), "images": str(tmp_path)}}}
    with pytest.raises(FileNotFoundError, match="nowhere/dataset_coco.json"):
        evaluate_downstream(str(model), str(tok), 32, 24, 16, settings, True, None, str(tmp_path / "out.json"),
                            "tiny_steps1", "pretrained", prefixes=world_prefixes("cc12m"))
    assert not (tmp_path / "out.json").exists()


def test_evaluation_writes_every_metric_and_the_table_reads_it(world_bench, model_and_tokenizers, tmp_path):
    model, tok = model_and_tokenizers
    out = evaluate_downstream(str(model), str(tok), 32, 24, 16, SETTINGS, True, str(world_bench),
                              str(tmp_path / "pretrained.json"), "tiny_steps1", "pretrained",
                              prefixes=world_prefixes("synthetic"))
    metrics = {(r["benchmark"], r["lang"], r["metric"]) for r in out["results"]}
    assert ("world:xm3600", "zh", "cider") in metrics and ("world:xm3600", "fr", "cider_prefix") in metrics
    assert ("world:commute", "de", "accuracy") in metrics and ("world:commute", "ru", "bleu") in metrics
    assert ("world:multi30k", "fr", "bleu") in metrics and ("world:coco_karpathy", "en", "cider") in metrics
    assert all(r["n"] == 2 for r in out["results"])
    accuracy = [r["value"] for r in out["results"] if r["metric"] == "accuracy"]
    assert all(v in (0.0, 0.5, 1.0) for v in accuracy)
    bleu = next(r for r in out["results"] if r["metric"] == "bleu" and r["lang"] == "zh")
    assert "tok:zh" in bleu["signature"]
    assert next(r for r in out["results"] if r["lang"] == "zh" and r["metric"] == "cider")["segmenter"] == "jieba"
    # with the prefix, every scored caption starts with the language's prefix (cider_includes_prefix)
    assert all(s.startswith("La photo montre") for s in
               next(r for r in out["results"] if r["lang"] == "fr" and r["metric"] == "cider_prefix")["samples"])
    assert json.loads((tmp_path / "pretrained.json").read_text())["results"] == out["results"]

    second = {**out, "stage": "finetuned"}
    (tmp_path / "finetuned.json").write_text(json.dumps(second))
    table, skipped = downstream_results([str(tmp_path / "pretrained.json"), str(tmp_path / "finetuned.json")])
    assert list(table.columns) == list(DOWNSTREAM_COLUMNS)
    assert len(table) == 2 * len(out["results"]) and set(table["stage"]) == {"pretrained", "finetuned"}
    assert list(skipped["benchmark"]) == sorted(PUBLIC_BENCHMARKS)
