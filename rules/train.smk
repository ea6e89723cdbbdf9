# Train: one job per (size, budget), each budget with its own warmup + cosine schedule.
# A job is `torchrun --nproc_per_node N -m florenz_lib train ...` (as python -m torch.distributed.run):
# N = the job's gpu resource (one process on CPU when gpu=0), DDP across them, FSDP for the sizes in
# train.fsdp_sizes. A job that died resumes from its last checkpoint (train.checkpoint_every).
import yaml
from snakemake.settings.types import DeploymentMethod

# The stage reads the study config from a file: Snakemake's merged config (config.yaml, every
# --configfile and --config), written by the study_config rule. Trains take it as ancient input,
# so, as for every other rule, editing the config does not by itself retrain finished runs.
STUDY_CONFIG = os.path.join(config["results_dir"], "config.yaml")
# Shell jobs run the Python that runs Snakemake, as script jobs do; under --use-conda the `python`
# of the job's environment.
PYTHON = (
    "python"
    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    else sys.executable
)
if set(config["train"].get("fsdp_sizes", [])) - set(SIZES):
    raise WorkflowError(
        f"config key 'train.fsdp_sizes': {sorted(set(config['train']['fsdp_sizes']) - set(SIZES))} "
        f"are not study sizes {SIZES}"
    )


localrules:
    study_config,


rule study_config:
    output:
        STUDY_CONFIG,
    params:
        config=yaml.safe_dump(config, sort_keys=False),
    conda:
        "../envs/train.yaml"
    log:
        L.log("study_config"),
    threads: 1
    resources:
        mem_mb=100,
        runtime=1,
    shell:
        "printf '%s' {params.config:q} > {output} 2> {log}"


rule train:
    input:
        rules.restructure.output,
        rules.shards.output,
        rules.tokenizers.output,
        config=ancient(STUDY_CONFIG),
    output:
        weights=L.run("{size}", "{steps}", "model.safetensors"),
        config=L.run("{size}", "{steps}", "config.json"),
        train_log=L.run("{size}", "{steps}", "train_log.csv"),
        summary=L.run("{size}", "{steps}", "train_summary.json"),
    params:
        python=PYTHON,
    conda:
        "../envs/train.yaml"
    log:
        L.log("train", "{size}_steps{steps}"),
    benchmark:
        L.stage_time("train", "{size}_steps{steps}"),
    threads: config["train"]["threads"] * max(1, GPUS_PER_JOB)
    resources:
        # every process of the job holds the whole restructured model (and the trainable part's optimizer)
        mem_mb=lambda wildcards: checkpoint_mem_mb(L.init_model(wildcards.size), 1.5 * max(1, GPUS_PER_JOB)),
        runtime=config["train"]["runtime_minutes"],
        gpu=GPUS_PER_JOB,
        cpus_per_gpu=config["train"]["threads"],
    shell:
        "{params.python:q} -m torch.distributed.run --standalone --nnodes 1"
        " --nproc_per_node $(( {resources.gpu} > 0 ? {resources.gpu} : 1 ))"
        " -m florenz_lib train --configfile {input.config:q}"
        " --size {wildcards.size} --steps {wildcards.steps} > {log:q} 2>&1"
