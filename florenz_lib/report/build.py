"""Report entry point: runs table in, law tables and figures out (no DAG needed)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .figures import plot_law1, plot_law2
from .laws import SPLITS, fit_law1, fit_law2
from .tables import law1_table_from_fits, law2_table_from_fits, write_table

log = logging.getLogger(__name__)

RUNS_COLUMNS = ("run", "family", "size", "P", "Pt", "S", "steps", "F", "C", "T", "UC", "ST", "SC")
# Columns that enter a logarithm in the fits (losses are checked per fitted split).
LOG_SCALE_COLUMNS = ("P", "S", "T", "C")


def read_runs_table(runs_csv: str, splits: Sequence[str] = SPLITS) -> pd.DataFrame:
    """Read and validate the runs table (DESIGN.md 5b).

    Raises ValueError naming the missing columns, or the first column and run whose value
    is not a finite positive number among P, S, T, C and the losses of `splits`.
    """
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; expected a subset of {list(SPLITS)}")
    runs = pd.read_csv(runs_csv)
    missing = [c for c in RUNS_COLUMNS if c not in runs.columns]
    if missing:
        raise ValueError(f"{runs_csv}: missing column(s) {missing}; expected {list(RUNS_COLUMNS)}")
    extra = [c for c in runs.columns if c not in RUNS_COLUMNS]
    if extra:
        log.warning("%s: ignoring column(s) outside the runs-table contract: %s", runs_csv, extra)
    for column in (*LOG_SCALE_COLUMNS, *splits):
        values = pd.to_numeric(runs[column], errors="coerce").to_numpy(dtype=float)
        bad = ~(np.isfinite(values) & (values > 0))
        if bad.any():
            run = runs["run"].iloc[int(np.argmax(bad))]
            value = runs[column].iloc[int(np.argmax(bad))]
            raise ValueError(
                f"{runs_csv}: column {column} must be finite and > 0 (it is log-transformed), "
                f"got {value!r} for run {run!r} ({int(bad.sum())} bad row(s) in all)"
            )
        runs[column] = values
    return runs[list(RUNS_COLUMNS)]


def write_report(
    runs_csv: str, tables_dir: str, figures_dir: str, splits: Sequence[str] = SPLITS
) -> dict[str, str]:
    """Fit both laws per split and write the tables and figures.

    Writes tables_dir/law1.{csv,md}, tables_dir/law2.{csv,md}, and per split
    figures_dir/law1_{split}.png and figures_dir/law2_{split}.png. Returns a dict from each
    written file's name (e.g. "law1.csv", "law2_UC.png") to its path.
    """
    runs = read_runs_table(runs_csv, splits)
    log.info("read %d runs from %s", len(runs), runs_csv)
    tables_dir, figures_dir = Path(tables_dir), Path(figures_dir)
    written: dict[str, str] = {}

    law1_fits, law2_fits = [], []
    for split in splits:
        law1, law2 = fit_law1(runs, split), fit_law2(runs, split)
        log.info(
            "%s: law 1 a1=%.4f r2=%.3f on %d/%d frontier runs; law 2 r2=%.3f",
            split, law1.a1, law1.r2, law1.n_frontier, law1.n_points, law2.r2,
        )
        law1_fits.append(law1)
        law2_fits.append(law2)
        for name, plot, fit in (("law1", plot_law1, law1), ("law2", plot_law2, law2)):
            path = figures_dir / f"{name}_{split}.png"
            plot(runs, fit, path)
            written[path.name] = str(path)

    for name, table in (("law1", law1_table_from_fits(law1_fits)), ("law2", law2_table_from_fits(law2_fits))):
        for path in write_table(table, tables_dir / f"{name}.csv"):
            written[path.name] = str(path)
    log.info("wrote %d report files to %s and %s", len(written), tables_dir, figures_dir)
    return written
