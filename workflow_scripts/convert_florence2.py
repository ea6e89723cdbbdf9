from florenz_lib.workflow import run_stage

run_stage("convert-florence2", snakemake)  # noqa: F821 (injected by Snakemake)
