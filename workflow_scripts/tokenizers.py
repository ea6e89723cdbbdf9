from florenz_lib.workflow import run_stage

run_stage("tokenizers", snakemake)  # noqa: F821 (injected by Snakemake)
