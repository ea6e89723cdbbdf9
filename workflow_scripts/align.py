from florenz_lib.workflow import run_stage

run_stage("align", snakemake)  # noqa: F821 (injected by Snakemake)
