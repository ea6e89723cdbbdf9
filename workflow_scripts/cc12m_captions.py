from florenz_lib.workflow import run_stage

run_stage("cc12m-captions", snakemake)  # noqa: F821 (injected by Snakemake)
