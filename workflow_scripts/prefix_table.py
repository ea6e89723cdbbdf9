from florenz_lib.workflow import run_stage

run_stage("prefix-table", snakemake)  # noqa: F821 (injected by Snakemake)
