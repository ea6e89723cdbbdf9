from florenz_lib.workflow import run_stage

run_stage("stage-times", snakemake)  # noqa: F821 (injected by Snakemake)
