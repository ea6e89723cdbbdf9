from florenz_lib.workflow import run_stage

run_stage("models", snakemake)  # noqa: F821 (injected by Snakemake)
