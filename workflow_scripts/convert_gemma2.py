from florenz_lib.workflow import run_stage

run_stage("convert-gemma2", snakemake)  # noqa: F821 (injected by Snakemake)
