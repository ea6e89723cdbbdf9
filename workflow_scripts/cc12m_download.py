from florenz_lib.workflow import run_stage

run_stage("cc12m-download", snakemake)  # noqa: F821 (injected by Snakemake)
