"""The cc12m world end to end through Snakemake, the paper's study in miniature, on tiny real-format inputs
built here: a CC12M TSV of images served on 127.0.0.1 (with every kind of broken row), a descriptions
parquet, CCMatrix Moses files, a tiny NLLB-style model converted with CTranslate2's converter, a tiny
open_clip model in a local safetensors file, tiny Florence-2 (remote-code layout, as published) and Gemma-2
(Hugging Face layout) checkpoints with tokenizer files in the published formats, and tiny XM3600 and COCO
Karpathy copies in their public layouts. One size per family, two budgets."""
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

import pandas as pd

from cc12m_fixtures import (TINY_NLLB_LANG_CODES, build_tiny_m2m100, build_tiny_open_clip, serve_directory,
                            write_cc12m_fixture, write_public_benchmarks)
from checkpoint_fixtures import write_tiny_florence2, write_tiny_gemma2
from florenz_lib.data.shards import SHARD_SCHEMA, TEST_SPLIT_SCHEMA
from tokenizer_fixtures import write_florence2_tokenizer, write_gemma2_tokenizer

REPO = Path(__file__).resolve().parents[1]
N_SLICES = 2

EN = ["A dog runs on the beach.", "Two red circles.", "The sky is blue.", "A man holds a bag of rice.",
      "A cat sleeps on a chair.", "Three boats on a lake.", "A child reads a book.", "The train is late today."]
XX = {"de": ["Ein Hund läuft am Strand.", "Zwei rote Kreise.", "Der Himmel ist blau.", "Ein Mann hält Reis.",
             "Eine Katze schläft.", "Drei Boote auf einem See.", "Ein Kind liest ein Buch.", "Der Zug ist spät."],
      "es": ["Un perro corre en la playa.", "Dos círculos rojos.", "El cielo es azul.", "Un hombre con arroz.",
             "Un gato duerme.", "Tres barcos en un lago.", "Un niño lee un libro.", "El tren llega tarde."],
      "zh": ["一只狗在海滩上奔跑。", "两个红色的圆。", "天空是蓝色的。", "一个男人拿着大米。", "一只猫在椅子上睡觉。",
             "湖上有三条船。", "一个孩子在看书。", "火车今天晚点了。"]}
STUDY_LANGS = ["en", "de", "es", "zh"]  # the tiny NLLB's languages
REPEATS = 6  # each sentence pair with a numbered variant, so every language has enough pairs for both splits


def _write_ccmatrix(root: Path) -> tuple[dict, Counter]:
    """Moses files per language, with bad lines; returns (files config, expected drops of zh)."""
    files = {}
    for lang, targets in XX.items():
        en_lines, xx_lines = [], []
        for r in range(REPEATS):
            for en, xx in zip(EN, targets):
                en_lines.append(f"{en[:-1]} number {r}.")
                xx_lines.append(f"{xx[:-1]} {r}{xx[-1]}")
        en_lines += ["", "Same text on both sides.", "x" * 600]
        xx_lines += ["leer" if lang != "zh" else "空", "Same text on both sides.", "y" * 600]
        if lang == "zh":
            en_lines.append("A sentence whose translation is not Chinese.")
            xx_lines.append("Eine Übersetzung ohne chinesische Zeichen.")
        for side, lines in (("en", en_lines), ("xx", xx_lines)):
            path = root / f"CCMatrix.{lang}-en.{lang if side == 'xx' else 'en'}"
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            files.setdefault(lang, {})[side] = str(path)
    return files, Counter({"empty": 1, "source_equals_target": 1, "too_long": 1, "wrong_script": 1})


