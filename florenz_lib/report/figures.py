"""Figure 2 and Figure 3 analogues: law 1 against compute, law 2 against model size."""

from __future__ import annotations

import itertools
import os
import textwrap

import matplotlib

matplotlib.use("Agg")  # report jobs run headless (cluster nodes, CI)

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import matplotlib.ticker as mticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from ..io import replacing  # noqa: E402
from .laws import Law1Fit, Law2Fit, Unfitted  # noqa: E402

FAMILY_MARKERS = {"florence": "o", "gemma": "s"}
_OTHER_MARKERS = ("^", "D", "v", "P", "X")


def _family_markers(families) -> dict[str, str]:
    """Fixed markers for the known families, then distinct ones for any others."""
    others = itertools.cycle(_OTHER_MARKERS)
    return {f: FAMILY_MARKERS[f] if f in FAMILY_MARKERS else next(others) for f in sorted(set(families))}


def _size_colours(df: pd.DataFrame) -> dict:
    """One colour per model size, ordered by parameter count (smallest darkest)."""
    sizes = df.groupby("size", sort=False)["P"].mean().sort_values().index
    cmap = plt.get_cmap("viridis")
    return {size: cmap(i / max(len(sizes) - 1, 1)) for i, size in enumerate(sizes)}


def _finish_log_log_axes(ax, handles, xlabel: str, split: str, title: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    # Losses span less than a decade: plain numbers read better than 4x10^0 labels.
    ax.yaxis.set_major_formatter(mticker.FormatStrFormatter("%.3g"))
    ax.yaxis.set_minor_formatter(mticker.FormatStrFormatter("%.3g"))
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{split} test CE loss")
    ax.set_title(title)
    # Outside the axes: with few runs any inside corner may hide points.
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _save(fig, path: str | os.PathLike) -> None:
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
    plt.close(fig)


def _scatter_runs(ax, df: pd.DataFrame, x: str, split: str) -> list[Line2D]:
    """Each run at (df[x], its loss), marker by family and colour by size; returns the legend handles."""
    markers = _family_markers(df["family"])
    colours = _size_colours(df)
    for (family, size), runs in df.groupby(["family", "size"], sort=False):
        ax.scatter(runs[x], runs[split], marker=markers[family], color=colours[size], s=36, zorder=3)
    handles = [Line2D([], [], ls="", marker=m, color="0.3", label=f) for f, m in markers.items()]
    return handles + [Line2D([], [], ls="", marker="o", color=c, label=str(s)) for s, c in colours.items()]


def _plot_unfitted(df: pd.DataFrame, fit: Unfitted, law: int, x: str, xlabel: str, path: str | os.PathLike) -> None:
    """The runs against df[x] with the reason in a text box where the fitted law would be."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    handles = _scatter_runs(ax, df, x, fit.split)
    # Below the legend, outside the axes: inside, any spot may hide runs.
    ax.text(1.02, 0.0, textwrap.fill(fit.reason, 34), transform=ax.transAxes, ha="left", va="bottom", fontsize=7,
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.5"})
    _finish_log_log_axes(ax, handles, xlabel, fit.split, f"Law {law}, {fit.split}: not fitted")
    _save(fig, path)


def plot_law1(df: pd.DataFrame, fit: Law1Fit | Unfitted, path: str | os.PathLike) -> None:
    """All runs (marker by family, colour by size), the frontier staircase and the fitted law.

    An Unfitted law 1 shows the runs and its reason instead of the frontier and the law.
    """
    if isinstance(fit, Unfitted):
        _plot_unfitted(df, fit, 1, "C", "training compute C (MACs)", path)
        return
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    run_handles = _scatter_runs(ax, df, "C", fit.split)

    frontier = df.loc[fit.frontier_mask].sort_values("C")
    ax.step(frontier["C"], frontier[fit.split], where="post", color="0.6", lw=1.5, zorder=2)

    C_line = np.geomspace(df["C"].min(), df["C"].max(), 100)
    ax.plot(C_line, fit.predict(C_line), color="C3", lw=1.5, zorder=4)

    handles = [
        Line2D([], [], color="0.6", lw=1.5, label=f"Pareto frontier ({fit.n_frontier} runs)"),
        Line2D([], [], color="C3", lw=1.5, label=f"fit: a1 = {fit.a1:.3f}, $R^2$ = {fit.r2:.2f}"),
        *run_handles,
    ]
    _finish_log_log_axes(ax, handles, "training compute C (MACs)", fit.split, f"Law 1, {fit.split}: y = a0 C^a1")
    _save(fig, path)


def family_T_values(df: pd.DataFrame) -> dict[str, float]:
    """Per family, the geometric mean of its models' initial loss T (the paper's Figure 3 lines)."""
    logs = np.log10(df["T"]).groupby(df["family"]).mean()
    return {f"{family} T = {10.0**v:.3g}": float(10.0**v) for family, v in logs.sort_values(ascending=False).items()}


def _law2_S_panel(ax, df: pd.DataFrame, fit: Law2Fit) -> None:
    S_levels = np.sort(df["S"].unique())
    cmap = plt.get_cmap("plasma")
    colours = {S: cmap(0.85 * i / max(len(S_levels) - 1, 1)) for i, S in enumerate(S_levels)}
    T_mean = 10.0 ** fit.log_data["log_T"].mean()
    P_line = np.geomspace(df["P"].min(), df["P"].max(), 100)

    for S in S_levels:
        runs = df[df["S"] == S]
        adjusted = runs[fit.split] * (T_mean / runs["T"]) ** fit.coef["T"]
        ax.scatter(runs["P"], runs[fit.split], facecolors="none", edgecolors=colours[S], s=30, zorder=3)
        ax.scatter(runs["P"], adjusted, color=colours[S], s=30, zorder=3)
        ax.plot(P_line, fit.predict(P_line, S, T_mean), color=colours[S], lw=1.5)

    handles = [Line2D([], [], color=c, lw=1.5, marker="o", label=f"S = {S:.3g}") for S, c in colours.items()]
    handles += [
        Line2D([], [], ls="", marker="o", mfc="none", color="0.3", label="observed"),
        Line2D([], [], ls="", marker="o", color="0.3", label=f"adjusted to T = {T_mean:.3g}"),
        Line2D([], [], ls="", label=f"$R^2$ = {fit.r2:.2f}"),
    ]
    _finish_log_log_axes(ax, handles, "parameters P", fit.split, f"Law 2, {fit.split}: y = b0 P^b1 S^b2 T^b3")


_T_LINESTYLES = (":", "--", "-", "-.")


def _law2_T_panel(ax, df: pd.DataFrame, fit: Law2Fit, T_values: dict[str, float], P_extend: float) -> None:
    """Figure 3 analogue: one line per (S, T); the largest S orange, smaller S lighter greys."""
    S_levels = np.sort(df["S"].unique())
    greys = {S: str(0.75 - 0.5 * i / max(len(S_levels) - 1, 1)) for i, S in enumerate(S_levels[:-1])}
    colours = {**greys, S_levels[-1]: "C1"}
    markers = _family_markers(df["family"])
    P_line = np.geomspace(df["P"].min(), df["P"].max() * P_extend, 100)

    styles = dict(zip(T_values, itertools.cycle(_T_LINESTYLES)))
    for label, T in T_values.items():
        for S in S_levels:
            ax.plot(P_line, fit.predict(P_line, S, T), color=colours[S], ls=styles[label],
                    lw=1.8 if S == S_levels[-1] else 1.1, zorder=2 if S != S_levels[-1] else 3)
    for (family, S), runs in df.groupby(["family", "S"], sort=False):
        ax.scatter(runs["P"], runs[fit.split], marker=markers[family], color=colours[S], edgecolors="0.2",
                   linewidths=0.5, s=30, zorder=4)
    ax.axvline(df["P"].max(), color="0.85", lw=0.8, zorder=1)

    handles = [Line2D([], [], color="0.3", ls=styles[label], label=label) for label in T_values]
    handles += [Line2D([], [], color=colours[S], lw=1.5, label=f"S = {S:.3g}") for S in S_levels]
    handles += [Line2D([], [], ls="", marker=m, color="0.3", label=f) for f, m in markers.items()]
    _finish_log_log_axes(ax, handles, "parameters P (right of the grey line: extrapolated)", fit.split,
                         f"Law 2, {fit.split}: lines per S and T")


def plot_law2(
    df: pd.DataFrame,
    fit: Law2Fit | Unfitted,
    path: str | os.PathLike,
    T_values: dict[str, float] | None = None,
    P_extend: float = 10.0,
) -> None:
    """Loss against P in two panels.

    Left: law 2 as one line per seen-sample count S. Lines are drawn at the geometric mean
    of T (the mean of log10 T, the scale law 2 is linear in). Because T differs between
    sizes, each run is shown twice: hollow at its observed loss, and filled at its loss
    adjusted to that T by the fitted T exponent, y * (T_mean / T)^b3; the filled points are
    the ones the lines should pass through.

    Right (the paper's Figure 3): lines for every S at each chosen T (`T_values`, label ->
    T; default one per family, the geometric mean of its models' T), line style by T, the
    largest S in orange and smaller ones in lighter greys, with the observed runs; P runs to
    `P_extend` times the largest observed P to show the extrapolation.

    An Unfitted law 2 is one panel instead: the runs against P and the reason.
    """
    if isinstance(fit, Unfitted):
        _plot_unfitted(df, fit, 2, "P", "parameters P", path)
        return
    if T_values is None:
        T_values = family_T_values(df)
    fig, (ax_S, ax_T) = plt.subplots(1, 2, figsize=(12.5, 4.4))
    _law2_S_panel(ax_S, df, fit)
    _law2_T_panel(ax_T, df, fit, T_values, P_extend)
    fig.subplots_adjust(wspace=0.75)
    _save(fig, path)
