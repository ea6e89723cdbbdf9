"""Tests of the law-2 analysis tables: prediction intervals, contrasts, diagnostics,
held-out refits, bootstrap, and the runs-table and config checks behind them."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import yaml
from scipy import stats
from test_report import LAW2_TRUTH, synthetic_runs

from florenz_lib.config import ConfigError, validate_config
from florenz_lib.report import (
    BOOTSTRAP_COLUMNS,
    CONTRAST_COLUMNS,
    DIAGNOSTIC_COLUMNS,
    EXTRAPOLATION_COLUMNS,
    HOLDOUT_COLUMNS,
    LAW2_TERMS,
    PAPER_TARGET,
    extrapolation_table,
    fit_law2,
    law2_bootstrap,
    law2_contrasts,
    law2_diagnostics,
    law2_holdout,
    read_runs_table,
    write_report,
)

REPO = Path(__file__).resolve().parents[1]
SPLITS = ("UC", "ST", "SC")


def _independent_ols(runs: pd.DataFrame, split: str):
    """The same log10 regression built by hand with the array API (no formula)."""
    X = sm.add_constant(np.log10(runs[["P", "S", "T"]].to_numpy(dtype=float)))
    return sm.OLS(np.log10(runs[split].to_numpy(dtype=float)), X).fit()


# --- prediction intervals -----------------------------------------------------------


@pytest.mark.parametrize("split", SPLITS)
def test_prediction_interval_is_statsmodels_obs_ci_back_transformed(split):
    runs = synthetic_runs()
    fit = fit_law2(runs, split)
    P, S, T = np.array([30e9, 2e9]), np.array([1e7, 4e6]), np.array([3.0, 6.0])

    ours = fit.predict_interval(P, S, T)

    reference = _independent_ols(runs, split)
    exog = sm.add_constant(np.log10(np.column_stack([P, S, T])), has_constant="add")
    frame = reference.get_prediction(exog).summary_frame(alpha=0.05)
    np.testing.assert_allclose(ours["prediction"], 10.0 ** frame["mean"], rtol=1e-10)
    np.testing.assert_allclose(ours["pi_low"], 10.0 ** frame["obs_ci_lower"], rtol=1e-10)
    np.testing.assert_allclose(ours["pi_high"], 10.0 ** frame["obs_ci_upper"], rtol=1e-10)
    # A prediction interval, not the (narrower) confidence interval of the mean.
    assert (ours["pi_low"] < 10.0 ** frame["mean_ci_lower"]).all()
    assert (ours["pi_high"] > 10.0 ** frame["mean_ci_upper"]).all()
    np.testing.assert_allclose(ours["prediction"], fit.predict(P, S, T), rtol=1e-12)


def test_extrapolation_table_rows_and_truth_inside_interval():
    runs = synthetic_runs()
    fits = [fit_law2(runs, s) for s in SPLITS]
    targets = [PAPER_TARGET, {"P": 2e9, "S": 4e6, "T": 5.0}]
    table = extrapolation_table(fits, targets)
    assert tuple(table.columns) == EXTRAPOLATION_COLUMNS
    assert table[["split", "P"]].values.tolist() == [[s, t["P"]] for s in SPLITS for t in targets]
    assert ((table["pi_low"] < table["prediction"]) & (table["prediction"] < table["pi_high"])).all()
    for row in table.itertuples():
        log_b0, b1, b2, b3 = LAW2_TRUTH[row.split]
        truth = 10.0 ** (log_b0 + b1 * np.log10(row.P) + b2 * np.log10(row.S) + b3 * np.log10(row.T))
        assert row.pi_low < truth < row.pi_high, row


@pytest.mark.parametrize(
    "target, problem",
    [({"P": 1e9, "S": 1e6}, "exactly the keys"), ({"P": 1e9, "S": 0, "T": 3.0}, "S must be"),
     ({"P": "big", "S": 1e6, "T": 3.0}, "P must be")],
)
def test_extrapolation_rejects_bad_targets(target, problem):
    fit = fit_law2(synthetic_runs(), "UC")
    with pytest.raises(ValueError, match=problem):
        extrapolation_table([fit], [target])


# --- contrasts ------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLITS)
def test_contrasts_match_the_covariance_formula_and_cover_the_truth(split):
    runs = synthetic_runs()
    fit = fit_law2(runs, split)
    table = law2_contrasts([fit])
    assert tuple(table.columns) == CONTRAST_COLUMNS
    assert table["contrast"].tolist() == ["b1-b2", "b3+b2", "b3+b1", "std b1-b2", "std b3+b2", "std b3+b1"]

    _, b1, b2, b3 = LAW2_TRUTH[split]
    truths = {"b1-b2": b1 - b2, "b3+b2": b3 + b2, "b3+b1": b3 + b1}
    weights = {"b1-b2": {"P": 1, "S": -1}, "b3+b2": {"T": 1, "S": 1}, "b3+b1": {"T": 1, "P": 1}}
    cov = fit.results.cov_params().rename(index=lambda n: n.removeprefix("log_"),
                                          columns=lambda n: n.removeprefix("log_"))
    t_crit = stats.t.ppf(0.975, fit.results.df_resid)
    for name, w in weights.items():
        row = table.set_index("contrast").loc[name]
        vector = pd.Series(w, dtype=float).reindex(cov.index, fill_value=0.0)
        estimate = float(sum(fit.coef[term] * weight for term, weight in w.items()))
        se = float(np.sqrt(vector @ cov @ vector))
        assert row["estimate"] == pytest.approx(estimate, rel=1e-9)
        assert row["ci_low"] == pytest.approx(estimate - t_crit * se, rel=1e-9)
        assert row["ci_high"] == pytest.approx(estimate + t_crit * se, rel=1e-9)
        assert row["p"] == pytest.approx(2 * stats.t.sf(abs(estimate / se), fit.results.df_resid), rel=1e-6)
        assert row["ci_low"] < truths[name] < row["ci_high"]

    std = table.set_index("contrast").loc["std b1-b2"]
    assert std["estimate"] == pytest.approx(fit.std_coef["P"] - fit.std_coef["S"], rel=1e-9)


# --- diagnostics ----------------------------------------------------------------------


def test_diagnostics_rows_and_vif_formula():
    runs = synthetic_runs()
    fit = fit_law2(runs, "UC")
    table = law2_diagnostics([fit])
    assert tuple(table.columns) == DIAGNOSTIC_COLUMNS
    assert table["diagnostic"].tolist() == ["jarque_bera", "shapiro_wilk", "breusch_pagan", "vif", "vif", "vif"]
    assert table.loc[table["diagnostic"] == "vif", "term"].tolist() == ["P", "S", "T"]
    tests = table[table["diagnostic"] != "vif"]
    assert tests["p"].between(0, 1).all()
    # Homoscedastic normal noise: no alarm at the fixed seed.
    assert (tests["note"] == "ok").all(), tests
    vifs = table[table["diagnostic"] == "vif"]
    assert ((vifs["statistic"] > 10) == vifs["note"].str.startswith("VIF > 10")).all()

    logs = np.log10(runs[["P", "S", "T"]])
    for term in ("P", "S", "T"):
        others = sm.add_constant(logs.drop(columns=term))
        r2 = sm.OLS(logs[term], others).fit().rsquared
        vif = table.set_index(["diagnostic", "term"]).loc[("vif", term), "statistic"]
        assert vif == pytest.approx(1.0 / (1.0 - r2), rel=1e-9)


def test_diagnostics_flag_heteroscedastic_residuals():
    runs = synthetic_runs()
    rng = np.random.default_rng(0)
    # Noise that grows a hundredfold from the smallest to the largest budget.
    scale = 0.002 * (runs["S"] / runs["S"].min())
    runs["UC"] = runs["UC"] * 10.0 ** (rng.normal(0.0, 1.0, len(runs)) * scale)
    runs = pd.concat([runs] * 4, ignore_index=True)  # more runs, more power
    runs["UC"] = runs["UC"] * 10.0 ** (rng.normal(0.0, 1.0, len(runs)) * np.tile(scale, 4))
    table = law2_diagnostics([fit_law2(runs, "UC")]).set_index("diagnostic")
    assert table.loc["breusch_pagan", "p"] < 0.05
    assert table.loc["breusch_pagan", "note"].startswith("p < 0.05")


# --- held-out refits ------------------------------------------------------------------


def test_holdout_refits_predict_the_held_out_runs():
    runs = synthetic_runs()
    table = law2_holdout(runs, SPLITS)
    assert tuple(table.columns) == HOLDOUT_COLUMNS
    largest = table[table["held_out"] == "largest_size"]
    assert set(largest["run"]) == set(runs.loc[runs["P"] == runs["P"].max(), "run"])
    budget = table[table["held_out"] == "largest_budget"]
    assert set(budget["run"]) == set(runs.loc[runs["S"] == runs["S"].max(), "run"])
    assert len(table) == 3 * (4 + 4)

    observed = runs.set_index("run")
    for row in table.itertuples():
        assert row.observed == observed.at[row.run, row.split]
        assert row.rel_error == pytest.approx((row.predicted - row.observed) / row.observed)
        assert row.inside_pi == (row.pi_low <= row.observed <= row.pi_high)
    # The synthetic runs follow law 2 with ~2% noise: the refits extrapolate well.
    assert table["rel_error"].abs().max() < 0.1
    assert table["inside_pi"].mean() >= 0.9


def test_holdout_skips_a_refit_that_is_not_identifiable(caplog):
    # Three sizes: without the largest, two are left, and log T is then affine in log P.
    runs = synthetic_runs()
    runs = runs[runs["P"] <= sorted(runs["P"].unique())[2]].reset_index(drop=True)
    with caplog.at_level("WARNING"):
        table = law2_holdout(runs, ["UC"])
    assert set(table["held_out"]) == {"largest_budget"} and len(table) == 3
    assert "largest_size on UC skipped" in caplog.text and "collinear" in caplog.text


# --- bootstrap ------------------------------------------------------------------------


def test_bootstrap_is_seeded_and_brackets_the_estimates():
    runs = synthetic_runs()
    fits = [fit_law2(runs, s) for s in SPLITS]
    table = law2_bootstrap(runs, fits, n_samples=300, seed=7)
    assert tuple(table.columns) == BOOTSTRAP_COLUMNS
    assert table[["split", "term"]].values.tolist() == [[s, t] for s in SPLITS for t in LAW2_TERMS]
    pd.testing.assert_frame_equal(table, law2_bootstrap(runs, fits, n_samples=300, seed=7))
    assert not table.equals(law2_bootstrap(runs, fits, n_samples=300, seed=8))

    assert (table["n_boot"] > 250).all() and (table["n_boot"] <= 300).all()
    assert ((table["boot_ci_low"] < table["coef"]) & (table["coef"] < table["boot_ci_high"])).all()
    # OLS columns repeat law 2's; with well-specified noise the bootstrap agrees roughly.
    for fit in fits:
        rows = table[table["split"] == fit.split].set_index("term")
        np.testing.assert_allclose(rows["coef"], fit.coef, rtol=1e-12)
        np.testing.assert_allclose(rows["ci_low"], fit.ci["low"], rtol=1e-12)
        ols_width = fit.ci["high"] - fit.ci["low"]
        boot_width = rows["boot_ci_high"] - rows["boot_ci_low"]
        assert ((boot_width / ols_width).between(0.3, 3.0)).all(), (boot_width, ols_width)


# --- runs table and config checks -----------------------------------------------------


def test_runs_table_without_runs_names_the_file(tmp_path):
    # A reduced study (few runs) is read; the fits say what it cannot identify
    # (test_report_small_studies.py). Only a table without any run is an error.
    runs_csv = tmp_path / "runs.csv"
    synthetic_runs().head(0).to_csv(runs_csv, index=False)
    with pytest.raises(ValueError, match=r"runs\.csv: no runs"):
        read_runs_table(str(runs_csv))
    with pytest.raises(ValueError, match="no runs"):
        write_report(str(runs_csv), str(tmp_path / "tables"), str(tmp_path / "figures"))
    assert not (tmp_path / "tables").exists()
    synthetic_runs().head(4).to_csv(runs_csv, index=False)
    assert len(read_runs_table(str(runs_csv))) == 4


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.drop(columns=["S"]), r"missing column\(s\) \['S'\]"),
        (lambda r: r.assign(P=r["P"].where(r.index != 2, 0.0)), r"column P must be finite and > 0.*run '0.4B_5000'"),
        (lambda r: r.assign(ST=r["ST"].astype(object).where(r.index != 0, "bad")), r"column ST .*'bad' for run '0.4B_500'"),
        (lambda r: r.assign(T=r["T"].where(r.index != 1)), r"column T .*got nan for run '0.4B_2000'"),
    ],
)
def test_runs_table_errors_name_column_and_run(tmp_path, mutate, message):
    runs_csv = tmp_path / "runs.csv"
    mutate(synthetic_runs()).to_csv(runs_csv, index=False)
    with pytest.raises(ValueError, match=message):
        write_report(str(runs_csv), str(tmp_path / "tables"), str(tmp_path / "figures"))


def test_write_report_uses_targets_and_bootstrap_settings(tmp_path):
    runs_csv = tmp_path / "runs.csv"
    synthetic_runs().to_csv(runs_csv, index=False)
    target = {"P": 5e9, "S": 2e6, "T": 4.0}
    written = write_report(str(runs_csv), str(tmp_path / "t"), str(tmp_path / "f"), targets=[target],
                           bootstrap_samples=40, seed=3)
    extrapolation = pd.read_csv(written["extrapolation.csv"])
    assert extrapolation[["P", "S", "T"]].drop_duplicates().to_dict("records") == [target]
    assert (pd.read_csv(written["law2_bootstrap.csv"])["n_boot"] <= 40).all()
    for name, columns in (("law2_contrasts", CONTRAST_COLUMNS), ("law2_diagnostics", DIAGNOSTIC_COLUMNS),
                          ("extrapolation", EXTRAPOLATION_COLUMNS), ("law2_holdout", HOLDOUT_COLUMNS),
                          ("law2_bootstrap", BOOTSTRAP_COLUMNS)):
        assert tuple(pd.read_csv(written[f"{name}.csv"]).columns) == columns
        header = (tmp_path / "t" / f"{name}.md").read_text().splitlines()[0].replace(" ", "")
        assert header == "|" + "|".join(columns) + "|"


def test_default_config_has_the_paper_target_and_the_schema_checks_report():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert PAPER_TARGET in config["report"]["targets"]
    validate_config(config)
    for mutate, named in (
        (lambda c: c["report"]["targets"][0].pop("T"), "report.targets.0"),
        (lambda c: c["report"]["targets"][0].update(Q=1.0), "'Q'"),
        (lambda c: c["report"].update(bootstrap_samples=0), "report.bootstrap_samples"),
        (lambda c: c.pop("report"), "'report' is a required property"),
    ):
        bad = copy.deepcopy(config)
        mutate(bad)
        with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
            validate_config(bad)
