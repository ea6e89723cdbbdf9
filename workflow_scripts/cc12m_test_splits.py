from florenz_lib.workflow import run_stage

run_stage("cc12m-test-splits", snakemake)  # noqa: F821 (injected by Snakemake)
