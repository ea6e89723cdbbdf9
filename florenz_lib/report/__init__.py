"""Scaling-law report: law 1 and law 2 fits, tables and figures from a runs table."""

from .analysis import (
    BOOTSTRAP_COLUMNS,
    CONTRAST_COLUMNS,
    DIAGNOSTIC_COLUMNS,
    EXTRAPOLATION_COLUMNS,
    HOLDOUT_COLUMNS,
    PAPER_TARGET,
    extrapolation_table,
    law2_bootstrap,
    law2_contrasts,
    law2_diagnostics,
    law2_holdout,
)
from .build import RUNS_COLUMNS, read_runs_table, write_report
from .figures import plot_law1, plot_law2
from .laws import LAW2_TERMS, SPLITS, Law1Fit, Law2Fit, fit_law1, fit_law2, pareto_frontier
from .tables import (
    LAW1_COLUMNS,
    LAW2_COLUMNS,
    law1_table,
    law1_table_from_fits,
    law2_table,
    law2_table_from_fits,
    write_table,
)

__all__ = [
    "BOOTSTRAP_COLUMNS",
    "CONTRAST_COLUMNS",
    "DIAGNOSTIC_COLUMNS",
    "EXTRAPOLATION_COLUMNS",
    "HOLDOUT_COLUMNS",
    "PAPER_TARGET",
    "extrapolation_table",
    "law2_bootstrap",
    "law2_contrasts",
    "law2_diagnostics",
    "law2_holdout",
    "LAW1_COLUMNS",
    "LAW2_COLUMNS",
    "LAW2_TERMS",
    "RUNS_COLUMNS",
    "SPLITS",
    "Law1Fit",
    "Law2Fit",
    "fit_law1",
    "fit_law2",
    "law1_table",
    "law1_table_from_fits",
    "law2_table",
    "law2_table_from_fits",
    "pareto_frontier",
    "plot_law1",
    "plot_law2",
    "read_runs_table",
    "write_report",
    "write_table",
]
