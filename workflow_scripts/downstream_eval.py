from florenz_lib.workflow import run_stage

run_stage("downstream-eval", snakemake)  # noqa: F821 (injected by Snakemake)
