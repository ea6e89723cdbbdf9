"""Reduced studies: the report fits what the runs identify and says in words why not the rest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_report import SIZES, synthetic_runs

from florenz_lib.report import (
    BOOTSTRAP_COLUMNS,
    CONTRAST_COLUMNS,
    DIAGNOSTIC_COLUMNS,
    EXTRAPOLATION_COLUMNS,
    HOLDOUT_COLUMNS,
    LAW1_COLUMNS,
    LAW2_COLUMNS,
    LAW2_TERMS,
    NotIdentifiable,
    fit_law2,
    write_report,
)

SPLITS = ("UC", "ST", "SC")
LAW2_ANALYSES = {
    "law2_contrasts": CONTRAST_COLUMNS,
    "law2_diagnostics": DIAGNOSTIC_COLUMNS,
    "extrapolation": EXTRAPOLATION_COLUMNS,
    "law2_holdout": HOLDOUT_COLUMNS,
    "law2_bootstrap": BOOTSTRAP_COLUMNS,
}
ESTIMATES = [c for c in LAW2_COLUMNS if c not in ("split", "term")]
# The paper-scale end-to-end world: one size per family (2 sizes), two budgets.
TWO_SIZES = SIZES.iloc[[0, 3]]
TWO_BUDGETS = (500, 10000)


def report(tmp_path, runs: pd.DataFrame) -> dict[str, str]:
    runs_csv = tmp_path / "runs.csv"
    runs.to_csv(runs_csv, index=False)
    return write_report(str(runs_csv), str(tmp_path / "tables"), str(tmp_path / "figures"), bootstrap_samples=50)


def markdown(written: dict[str, str], name: str) -> str:
    with open(written[f"{name}.md"], encoding="utf-8") as f:
        return f.read()


def assert_law2_not_fitted(written: dict[str, str], reason: str) -> None:
    law2 = pd.read_csv(written["law2.csv"])
    assert tuple(law2.columns) == LAW2_COLUMNS
    assert law2[["split", "term"]].values.tolist() == [[s, t] for s in SPLITS for t in LAW2_TERMS]
    assert law2[ESTIMATES].isna().all().all()
    assert reason in markdown(written, "law2")
    for name, columns in LAW2_ANALYSES.items():
        table = pd.read_csv(written[f"{name}.csv"])
        assert tuple(table.columns) == columns and table.empty, name
        assert reason in markdown(written, name), name


def test_two_sizes_two_budgets_fits_law1_and_explains_law2(tmp_path, caplog):
    runs = synthetic_runs(sizes=TWO_SIZES, budget_steps=TWO_BUDGETS)
    with caplog.at_level("WARNING"):
        written = report(tmp_path, runs)

    expected = {f"{t}.{ext}" for t in ("law1", "law2", *LAW2_ANALYSES) for ext in ("csv", "md")}
    assert set(written) == expected | {f"law{n}_{s}.png" for n in (1, 2) for s in SPLITS}
    law1 = pd.read_csv(written["law1.csv"])
    assert tuple(law1.columns) == LAW1_COLUMNS
    assert np.isfinite(law1[["a0", "a1", "r2"]].to_numpy()).all() and (law1["n_points"] == 4).all()
    reason = ("law 2 not identifiable on 4 runs of 2 sizes and 2 budgets: log P and log T are collinear "
              "(rank 3 of 4); run at least 3 sizes")
    assert_law2_not_fitted(written, reason)
    assert reason in caplog.text
    with open(written["law2_UC.png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_two_sizes_stay_rank_deficient_with_more_budgets(tmp_path):
    # 8 runs leave residual degrees of freedom, yet log P and log T still move together.
    runs = synthetic_runs(sizes=TWO_SIZES)
    with pytest.raises(NotIdentifiable, match=r"split UC: .*8 runs of 2 sizes .*collinear \(rank 3 of 4\)"):
        fit_law2(runs, "UC")
    assert_law2_not_fitted(report(tmp_path, runs), "log P and log T are collinear (rank 3 of 4); run at least 3 sizes")


def test_three_sizes_two_budgets_are_fitted_and_holdout_says_why_it_is_empty(tmp_path):
    written = report(tmp_path, synthetic_runs(sizes=SIZES.iloc[[0, 1, 3]], budget_steps=TWO_BUDGETS))
    law2 = pd.read_csv(written["law2.csv"])
    assert np.isfinite(law2[ESTIMATES].drop(columns=["std_ci_low", "std_ci_high"]).to_numpy()).all()
    assert "not identifiable" not in markdown(written, "law2")
    for name in ("law2_contrasts", "law2_diagnostics", "extrapolation", "law2_bootstrap"):
        assert not pd.read_csv(written[f"{name}.csv"]).empty, name
    # Each held-out refit loses a size (2 left) or a budget (1 left): neither identifies law 2.
    assert pd.read_csv(written["law2_holdout.csv"]).empty
    holdout = markdown(written, "law2_holdout")
    assert "largest_size not refitted: law 2 not identifiable on 4 runs of 2 sizes" in holdout
    assert ("largest_budget not refitted: law 2 not identifiable on 3 runs of 3 sizes and 1 budget: "
            "log S is constant") in holdout


def test_near_collinear_full_rank_design_is_fitted_and_flagged(tmp_path):
    # log T is affine in log P up to ~1e-3: badly conditioned but of full rank, so OLS is
    # unique and the VIF diagnostics, not the rank check, are the place to warn.
    sizes = SIZES.assign(T=SIZES["P"] ** 0.1 * np.array([1.0, 1.002, 0.999, 1.001]))
    written = report(tmp_path, synthetic_runs(sizes=sizes))
    law2 = pd.read_csv(written["law2.csv"])
    assert np.isfinite(law2.loc[law2["term"] != "intercept", ESTIMATES].to_numpy()).all()
    vif = pd.read_csv(written["law2_diagnostics.csv"]).query("diagnostic == 'vif' and term in ['P', 'T']")
    assert (vif["statistic"] > 1e3).all() and vif["note"].str.startswith("VIF > 10").all()

    exact = synthetic_runs(sizes=SIZES.assign(T=SIZES["P"] ** 0.1))
    with pytest.raises(NotIdentifiable, match=r"log P and log T are collinear"):
        fit_law2(exact, "UC")


def test_law1_with_a_one_point_frontier_is_nan_with_its_reason(tmp_path):
    # The cheapest run also has the lowest UC loss: the frontier is that single run.
    runs = synthetic_runs()
    runs.loc[runs["C"].idxmin(), "UC"] = runs["UC"].min() / 2
    written = report(tmp_path, runs)
    law1 = pd.read_csv(written["law1.csv"]).set_index("split")
    assert law1.loc["UC", ["a0", "a1", "a1_ci_low", "a1_ci_high", "r2"]].isna().all()
    assert law1.loc["UC", ["n_points", "n_frontier"]].tolist() == [16, 1]
    assert np.isfinite(law1.loc[["ST", "SC"], ["a0", "a1", "r2"]].to_numpy()).all()
    law1_md = markdown(written, "law1")
    assert "law 1 not identifiable for split UC: the Pareto frontier of 16 runs has 1 point" in law1_md
    # Law 2 does not depend on the frontier: still fitted on all 16 runs.
    assert pd.read_csv(written["law2.csv"])["coef"].notna().all()
