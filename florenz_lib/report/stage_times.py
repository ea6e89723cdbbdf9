"""Wall time and peak memory of every job of the run, from Snakemake's `benchmark:` files, per rule.

Snakemake writes one TSV per job (`stage_times/<rule>/<job>.tsv`: s = wall seconds, max_rss in MB,
cpu_time in seconds, measured over the job's process tree). A rerun job overwrites its file, so the
table describes the latest run of every job.
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # report jobs run headless (cluster nodes, CI)

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import pandas as pd  # noqa: E402

from ..io import replacing  # noqa: E402

STAGE_TIME_COLUMNS = ("rule", "jobs", "wall_s", "wall_s_max", "cpu_s", "max_rss_mb")
JOB_COLUMNS = ("rule", "job", "wall_s", "cpu_s", "max_rss_mb")


def job_times(stage_times_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per job benchmark file under stage_times_dir (JOB_COLUMNS)."""
    rows = []
    for path in sorted(Path(stage_times_dir).glob("*/*.tsv")):
        table = pd.read_csv(path, sep="\t")
        missing = {"s", "max_rss", "cpu_time"} - set(table.columns)
        if missing or table.empty:
            raise ValueError(f"{path}: not a Snakemake benchmark file (missing {sorted(missing) or 'rows'})")
        last = table.iloc[-1]  # `repeat(...)` benchmarks have several rows; a plain one has one
        # a job too short to sample reports max_rss as "-"
        rss = pd.to_numeric(pd.Series([last["max_rss"]]), errors="coerce").iloc[0]
        rows.append({"rule": path.parent.name, "job": path.stem, "wall_s": float(last["s"]),
                     "cpu_s": float(last["cpu_time"]), "max_rss_mb": float(rss)})
    return pd.DataFrame(rows, columns=list(JOB_COLUMNS))


def stage_times(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule: job count, total and largest wall seconds, total CPU seconds, largest peak RSS;
    the slowest rule (by total wall time) first."""
    per_rule = jobs.groupby("rule").agg(jobs=("job", "count"), wall_s=("wall_s", "sum"), wall_s_max=("wall_s", "max"),
                                        cpu_s=("cpu_s", "sum"), max_rss_mb=("max_rss_mb", "max")).reset_index()
    return per_rule.sort_values(["wall_s", "rule"], ascending=[False, True]).loc[:, list(STAGE_TIME_COLUMNS)] \
        .reset_index(drop=True)


def plot_stage_times(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Total wall seconds and peak RSS per rule, as horizontal bars."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * len(table) + 1.5), sharey=True)
    axes[0].barh(table["rule"], table["wall_s"], color="tab:blue")
    axes[0].set_xlabel("wall seconds, all jobs of the rule")
    axes[1].barh(table["rule"], table["max_rss_mb"], color="tab:orange")
    axes[1].set_xlabel("largest peak RSS of a job (MB)")
    axes[0].invert_yaxis()
    fig.suptitle("Where the run's time and memory went (Snakemake benchmark files)")
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
