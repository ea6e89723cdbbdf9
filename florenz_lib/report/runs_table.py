"""Collect every run's size, budget, counts and CE losses into the runs table (DESIGN.md 5b)."""
from __future__ import annotations

import pandas as pd

from ..io import read_json
from ..models.paper import PAPER_TABLE_COLUMNS as MODELS_COLUMNS
from ..paths import Layout
from .build import RUNS_COLUMNS



def initial_loss_T(initial_ce: dict) -> float:
    """T: the untrained restructured model's CE, mean over UC and ST (the paper's multilinguality measure)."""
    return (initial_ce["UC"] + initial_ce["ST"]) / 2


def runs_table(layout: Layout, sizes: list[str], budgets: list[int], batch_size: int) -> pd.DataFrame:
    rows = []
    for size in sizes:
        stats = read_json(layout.model_stats(size))
        T = initial_loss_T(read_json(layout.initial_ce(size)))
        for steps in budgets:
            ce = read_json(layout.run_ce(size, steps))
            S = steps * batch_size
            C = S * stats["F"] * (1 + stats["Pt"] / stats["P"])  # compute in MACs (DESIGN.md section 1)
            rows.append({"run": layout.run_name(size, steps), "family": stats["family"], "size": size,
                         "P": stats["P"], "Pt": stats["Pt"], "S": S, "steps": steps, "F": stats["F"], "C": C,
                         "T": T, "UC": ce["UC"], "ST": ce["ST"], "SC": ce["SC"]})
    return pd.DataFrame(rows, columns=list(RUNS_COLUMNS))


def models_table(layout: Layout, sizes: list[str]) -> pd.DataFrame:
    rows = [{"model": size, **{k: read_json(layout.model_stats(size))[k] for k in MODELS_COLUMNS[1:]}}
            for size in sizes]
    return pd.DataFrame(rows, columns=MODELS_COLUMNS)
