"""The whole study through Snakemake on a reduced config, then a forced rerun of one rule."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

REDUCED = {
    "world": {"n_train_images": 120, "n_heldout_images": 30, "n_corpus_pairs": 60, "n_heldout_corpus_pairs": 20},
    "data": {"clip": {"steps": 10, "batch_size": 16}, "max_test_samples_per_lang": 8, "shard_size": 50},
    "tokenizers": {"encoder_vocab_size": 400, "decoder_vocab_size": 500},
    "models": {"base_pretraining": {"steps": 15, "batch_size": 8}},
    "train": {"steps": [3, 12], "batch_size": 4, "warmup_steps": 1},
    "evaluate": {"batch_size": 16},
    "finetune": {"n_images": 20, "steps": 3, "batch_size": 4, "micro_batch_size": 4, "warmup_steps": 1},
    "downstream": {"max_items": 3, "num_beams": 2, "max_new_tokens": 8, "batch_size": 8, "benchmarks": {}},
}


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "reduced.yaml"), "--cores", "2", *args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def _jobs_of_dry_run(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule -> count."""
    lines = output.split("Job stats:")[1].splitlines()
    counts = {}
    for line in lines[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("study")
    (workdir / "reduced.yaml").write_text(yaml.safe_dump({"results_dir": "results", **REDUCED}))
    _snakemake(workdir, "all")
    return workdir


@pytest.mark.slow
@pytest.mark.e2e
def test_reduced_study_writes_the_report(study):
    tables = study / "results" / "tables"
    runs = pd.read_csv(tables / "runs.csv")
    assert list(runs.columns) == ["run", "family", "size", "P", "Pt", "S", "steps", "F", "C", "T", "UC", "ST", "SC"]
    assert len(runs) == 8 and set(runs["steps"]) == {3, 12}
    assert set(runs["family"]) == {"florence", "gemma"}
    assert (runs["S"] == runs["steps"] * 4).all()
    assert (runs["C"] - runs["S"] * runs["F"] * (1 + runs["Pt"] / runs["P"])).abs().max() < 1e-6 * runs["C"].max()
    assert (runs["Pt"] < runs["P"]).all() and runs[["UC", "ST", "SC", "T"]].gt(0).all().all()
    # T of each size is the untrained model's mean CE over UC and ST
    for size, group in runs.groupby("size"):
        initial = json.loads((study / "results" / "models" / size / "initial_ce.json").read_text())
        assert group["T"].iloc[0] == pytest.approx((initial["UC"] + initial["ST"]) / 2)

    law1 = pd.read_csv(tables / "law1.csv")
    assert list(law1.columns) == ["split", "a0", "a1", "a1_ci_low", "a1_ci_high", "r2", "n_points", "n_frontier"]
    assert list(law1["split"]) == ["UC", "ST", "SC"] and (law1["n_points"] == 8).all()
    law2 = pd.read_csv(tables / "law2.csv")
    assert list(law2.columns) == ["split", "term", "coef", "ci_low", "ci_high", "p", "std_coef", "std_ci_low",
                                  "std_ci_high", "r2"]
    assert set(law2["term"]) == {"intercept", "P", "S", "T"} and len(law2) == 12
    for name in ("runs.md", "law1.md", "law2.md", "models.csv"):
        assert (tables / name).stat().st_size > 0
    assert len(list((study / "results" / "figures").glob("law*_*.png"))) == 6

    downstream = pd.read_csv(tables / "downstream.csv")
    assert list(downstream.columns) == ["run", "stage", "benchmark", "lang", "metric", "value"]
    assert set(downstream["stage"]) == {"pretrained", "finetuned"} and len(set(downstream["run"])) == 4
    assert set(downstream["run"]) == {f"{size}_steps12" for size in runs["size"].unique()}
    assert {"world:xm3600", "world:commute", "world:multi30k", "world:coco_karpathy"} == set(downstream["benchmark"])
    skipped = pd.read_csv(tables / "downstream_skipped.csv")
    assert set(skipped["benchmark"]) == {"multi30k", "multi30k_task2", "coco_karpathy", "xm3600", "commute"}
    assert (study / "results" / "figures" / "downstream.png").stat().st_size > 0

    times = pd.read_csv(tables / "stage_times.csv")
    assert list(times.columns) == ["rule", "jobs", "wall_s", "wall_s_max", "cpu_s", "max_rss_mb"]
    per_rule = times.set_index("rule")
    assert per_rule.loc["train", "jobs"] == 8 and per_rule.loc["downstream_eval", "jobs"] == 8
    assert (times["wall_s"] > 0).all() and per_rule.loc["train", "max_rss_mb"] > 50
    assert list(times["wall_s"]) == sorted(times["wall_s"], reverse=True)

    stats = json.loads((study / "results" / "data" / "shards" / "stats.json").read_text())
    assert stats["images"]["in"] == stats["images"]["out"] + sum(stats["images"]["dropped"].values())
    assert all((study / "results" / "logs" / rule).is_dir() for rule in ("world", "train", "evaluate", "report"))


@pytest.mark.slow
@pytest.mark.e2e
def test_forcerun_reruns_the_rule_and_its_dependents_only(study):
    dry = _snakemake(study, "all", "-n", "--forcerun", "evaluate")
    assert _jobs_of_dry_run(dry.stdout) == {"all": 1, "evaluate": 8, "report": 1, "tables": 1, "stage_times": 1}
    dry = _snakemake(study, "all", "-n", "--forcerun", "test_splits")
    jobs = _jobs_of_dry_run(dry.stdout)
    assert set(jobs) == {"all", "test_splits", "initial_loss", "evaluate", "tables", "report", "stage_times"}
    nothing = _snakemake(study, "all", "-n")
    assert "Nothing to be done" in nothing.stdout + nothing.stderr
