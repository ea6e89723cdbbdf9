from florenz_lib.workflow import run_stage

run_stage("finetune-data", snakemake)  # noqa: F821 (injected by Snakemake)
