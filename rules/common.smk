# Config validation (before any job runs) and the helpers every rule file uses.
import sys

sys.path.insert(0, workflow.basedir)

from florenz_lib.config import ConfigError, validate_config
from florenz_lib.io import stored_megabytes
from florenz_lib.paths import Layout

try:
    validate_config(config)
except ConfigError as error:
    raise WorkflowError(str(error))

L = Layout(config["results_dir"])
WORLD = config["world"]["name"]
SIZES = list(config["models"]["sizes"])
BUDGETS = config["train"]["steps"]
# GPUs for the model-heavy rules (0 on a laptop; the slurm profile maps this resource to --gpus)
GPUS_PER_JOB = config["cluster"]["gpus_per_job"]


# What `all` builds: the whole study, the same tables in both worlds; the cc12m world also checks that its
# data counts reconcile from the TSV lines to the shard rows.
ALL_TARGETS = [
    L.table(name)
    for name in ("runs.csv", "models.csv", "law1.csv", "law2.csv", "prefix.csv", "downstream.csv", "stage_times.csv")
]
if WORLD == "cc12m":
    ALL_TARGETS.append(L.cc12m_stats())


def size_spec(wildcards):
    return config["models"]["sizes"][wildcards.size]


def base_dirs(wildcards):
    """The base checkpoints a study size is restructured from."""
    spec = size_spec(wildcards)
    bases = [L.florence_base(spec["florence"])]
    if spec["family"] == "gemma":
        bases.append(L.gemma_base(spec["gemma"]))
    return bases


def checkpoint_mem_mb(paths, factor: float) -> int:
    """mem_mb of a job that holds the checkpoints at `paths` in memory about `factor` times (evaluated
    when the job is scheduled, when its inputs exist), plus room for the interpreter and torch."""
    return int(max(4000, factor * stored_megabytes(paths) + 2000))


# Downstream (Table 2): each size's largest-budget run, before and after fine-tuning. The cc12m world
# fine-tunes only when its fine-tuning sources are configured (cc12m.finetune).
MAX_STEPS = max(BUDGETS)
FINETUNES = WORLD == "synthetic" or bool(config["cc12m"].get("finetune"))
DOWNSTREAM_STAGES = ["pretrained", "finetuned"] if FINETUNES else ["pretrained"]


def downstream_model(wildcards):
    if wildcards.stage == "finetuned":
        return [L.finetuned(wildcards.size, "model.safetensors"), L.finetuned(wildcards.size, "config.json")]
    return [L.run(wildcards.size, MAX_STEPS, "model.safetensors"), L.run(wildcards.size, MAX_STEPS, "config.json")]


def finetune_sources(wildcards):
    """The cc12m world's local fine-tuning sources and the translator that fills missing languages; the
    synthetic world renders its mix from the world itself."""
    if WORLD == "synthetic":
        return []
    return [config["cc12m"]["translator"]["model_dir"]] + [
        path for source in config["cc12m"]["finetune"].values() for key, path in source.items() if key != "splits"
    ]


def public_benchmark_paths(wildcards):
    """The configured local copies, so a benchmark added to the config reruns the scoring."""
    return [
        value
        for bench in config["downstream"]["benchmarks"].values()
        if bench
        for key, value in bench.items()
        if key in ("root", "images", "annotations", "captions")
    ]


wildcard_constraints:
    part="train|heldout",
    size="|".join(SIZES),
    steps=r"\d+",
    base=r"[A-Za-z0-9.-]+",