@pytest.fixture(scope="module")
def cc12m_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cc12m")
    (root / "www").mkdir()
    nllb_ct2, nllb_hf = build_tiny_m2m100(root / "nllb")
    clip_name, clip_weights = build_tiny_open_clip(root / "clip")
    corpus_files, zh_drops = _write_ccmatrix(root)
    florence_tokenizer, encoder_vocab = write_florence2_tokenizer(root / "Florence-2-base")
    gemma_tokenizer, decoder_vocab = write_gemma2_tokenizer(root / "gemma-2-2b")
    write_tiny_florence2(root / "Florence-2-base", layout="remote", vocab_size=encoder_vocab)
    write_tiny_gemma2(root / "gemma-2-2b", vocab_size=decoder_vocab)
    benchmarks = write_public_benchmarks(root / "benchmarks", STUDY_LANGS)
    with serve_directory(root / "www") as base_url:
        fixture = write_cc12m_fixture(root / "www", base_url, 12)
        config = {
            "results_dir": "results",
            "world": {"name": "cc12m", "image_size": 32},
            "cc12m": {
                "tsv": str(fixture.tsv), "descriptions": str(fixture.descriptions), "descriptions_key": "url",
                "n_slices": N_SLICES, "resize_mode": "center_crop", "max_image_pixels": 100 * 100,
                "heldout_fraction": 0.5, "download": {"processes": 1, "threads": 4, "timeout": 5, "retries": 0},
                "caption_min_chars": 3, "caption_max_chars": 60,
                "translator": {"model_dir": str(nllb_ct2), "tokenizer_dir": str(nllb_hf),
                               "lang_codes": TINY_NLLB_LANG_CODES, "device": "cpu", "threads": 1, "max_batch_tokens": 512,
                               "beam_size": 2, "max_decoding_length": 32},
                "corpus": {"format": "moses", "files": corpus_files, "max_pairs_per_lang": None, "min_chars": 3,
                           "max_chars": 200, "max_length_ratio": 3.0, "heldout_fraction": 0.3, "n_chunks": 2},
                "clip": {"model": clip_name, "model_config": str(root / "clip" / f"{clip_name}.json"),
                         "weights": str(clip_weights), "batch_size": 4, "device": "cpu"},
                "checkpoints": {"florence": {"base": str(root / "Florence-2-base")},
                                "gemma": {"2b": str(root / "gemma-2-2b")}},
                "tokenizers": {"florence": str(florence_tokenizer), "gemma": str(gemma_tokenizer)},
                "finetune": {"coco_karpathy": {**benchmarks["coco_karpathy"], "splits": ["train"]}},
            },
            "data": {"align": {"batch_size": 16, "image_block_size": 5}, "shard_size": 4,
                     "max_test_samples_per_lang": 5},
            # one size per family (null drops a size of config.yaml), two budgets
            "models": {"max_prompt_tokens": 32, "max_target_tokens": 24,
                       "sizes": {"florence2-large": None, "florencegemma2-xlarge": None,
                                 "florencegemma2-large": {"florence": "base"}}},
            "train": {"steps": [2, 4], "batch_size": 4, "micro_batch_size": 2, "warmup_steps": 1},
            "evaluate": {"batch_size": 8, "generation": {"langs": STUDY_LANGS, "images_per_lang": 2, "batch_size": 4,
                                                         "num_beams": 2, "max_new_tokens": 6,
                                                         "cider_includes_prefix": False}},
            "finetune": {"steps": 2, "batch_size": 4, "micro_batch_size": 4, "warmup_steps": 1, "image_size": 48},
            "downstream": {"max_items": 2, "num_beams": 2, "max_new_tokens": 6, "batch_size": 4,
                           "benchmarks": benchmarks},
            "report": {"targets": [{"P": 1.0e6, "S": 100, "T": 3.0}], "bootstrap_samples": 20},
        }
        (root / "cc12m.yaml").write_text(yaml.safe_dump(config))
        snakemake = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(root),
                     "--configfile", str(root / "cc12m.yaml"), "--cores", "2"]
        result = subprocess.run([*snakemake, "all"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    report = subprocess.run([*snakemake, "--report", str(root / "results" / "report.html")], capture_output=True,
                            text=True)
    assert report.returncode == 0, report.stderr[-3000:]
    return root, fixture, zh_drops


@pytest.mark.slow
@pytest.mark.e2e
def test_cc12m_world_builds_shards_and_test_splits_whose_counts_reconcile(cc12m_run):
    root, fixture, zh_drops = cc12m_run
    data = root / "results" / "data"
    stats = json.loads((data / "cc12m" / "stats.json").read_text())
    assert stats["tsv_lines"] == fixture.lines and all(check["ok"] for check in stats["checks"])
    download = stats["download"]
    assert download["in"] == download["out"] + sum(download["dropped"].values())
    assert download["out"] == len(fixture.good_urls) and download["dropped"] == fixture.drops
    assert download["splits"]["train"] > 0 and download["splits"]["heldout"] > 0
    assert Counter({k: v for k, v in stats["corpus"]["zh"]["dropped"].items() if v}) == zh_drops
    assert stats["corpus"]["de"]["out"] == len(EN) * REPEATS

    shards = sorted((data / "shards").glob("shard-*.parquet"))
    assert {path.name.split("-")[1] for path in shards} <= {f"{i:05d}" for i in range(N_SLICES)}
    rows = [row for path in shards for row in pq.read_table(path, schema=SHARD_SCHEMA).to_pylist()]
    assert len(rows) == download["splits"]["train"] == stats["shards"]["rows"]
    annotations = Counter(f"{a['task']}-{a['lang']}" for row in rows for a in row["annotations"])
    assert annotations["caption-en"] == annotations["caption-de"] == len(rows)
    assert sum(v for k, v in annotations.items() if k.startswith("translation-")) == stats["alignment"]["train"]["aligned"]
    # German captions are NLLB's: the tiny model's memorised sentences
    assert all(a["target"] for row in rows for a in row["annotations"])

    splits = {name: pq.read_table(data / "test" / f"{name}.parquet", schema=TEST_SPLIT_SCHEMA).to_pylist()
              for name in ("UC", "ST", "SC")}
    assert {r["lang"] for r in splits["UC"]} == {"es", "zh"} and {r["lang"] for r in splits["SC"]} == {"en", "de"}
    assert {r["lang"] for r in splits["ST"]} <= {"es", "zh"} and all(r["source"] for r in splits["ST"])
    train_keys = {row["key"] for row in rows}
    assert not train_keys & {r["key"] for split in splits.values() for r in split}
    logs = root / "results" / "logs"
    assert len(list((logs / "cc12m_download").glob("*.log"))) == N_SLICES
    assert len(list((root / "results" / "stage_times" / "cc12m_align").glob("*.tsv"))) == 2


@pytest.mark.slow
@pytest.mark.e2e
def test_cc12m_world_runs_the_study_from_published_checkpoints_to_the_report(cc12m_run):
    root = cc12m_run[0]
    results = root / "results"
    tables = results / "tables"
    runs = pd.read_csv(tables / "runs.csv")
    assert list(runs.columns) == ["run", "family", "size", "P", "Pt", "S", "steps", "F", "C", "T", "UC", "ST", "SC"]
    assert sorted(runs["size"].unique()) == ["florence2-base", "florencegemma2-large"]
    assert sorted(runs["steps"].unique()) == [2, 4] and set(runs["family"]) == {"florence", "gemma"}
    assert runs[["P", "Pt", "F", "C", "T", "UC", "ST", "SC"]].gt(0).all().all()
    law1, law2 = pd.read_csv(tables / "law1.csv"), pd.read_csv(tables / "law2.csv")
    assert list(law1["split"]) == ["UC", "ST", "SC"] and law1["n_points"].eq(4).all()
    assert set(law2["term"]) == {"intercept", "P", "S", "T"}
    prefix = pd.read_csv(tables / "prefix.csv")
    assert len(prefix) == len(runs) * len(STUDY_LANGS) * 2
    downstream = pd.read_csv(tables / "downstream.csv")
    assert set(downstream["stage"]) == {"pretrained", "finetuned"}
    assert {"xm3600", "coco_karpathy"} <= set(downstream["benchmark"])
    assert "runs.csv" in (results / "report.html").read_text(errors="replace")

    # the published remote-code Florence-2 was converted to transformers' native layout once
    converted = json.loads((results / "models" / "bases" / "florence2-base" / "config.json").read_text())
    assert converted["model_type"] == "florence2" and converted["text_config"]["model_type"] == "bart"
    # the real-format tokenizers: Florence-2's BART tokenizer gained an <image> row, Gemma-2's closes labels with <eos>
    encoder = json.loads((results / "models" / "tokenizers" / "encoder.json").read_text())
    image_id = next(t["id"] for t in encoder["added_tokens"] if t["content"] == "<image>")
    init = json.loads((results / "models" / "florencegemma2-large" / "init" / "config.json").read_text())
    assert init["florence2"]["image_token_id"] == image_id
    assert image_id < init["florence2"]["text_config"]["vocab_size"]
    prefix_json = json.loads((results / "runs" / "florence2-base" / "steps4" / "prefix.json").read_text())
    assert set(prefix_json["captions"]) == set(STUDY_LANGS)


def _dry_run_config(tmp_path: Path) -> dict:
    """The default config switched to a cc12m world whose every input exists (empty files)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    files = {"tsv": tmp_path / "cc12m.tsv", "descriptions": tmp_path / "d.parquet", "weights": tmp_path / "clip.safetensors",
             "tok": tmp_path / "tok", "nllb": tmp_path / "nllb", "en": tmp_path / "c.en", "de": tmp_path / "c.de",
             "florence": tmp_path / "florence", "gemma": tmp_path / "gemma", "xm3600": tmp_path / "xm3600",
             "tokenizer": tmp_path / "tokenizer.json", "captions": tmp_path / "captions.jsonl"}
    for key, path in files.items():
        path.mkdir() if key in ("tok", "nllb", "florence", "gemma", "xm3600") else path.write_text("")
    config["world"]["name"] = "cc12m"
    config["results_dir"] = str(tmp_path / "results")
    config["cc12m"] = {
        "tsv": str(files["tsv"]), "descriptions": str(files["descriptions"]), "descriptions_key": "url", "n_slices": 3,
        "resize_mode": "center_crop", "max_image_pixels": 10000, "heldout_fraction": 0.1, "caption_min_chars": 1,
        "caption_max_chars": 100,
        "translator": {"model_dir": str(files["nllb"]), "tokenizer_dir": str(files["tok"]),
                       "lang_codes": {"en": "eng_Latn", "de": "deu_Latn"}, "max_batch_tokens": 512, "beam_size": 1,
                       "max_decoding_length": 16},
        "corpus": {"format": "moses", "files": {"de": {"en": str(files["en"]), "xx": str(files["de"])}}, "min_chars": 1,
                   "max_chars": 10, "max_length_ratio": 2, "heldout_fraction": 0.1, "n_chunks": 2},
        "clip": {"model": "ViT-B-16", "weights": str(files["weights"])},
        "checkpoints": {"florence": {"base": str(files["florence"]), "large": str(files["florence"])},
                        "gemma": {"2b": str(files["gemma"]), "9b": str(files["gemma"])}},
        "tokenizers": {"florence": str(files["tokenizer"]), "gemma": str(files["tokenizer"])},
    }
    config["downstream"]["benchmarks"] = {"xm3600": {"captions": str(files["captions"]), "images": str(files["xm3600"]),
                                                     "langs": ["en", "de"]}}
    return config


def _dry_run(tmp_path: Path, config: dict) -> subprocess.CompletedProcess:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
                           "--configfile", str(tmp_path / "config.yaml")], capture_output=True, text=True, cwd=tmp_path)


def test_a_missing_model_path_stops_the_dag_naming_the_config_key(tmp_path):
    config = _dry_run_config(tmp_path)
    config["cc12m"]["translator"]["model_dir"] = str(tmp_path / "no-such-nllb")
    result = _dry_run(tmp_path, config)
    assert result.returncode != 0
    assert "config key 'cc12m.translator.model_dir': no such file or directory" in result.stdout + result.stderr
    assert "no-such-nllb" in result.stdout + result.stderr


def test_the_dag_scatters_slices_and_chunks_and_adds_a_configured_fine_tuning_mix(tmp_path):
    config = _dry_run_config(tmp_path)
    result = _dry_run(tmp_path, config)
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout.split("Job stats:")[1].split("\n\n")[0].splitlines()[3:]
    jobs = {line.split()[0]: int(line.split()[1]) for line in table if len(line.split()) == 2}
    assert jobs["cc12m_download"] == jobs["cc12m_captions"] == jobs["cc12m_slice_shards"] == 3
    assert jobs["cc12m_embed_sentences"] == 2 and jobs["cc12m_align"] == 2
    # without fine-tuning sources the downstream table has the pretrained models only
    assert "finetune_data" not in jobs and "finetune" not in jobs and jobs["downstream_eval"] == 4
    (tmp_path / "coco.json").write_text("{}")
    config["cc12m"]["finetune"] = {"coco_karpathy": {"annotations": str(tmp_path / "coco.json"), "images": str(tmp_path)}}
    assert "finetune_data" in _dry_run(tmp_path, config).stdout


def _relocated(node, root: Path):
    """The preset's absolute paths moved under root and created there (a directory unless the name has a suffix)."""
    if isinstance(node, dict):
        return {key: _relocated(value, root) for key, value in node.items()}
    if isinstance(node, list):
        return [_relocated(value, root) for value in node]
    if isinstance(node, str) and node.startswith("/"):
        path = root / node.lstrip("/")
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.mkdir(parents=True, exist_ok=True)
        return str(path)
    return node


def test_the_paper_preset_plans_the_whole_study(tmp_path):
    """`snakemake --configfile config.cc12m.yaml -n all` with the preset's paths pointing at fixtures."""
    preset = yaml.safe_load((REPO / "config.cc12m.yaml").read_text())
    paths = {"results_dir": str(tmp_path / "results"), "cc12m": _relocated(preset["cc12m"], tmp_path),
             "downstream": {"benchmarks": _relocated(preset["downstream"]["benchmarks"], tmp_path)}}
    (tmp_path / "paths.yaml").write_text(yaml.safe_dump(paths))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
                             "--configfile", str(REPO / "config.cc12m.yaml"), str(tmp_path / "paths.yaml"), "--", "all"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout.split("Job stats:")[1].split("\n\n")[0].splitlines()[3:]
    jobs = {line.split()[0]: int(line.split()[1]) for line in table if len(line.split()) == 2}
    slices, langs, chunks, sizes, budgets = 256, 5, 64, 4, 4  # the preset: the paper's grid
    assert {rule: jobs[rule] for rule in ("cc12m_download", "cc12m_captions", "cc12m_embed_images", "cc12m_slice_shards")} \
        == dict.fromkeys(("cc12m_download", "cc12m_captions", "cc12m_embed_images", "cc12m_slice_shards"), slices)
    assert jobs["cc12m_corpus"] == langs and jobs["cc12m_embed_sentences"] == langs * chunks
    assert jobs["convert_florence2"] == 2 and jobs["convert_gemma2"] == 2 and jobs["tokenizers"] == 1
    assert jobs["restructure"] == jobs["model_stats"] == jobs["initial_loss"] == jobs["finetune"] == sizes
    assert jobs["train"] == jobs["evaluate"] == jobs["prefix_eval"] == sizes * budgets
    assert jobs["downstream_eval"] == 2 * sizes
    for rule in ("cc12m_align", "shards", "test_splits", "benchmarks", "finetune_data", "tables", "report",
                 "prefix_table", "downstream_table", "models_table", "stage_times", "cc12m_stats"):
        assert jobs.get(rule, 0) >= 1, rule
    # the paper's settings reach the jobs: 8 GPUs per train job
    assert "gpu=8" in result.stdout.split("rule train:")[1].split("rule ")[0]
