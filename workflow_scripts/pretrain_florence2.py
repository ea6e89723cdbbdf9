from florenz_lib.workflow import run_stage

run_stage("pretrain-florence2", snakemake)  # noqa: F821 (injected by Snakemake)
