from florenz_lib.workflow import run_stage

run_stage("downstream-table", snakemake)  # noqa: F821 (injected by Snakemake)
