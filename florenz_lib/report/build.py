"""Report entry point: runs table in, law tables and figures out (no DAG needed)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .analysis import (
    PAPER_TARGET,
    check_targets,
    extrapolation_table,
    holdout_masks,
    law2_bootstrap,
    law2_contrasts,
    law2_diagnostics,
    law2_holdout,
)
from .figures import family_T_values, plot_law1, plot_law2
from .laws import (
    SPLITS,
    Law2Fit,
    NotIdentifiable,
    Unfitted,
    fit_law1,
    fit_law2,
    law2_identification_problem,
    pareto_frontier,
)
from .tables import law1_table_from_fits, law2_table_from_fits, write_table

log = logging.getLogger(__name__)

RUNS_COLUMNS = ("run", "family", "size", "P", "Pt", "S", "steps", "F", "C", "T", "UC", "ST", "SC")
# Columns that enter a logarithm in the fits (losses are checked per fitted split).
LOG_SCALE_COLUMNS = ("P", "S", "T", "C")


def read_runs_table(runs_csv: str, splits: Sequence[str] = SPLITS) -> pd.DataFrame:
    """Read and validate the runs table (DESIGN.md 5b).

    Raises ValueError naming the missing columns, the first column and run whose value is
    not a finite positive number among P, S, T, C and the losses of `splits`, or a table
    without runs. Whether the runs can identify the laws is the fits' business.
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
            value = value.item() if isinstance(value, np.generic) else value  # nan, not np.float64(nan)
            raise ValueError(
                f"{runs_csv}: column {column} must be finite and > 0 (it is log-transformed), "
                f"got {value!r} for run {run!r} ({int(bad.sum())} bad row(s) in all)"
            )
        runs[column] = values
    if runs.empty:
        raise ValueError(f"{runs_csv}: no runs")
    return runs[list(RUNS_COLUMNS)]


def write_report(
    runs_csv: str,
    tables_dir: str,
    figures_dir: str,
    splits: Sequence[str] = SPLITS,
    targets: Sequence[Mapping[str, float]] = (PAPER_TARGET,),
    bootstrap_samples: int = 1000,
    seed: int = 0,
) -> dict[str, str]:
    """Fit both laws per split and write every table and figure; no DAG needed.

    Tables (each CSV with a Markdown twin) in tables_dir: law1, law2 (the DESIGN.md 5b
    contract), law2_contrasts (b1-b2, b3+b2, b3+b1), law2_diagnostics (normality,
    heteroscedasticity, VIF), extrapolation (95% prediction intervals at `targets`, each a
    mapping with P, S, T), law2_holdout (refits without the largest size and without the
    largest budget) and law2_bootstrap (`bootstrap_samples` case resamples drawn with
    `seed`). Figures per split in figures_dir: law1_{split}.png and law2_{split}.png (the
    latter with lines for the families' T and the targets' T). Returns a dict from each
    written file's name (e.g. "law1.csv", "law2_UC.png") to its path.

    A reduced study still gets every file. Where a law is not identifiable (law 1: fewer
    than 2 frontier points; law 2: see law2_identification_problem, the same for every
    split), law1.csv / law2.csv hold NaN estimates for the split, every law-2 analysis table
    has its columns and no rows, the figure shows the runs and the reason, and the reason
    is logged and written below the Markdown tables. The same goes for a held-out refit.
    """
    targets = check_targets(targets)
    runs = read_runs_table(runs_csv, splits)
    log.info("read %d runs from %s", len(runs), runs_csv)
    tables_dir, figures_dir = Path(tables_dir), Path(figures_dir)
    written: dict[str, str] = {}

    T_lines = family_T_values(runs)
    for T in sorted({t["T"] for t in targets}, reverse=True):
        T_lines.setdefault(f"target T = {T:.3g}", T)

    law2_problem = law2_identification_problem(runs)
    if law2_problem:
        log.warning("%s; the law-2 tables have no estimates", law2_problem)
    law1_fits, law2_fits = [], []
    for split in splits:
        try:
            law1 = fit_law1(runs, split)
            log.info("%s: law 1 a1=%.4f r2=%.3f on %d/%d frontier runs", split, law1.a1, law1.r2,
                     law1.n_frontier, law1.n_points)
        except NotIdentifiable as error:
            log.warning("%s", error)
            n_frontier = int(pareto_frontier(runs["C"], runs[split]).sum())
            law1 = Unfitted(split, str(error), {"n_points": len(runs), "n_frontier": n_frontier})
        if law2_problem:
            law2 = Unfitted(split, law2_problem)
        else:
            law2 = fit_law2(runs, split)
            log.info("%s: law 2 r2=%.3f", split, law2.r2)
        law1_fits.append(law1)
        law2_fits.append(law2)
        path = figures_dir / f"law1_{split}.png"
        plot_law1(runs, law1, path)
        written[path.name] = str(path)
        path = figures_dir / f"law2_{split}.png"
        plot_law2(runs, law2, path, T_values=T_lines)
        written[path.name] = str(path)

    # Law 2 is fitted for every split or for none (identifiability does not depend on it).
    fitted = [fit for fit in law2_fits if isinstance(fit, Law2Fit)]
    tables = {
        "law1": law1_table_from_fits(law1_fits),
        "law2": law2_table_from_fits(law2_fits),
        "law2_contrasts": law2_contrasts(fitted),
        "law2_diagnostics": law2_diagnostics(fitted),
        "extrapolation": extrapolation_table(fitted, targets),
        "law2_holdout": law2_holdout(runs, [fit.split for fit in fitted]),
        "law2_bootstrap": law2_bootstrap(runs, fitted, bootstrap_samples, seed),
    }
    notes = {"law1": [fit.reason for fit in law1_fits if isinstance(fit, Unfitted)]}
    if law2_problem:
        notes.update({name: [law2_problem] for name in tables if name != "law1"})
    else:
        notes["law2_holdout"] = [
            f"{held_out} not refitted: {problem}"
            for held_out, mask in holdout_masks(runs).items()
            if (problem := law2_identification_problem(runs.loc[~mask]))
        ]
    for name, table in tables.items():
        for path in write_table(table, tables_dir / f"{name}.csv", notes.get(name, ())):
            written[path.name] = str(path)
    log.info("wrote %d report files to %s and %s", len(written), tables_dir, figures_dir)
    return written
