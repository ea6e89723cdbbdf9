"""The prefix table (DESIGN.md 5b: run, lang, prefix, target_lang_share, cider) and the Figure 4
analogue: zero-shot captioning in the unseen languages with and without a language prefix."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # report jobs run headless (cluster nodes, CI)

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import matplotlib.ticker as mticker  # noqa: E402
import pandas as pd  # noqa: E402

from ..evaluate.prefix import MODES, unseen_langs  # noqa: E402
from ..io import read_json, replacing  # noqa: E402
from ..paths import Layout  # noqa: E402

PREFIX_COLUMNS = ("run", "lang", "prefix", "target_lang_share", "cider")


def prefix_results(layout: Layout, sizes: list[str], budgets: list[int]) -> pd.DataFrame:
    """Every run's prefix.json rows, with the run's size and steps: PREFIX_COLUMNS + size, steps."""
    rows = []
    for size in sizes:
        for steps in budgets:
            run = layout.run_name(size, steps)
            for r in read_json(layout.run_prefix(size, steps))["results"]:
                rows.append({"run": run, "lang": r["lang"], "prefix": r["prefix"],
                             "target_lang_share": r["target_lang_share"], "cider": r["cider"],
                             "size": size, "steps": int(steps)})
    return pd.DataFrame(rows, columns=[*PREFIX_COLUMNS, "size", "steps"])


def prefix_table(results: pd.DataFrame) -> pd.DataFrame:
    return results.loc[:, list(PREFIX_COLUMNS)].reset_index(drop=True)


def unseen_means(results: pd.DataFrame) -> pd.DataFrame:
    """Per (size, steps, prefix): mean target-language share and CIDEr over the unseen languages."""
    unseen = results[results["lang"].isin(unseen_langs(results["lang"].unique()))]
    return (unseen.groupby(["size", "steps", "prefix"], sort=False)[["target_lang_share", "cider"]]
            .mean().reset_index())


def plot_prefix(results: pd.DataFrame, path: str | os.PathLike) -> None:
    """Two panels (target-language share, CIDEr), mean over the unseen languages against the training
    budget; one colour per size, solid with prefix, dashed without."""
    means = unseen_means(results)
    langs = ", ".join(unseen_langs(results["lang"].unique()))
    sizes = list(dict.fromkeys(results["size"]))
    cmap = plt.get_cmap("viridis")
    colours = {size: cmap(i / max(len(sizes) - 1, 1)) for i, size in enumerate(sizes)}
    styles = {"yes": ("-", "o", "with prefix"), "no": ("--", "x", "without prefix")}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    budgets = sorted(means["steps"].unique())
    for ax, column, label in ((axes[0], "target_lang_share", "share of captions in the target language"),
                              (axes[1], "cider", "CIDEr")):
        for size in sizes:
            for mode in MODES:
                line = means[(means["size"] == size) & (means["prefix"] == mode)].sort_values("steps")
                ls, marker, _ = styles[mode]
                ax.plot(line["steps"], line[column], ls=ls, marker=marker, color=colours[size],
                        label=f"{size}, {styles[mode][2]}")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(mticker.FixedLocator(budgets))
        ax.xaxis.set_major_formatter(mticker.FixedFormatter([str(b) for b in budgets]))
        ax.xaxis.set_minor_locator(mticker.NullLocator())
        ax.set_xlabel("training steps (budget)")
        ax.set_ylabel(label)
        if column == "target_lang_share":
            ax.set_ylim(-0.03, 1.03)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.suptitle(f"Zero-shot captioning with and without a language prefix (mean over the unseen {langs})")
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
    plt.close(fig)
