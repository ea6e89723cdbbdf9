"""Tests of the law-2 planner (`florenz plan`): least-compute (P, S) for a target loss."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_report import synthetic_runs

from florenz_lib.report import fit_law2
from florenz_lib.report.planner import distinct_models, fit_forward_macs, plan

REPO = Path(__file__).resolve().parents[1]


def _florenz(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "florenz_lib", *args], capture_output=True, text=True, cwd=cwd)


def _printed(stdout: str) -> dict[str, float]:
    """P, S, C, predicted loss and its PI from the plan's printout."""
    number = r"([-+0-9.e]+)"
    values = {key: float(re.search(rf"^\s+{key}\s+{number}", stdout, re.M).group(1)) for key in ("P", "S", "C", "T")}
    predicted = re.search(rf"predicted\s+{number} loss, 95% PI \[{number}, {number}\]", stdout)
    values.update(predicted=float(predicted.group(1)), pi_low=float(predicted.group(2)),
                  pi_high=float(predicted.group(3)))
    return values


@pytest.mark.parametrize("split, target", [("UC", 2.5), ("ST", 1.2), ("SC", 0.9)])
def test_plan_reaches_the_target_for_the_least_compute(split, target):
    runs = synthetic_runs()
    result = plan(runs, split, target)

    assert result.predicted == pytest.approx(target, rel=0.01)
    assert result.pi_low < target < result.pi_high
    fit = fit_law2(runs, split)
    assert fit.predict(result.P, result.S, result.T) == pytest.approx(target, rel=1e-9)
    assert result.C == pytest.approx(result.S * result.F * (1 + result.trainable_share), rel=1e-9)
    assert runs["P"].min() <= result.P <= runs["P"].max()

    # Brute force over the same P range, families, T rule and compute model: nothing cheaper.
    models = distinct_models(runs)
    F0, F1 = fit_forward_macs(models)
    for P in np.geomspace(runs["P"].min(), runs["P"].max(), 97):
        for family, members in models.groupby("family"):
            nearest = members.iloc[int(np.abs(np.log10(members["P"]) - np.log10(P)).argmin())]
            log_S = (np.log10(target) - fit.coef["intercept"] - fit.coef["P"] * np.log10(P)
                     - fit.coef["T"] * np.log10(nearest["T"])) / fit.coef["S"]
            C = 10.0**log_S * 10.0 ** (F0 + F1 * np.log10(P)) * (1 + (members["Pt"] / members["P"]).mean())
            assert C >= result.C * (1 - 1e-9), (P, family)


def test_plan_with_given_T_and_family():
    runs = synthetic_runs()
    result = plan(runs, "UC", 2.0, T=3.0, family="florence", P_min=1e9, P_max=1e11)
    assert (result.T, result.family, result.T_source) == (3.0, "florence", "given")
    assert result.predicted == pytest.approx(2.0, rel=0.01)
    assert result.P_range == (1e9, 1e11)
    florence = runs[runs["family"] == "florence"].drop_duplicates("size")
    assert result.trainable_share == pytest.approx((florence["Pt"] / florence["P"]).mean())
    # Law 2 has no interactions: log C is linear in log P here and the optimum is an end.
    assert result.at_bound


def test_forward_macs_fit_is_exact_for_a_power_law():
    runs = synthetic_runs()
    runs["F"] = 3.0 * runs["P"] ** 1.1
    intercept, slope = fit_forward_macs(distinct_models(runs))
    assert (intercept, slope) == (pytest.approx(np.log10(3.0)), pytest.approx(1.1))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target": -1.0}, "target loss must be"),
        ({"target": 2.0, "T": 0.0}, "T must be"),
        ({"target": 2.0, "family": "llama"}, "family 'llama' is not in the runs table"),
        ({"target": 2.0, "P_min": 1e10, "P_max": 1e9}, "P range"),
    ],
)
def test_plan_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan(synthetic_runs(), "UC", **kwargs)


def test_plan_refuses_when_more_data_does_not_help():
    runs = synthetic_runs()
    runs["UC"] = runs["UC"] * (runs["S"] / runs["S"].min()) ** 0.2  # loss grows with S
    with pytest.raises(ValueError, match="S exponent b2 = .* >= 0"):
        plan(runs, "UC", 2.0)


def test_cli_plan_on_a_runs_csv(tmp_path):
    runs_csv = tmp_path / "my_runs.csv"
    synthetic_runs().to_csv(runs_csv, index=False)
    result = _florenz("plan", "--runs", str(runs_csv), "--split", "UC", "--target", "2.5")
    assert result.returncode == 0, result.stderr
    printed = _printed(result.stdout)
    assert printed["predicted"] == pytest.approx(2.5, rel=0.01)
    assert printed["pi_low"] < 2.5 < printed["pi_high"]
    expected = plan(synthetic_runs(), "UC", 2.5)
    assert printed["P"] == pytest.approx(expected.P, rel=1e-3)
    assert printed["S"] == pytest.approx(expected.S, rel=1e-3)
    assert printed["C"] == pytest.approx(expected.C, rel=1e-3)


def test_cli_plan_finds_the_study_runs_through_the_config(tmp_path):
    (tmp_path / "out" / "tables").mkdir(parents=True)
    synthetic_runs().to_csv(tmp_path / "out" / "tables" / "runs.csv", index=False)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["results_dir"] = str(tmp_path / "out")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = _florenz("plan", "--config", str(tmp_path / "config.yaml"), "--split", "SC", "--target", "0.9",
                      "--T", "3.0")
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "out" / "tables" / "runs.csv") in result.stdout
    printed = _printed(result.stdout)
    assert printed["T"] == 3.0 and printed["predicted"] == pytest.approx(0.9, rel=0.01)


def test_cli_plan_reports_a_bad_runs_table(tmp_path):
    runs_csv = tmp_path / "runs.csv"
    synthetic_runs().drop(columns=["F"]).to_csv(runs_csv, index=False)
    result = _florenz("plan", "--runs", str(runs_csv), "--split", "UC", "--target", "2.0")
    assert result.returncode == 2
    assert "florenz plan:" in result.stderr and "missing column(s) ['F']" in result.stderr
    missing = _florenz("plan", "--runs", str(tmp_path / "nope.csv"), "--split", "UC", "--target", "2.0")
    assert missing.returncode == 2 and "nope.csv" in missing.stderr
