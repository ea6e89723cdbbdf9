"""The Table 2 analogue (DESIGN.md 5b: run, stage, benchmark, lang, metric, value), the benchmarks
that were skipped, and a figure of every metric before and after fine-tuning."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # report jobs run headless (cluster nodes, CI)

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..io import read_json, replacing  # noqa: E402

DOWNSTREAM_COLUMNS = ("run", "stage", "benchmark", "lang", "metric", "value")
SKIPPED_COLUMNS = ("benchmark", "reason")
STAGES = ("pretrained", "finetuned")


def downstream_results(paths: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(downstream table, skipped benchmarks) from the downstream json of every run and stage."""
    rows, skipped = [], {}
    for path in paths:
        record = read_json(path)
        rows += [{"run": record["run"], "stage": record["stage"], **{k: r[k] for k in DOWNSTREAM_COLUMNS[2:]}}
                 for r in record["results"]]
        skipped.update({s["benchmark"]: s["reason"] for s in record["skipped"]})
    return (pd.DataFrame(rows, columns=list(DOWNSTREAM_COLUMNS)),
            pd.DataFrame(sorted(skipped.items()), columns=list(SKIPPED_COLUMNS)))


def plot_downstream(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """One panel per (benchmark, metric): the value per language, pretrained (light) against
    fine-tuned (dark) bars, one group per run."""
    panels = list(dict.fromkeys(zip(table["benchmark"], table["metric"])))
    runs = list(dict.fromkeys(table["run"]))
    cmap = plt.get_cmap("viridis")
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 3.6 * nrows), squeeze=False)
    width = 0.8 / (2 * len(runs))
    for ax, (benchmark, metric) in zip(axes.flat, panels):
        part = table[(table["benchmark"] == benchmark) & (table["metric"] == metric)]
        langs = list(dict.fromkeys(part["lang"]))
        x = np.arange(len(langs))
        for i, run in enumerate(runs):
            for j, stage in enumerate(STAGES):
                values = (part[(part["run"] == run) & (part["stage"] == stage)].set_index("lang")["value"]
                          .reindex(langs))
                colour = cmap(i / max(len(runs) - 1, 1))
                ax.bar(x + (2 * i + j) * width - 0.4 + width / 2, values, width, color=colour,
                       alpha=0.45 if stage == "pretrained" else 1.0, label=f"{run} {stage}")
        ax.set_xticks(x, langs)
        ax.set_title(f"{benchmark} {metric}", fontsize=9)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6, loc="upper left", bbox_to_anchor=(0.0, -0.15), ncol=2)
    fig.suptitle("Downstream benchmarks before (light) and after (dark) fine-tuning")
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
