"""Invert law 2: which (P, S) reaches a target loss on a split for the least training compute.

Law 2 (log10 y = c + b1 log10 P + b2 log10 S + b3 log10 T) is solved for S in closed form
at every P of a log grid, and the compute of that (P, S) is

    C = S * F(P) * (1 + Pt/P)      (DESIGN.md section 1, in MACs)

where the forward MACs per sample F(P) come from an OLS fit of log10 F on log10 P over the
distinct models of the runs table (F proportional to P if it holds a single model size),
and the trainable share Pt/P is the mean over the family's models (the families differ:
Gemma-based models freeze their decoder).

T, the multilinguality of the base model, is an input: `T=` (`--T`) fixes it for every
candidate (a hypothetical base model); without it each family is considered with the T of
its model closest to the candidate P in log space ("a model like the nearest one we
trained"), and the cheapest family wins. The planner then also names that model.

Because law 2 has no interaction terms, log C is close to linear in log P for a fixed T:
the optimum usually lies at an end of the P range. The default range is the runs table's
own P range (interpolation in P; S is extrapolated freely); `at_bound` says when the
optimum is at an end, so that a user can widen the range knowingly.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .build import read_runs_table
from .laws import SPLITS, Law2Fit, fit_law2

log = logging.getLogger(__name__)

DEFAULT_GRID = 2001


@dataclass(frozen=True)
class Plan:
    """The cheapest (P, S) found for `target` on `split`, with its predicted loss and 95% PI."""

    split: str
    target: float
    family: str
    P: float
    S: float
    T: float
    T_source: str
    F: float
    trainable_share: float  # Pt / P
    C: float
    predicted: float
    pi_low: float
    pi_high: float
    P_range: tuple[float, float]
    at_bound: bool

    def describe(self) -> str:
        lines = [
            f"plan for split {self.split}: target loss {self.target:g}",
            f"  family     {self.family}",
            f"  T          {self.T:.4g} ({self.T_source})",
            f"  P          {self.P:.4g} parameters",
            f"  S          {self.S:.4g} seen samples",
            f"  C          {self.C:.4g} MACs (F = {self.F:.4g} MACs/sample, Pt/P = {self.trainable_share:.3f})",
            f"  predicted  {self.predicted:.4g} loss, 95% PI [{self.pi_low:.4g}, {self.pi_high:.4g}]",
        ]
        if self.at_bound:
            lines.append(
                f"  note: P lies at an end of the searched range [{self.P_range[0]:.4g}, {self.P_range[1]:.4g}]; "
                "the optimum may lie beyond it (widen --P-min/--P-max, at the price of extrapolating in P)"
            )
        return "\n".join(lines)


def distinct_models(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (family, size): its P, Pt, F and T (means, should a size repeat them)."""
    return runs.groupby(["family", "size"], as_index=False, sort=True)[["P", "Pt", "F", "T"]].mean()


def fit_forward_macs(models: pd.DataFrame) -> tuple[float, float]:
    """(intercept, slope) of log10 F = intercept + slope * log10 P over the distinct models."""
    log_P, log_F = np.log10(models["P"].to_numpy()), np.log10(models["F"].to_numpy())
    if np.unique(log_P).size < 2:
        return float(log_F.mean() - log_P.mean()), 1.0  # one size: assume F proportional to P
    slope, intercept = np.polyfit(log_P, log_F, 1)
    return float(intercept), float(slope)


def solve_log_S(fit: Law2Fit, target: float, P, T) -> np.ndarray:
    """log10 S at which law 2 predicts `target` for the given P and T (closed form)."""
    b = fit.coef
    return (np.log10(target) - b["intercept"] - b["P"] * np.log10(P) - b["T"] * np.log10(T)) / b["S"]


