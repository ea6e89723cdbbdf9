# Config validation (before any job runs) and the helpers every rule file uses.
import sys

sys.path.insert(0, workflow.basedir)

from florenz_lib.config import ConfigError, validate_config
from florenz_lib.paths import Layout

try:
    validate_config(config)
except ConfigError as error:
    raise WorkflowError(str(error))

L = Layout(config["results_dir"])
SIZES = list(config["models"]["sizes"])
BUDGETS = config["train"]["steps"]
# GPUs for the model-heavy rules (0 on a laptop; the slurm profile maps this resource to --gpus)
GPUS_PER_JOB = config["cluster"]["gpus_per_job"]


def size_spec(wildcards):
    return config["models"]["sizes"][wildcards.size]


def base_dirs(wildcards):
    """The base checkpoints a study size is restructured from."""
    spec = size_spec(wildcards)
    bases = [L.florence_base(spec["florence"])]
    if spec["family"] == "gemma":
        bases.append(L.gemma_base(spec["gemma"]))
    return bases


wildcard_constraints:
    part="train|heldout",
    size="|".join(SIZES),
    steps=r"\d+",
    base=r"[A-Za-z0-9.-]+",
