"""Law-1 and law-2 result tables in the column contract of DESIGN.md section 5b."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from ..io import replacing
from .laws import LAW2_TERMS, SPLITS, Law1Fit, Law2Fit, Unfitted, fit_law1, fit_law2

LAW1_COLUMNS = ("split", "a0", "a1", "a1_ci_low", "a1_ci_high", "r2", "n_points", "n_frontier")
LAW2_COLUMNS = ("split", "term", "coef", "ci_low", "ci_high", "p", "std_coef", "std_ci_low", "std_ci_high", "r2")
# Four significant digits: enough to compare with the paper's two-decimal tables, and
# readable for a0 (which refers to C in MACs) and for small p-values alike.
MARKDOWN_FLOAT_FORMAT = ".4g"


def law1_table_from_fits(fits: Iterable[Law1Fit | Unfitted]) -> pd.DataFrame:
    """One row per split; an Unfitted split has NaN estimates beside its counts."""
    rows = [
        {"split": fit.split, **fit.counts}
        if isinstance(fit, Unfitted)
        else {
            "split": fit.split,
            "a0": fit.a0,
            "a1": fit.a1,
            "a1_ci_low": fit.a1_ci[0],
            "a1_ci_high": fit.a1_ci[1],
            "r2": fit.r2,
            "n_points": fit.n_points,
            "n_frontier": fit.n_frontier,
        }
        for fit in fits
    ]
    return pd.DataFrame(rows, columns=list(LAW1_COLUMNS))


def law2_table_from_fits(fits: Iterable[Law2Fit | Unfitted]) -> pd.DataFrame:
    """One row per (split, term); r2 (of the split's fit) repeats on its four rows.

    For the intercept row std_coef is 0 and std_ci_low/high are NaN (see Law2Fit); an
    Unfitted split has NaN in every column but split and term.
    """
    rows = [
        {"split": fit.split, "term": term}
        if isinstance(fit, Unfitted)
        else {
            "split": fit.split,
            "term": term,
            "coef": fit.coef[term],
            "ci_low": fit.ci.at[term, "low"],
            "ci_high": fit.ci.at[term, "high"],
            "p": fit.p[term],
            "std_coef": fit.std_coef[term],
            "std_ci_low": fit.std_ci.at[term, "low"],
            "std_ci_high": fit.std_ci.at[term, "high"],
            "r2": fit.r2,
        }
        for fit in fits
        for term in LAW2_TERMS
    ]
    return pd.DataFrame(rows, columns=list(LAW2_COLUMNS))


def law1_table(df: pd.DataFrame, splits: Sequence[str] = SPLITS) -> pd.DataFrame:
    return law1_table_from_fits(fit_law1(df, split) for split in splits)


def law2_table(df: pd.DataFrame, splits: Sequence[str] = SPLITS) -> pd.DataFrame:
    return law2_table_from_fits(fit_law2(df, split) for split in splits)


def write_table(df: pd.DataFrame, csv_path: str | os.PathLike, notes: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write `df` as CSV (full precision) and as a Markdown twin with the same stem.

    Each of `notes` (e.g. why a law was not fitted) becomes a paragraph below the Markdown
    table; the CSV keeps the bare table for scripts. Each file is replaced atomically.
    Returns (csv_path, md_path).
    """
    csv_path = Path(csv_path)
    md_path = csv_path.with_suffix(".md")
    with replacing(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    with replacing(md_path) as tmp:
        markdown = df.to_markdown(index=False, floatfmt=MARKDOWN_FLOAT_FORMAT)
        tmp.write_text("\n\n".join([markdown, *notes]) + "\n", encoding="utf-8")
    return csv_path, md_path