def plan(
    runs: pd.DataFrame,
    split: str,
    target: float,
    T: float | None = None,
    family: str | None = None,
    P_min: float | None = None,
    P_max: float | None = None,
    n_grid: int = DEFAULT_GRID,
) -> Plan:
    """The least-compute (P, S) whose law-2 prediction on `split` equals `target` (see module doc).

    `runs` is a validated runs table (read_runs_table). Raises ValueError for a non-positive
    target or T, an unknown family, an empty P range, a table whose F or Pt is not positive,
    or a law 2 whose S exponent is not negative (then no amount of data lowers the loss).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    if not (np.isfinite(target) and target > 0):
        raise ValueError(f"target loss must be a finite number > 0, got {target!r}")
    if T is not None and not (np.isfinite(T) and T > 0):
        raise ValueError(f"T must be a finite number > 0, got {T!r}")
    if n_grid < 2:
        raise ValueError(f"the P grid needs at least 2 points, got {n_grid}")
    for column in ("F", "Pt"):
        values = pd.to_numeric(runs[column], errors="coerce").to_numpy(dtype=float)
        bad = ~(np.isfinite(values) & (values > 0))
        if bad.any():
            raise ValueError(
                f"runs table: column {column} must be finite and > 0 for the compute model, "
                f"got {runs[column].iloc[int(np.argmax(bad))]!r} for run {runs['run'].iloc[int(np.argmax(bad))]!r}"
            )
    models = distinct_models(runs)
    families = sorted(models["family"].unique())
    if family is not None:
        if family not in families:
            raise ValueError(f"family {family!r} is not in the runs table; it has {families}")
        families = [family]

    fit = fit_law2(runs, split)
    if not fit.coef["S"] < 0:
        raise ValueError(
            f"law 2 on split {split} has S exponent b2 = {fit.coef['S']:.4g} >= 0: more seen samples do not "
            "lower the predicted loss, so no S reaches the target"
        )
    P_lo = float(runs["P"].min() if P_min is None else P_min)
    P_hi = float(runs["P"].max() if P_max is None else P_max)
    if not (0 < P_lo <= P_hi and np.isfinite(P_hi)):
        raise ValueError(f"P range must satisfy 0 < P_min <= P_max, got [{P_lo:g}, {P_hi:g}]")
    P_grid = np.geomspace(P_lo, P_hi, n_grid) if P_hi > P_lo else np.array([P_lo])
    F_intercept, F_slope = fit_forward_macs(models)
    F_grid = 10.0 ** (F_intercept + F_slope * np.log10(P_grid))

    best = None
    for fam in families:
        members = models[models["family"] == fam]
        share = float((members["Pt"] / members["P"]).mean())
        if T is None:
            nearest = np.abs(np.log10(P_grid)[:, None] - np.log10(members["P"].to_numpy())[None, :]).argmin(axis=1)
            T_grid = members["T"].to_numpy()[nearest]
        else:
            nearest, T_grid = None, np.full_like(P_grid, T)
        log_S = solve_log_S(fit, target, P_grid, T_grid)
        log_C = log_S + np.log10(F_grid) + np.log10(1.0 + share)
        i = int(np.argmin(log_C))
        if best is None or log_C[i] < best["log_C"]:
            source = (
                "given" if nearest is None
                else f"of {members['size'].iloc[nearest[i]]}, the nearest {fam} model in P"
            )
            best = {"log_C": log_C[i], "i": i, "family": fam, "share": share, "T": float(T_grid[i]),
                    "T_source": source, "log_S": float(log_S[i])}

    i = best["i"]
    P, S = float(P_grid[i]), float(10.0 ** best["log_S"])
    pi = fit.predict_interval(P, S, best["T"]).iloc[0]
    result = Plan(
        split=split,
        target=float(target),
        family=best["family"],
        P=P,
        S=S,
        T=best["T"],
        T_source=best["T_source"],
        F=float(F_grid[i]),
        trainable_share=best["share"],
        C=float(10.0 ** best["log_C"]),
        predicted=float(pi["prediction"]),
        pi_low=float(pi["pi_low"]),
        pi_high=float(pi["pi_high"]),
        P_range=(P_lo, P_hi),
        at_bound=len(P_grid) > 1 and i in (0, len(P_grid) - 1),
    )
    if S > runs["S"].max() * 10:
        log.warning("planned S = %.3g is more than 10x the largest S in the runs (%.3g): far extrapolation",
                    S, runs["S"].max())
    return result


def run_cli(args: argparse.Namespace) -> int:
    """`florenz plan`: print the plan; exit status 2 with a message on bad input."""
    try:
        if args.runs is None:
            from ..config import load_config
            from ..paths import Layout

            runs_csv = Layout(load_config(*args.configfile)["results_dir"]).table("runs.csv")
        else:
            runs_csv = args.runs
        runs = read_runs_table(runs_csv, [args.split])
        result = plan(runs, args.split, args.target, T=args.T, family=args.family, P_min=args.P_min,
                      P_max=args.P_max, n_grid=args.grid)
    except (ValueError, FileNotFoundError) as error:  # ConfigError is a ValueError
        print(f"florenz plan: {error}", file=sys.stderr)
        return 2
    print(f"runs table: {runs_csv} ({len(runs)} runs)")
    print(result.describe())
    return 0
