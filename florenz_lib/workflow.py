"""Entry point of the workflow_scripts adapters: run one stage for a Snakemake job."""
from __future__ import annotations

from .logs import logged
from .pipeline import STAGES


def run_stage(name: str, snakemake) -> None:
    stage = STAGES[name]
    kwargs = {w: snakemake.wildcards[w] for w in stage.wildcards}
    if stage.takes_threads:
        kwargs["threads"] = snakemake.threads
    with logged(snakemake.log[0]):
        stage.run(snakemake.config, **kwargs)
