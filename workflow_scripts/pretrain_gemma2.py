from florenz_lib.workflow import run_stage

run_stage("pretrain-gemma2", snakemake)  # noqa: F821 (injected by Snakemake)
