"""The paper's two scaling laws, fitted by OLS in log10 space (DESIGN.md section 1).

Law 1 (per split): y = a0 * C^a1 on the Pareto frontier of (compute, loss).
Law 2 (per split): y = b0 * P^b1 * S^b2 * T^b3 on all runs.

Both fits keep their statsmodels results objects so that prediction intervals, tests of
coefficient differences and the like can be computed from them later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.api as sm
import statsmodels.formula.api as smf
from statsmodels.regression.linear_model import RegressionResultsWrapper

SPLITS = ("UC", "ST", "SC")
LAW2_TERMS = ("intercept", "P", "S", "T")
# Formula column of each law-2 term; "log_" names keep clear of formula built-ins.
_LAW2_FORMULA_NAMES = {"intercept": "Intercept", "P": "log_P", "S": "log_S", "T": "log_T"}
_LAW2_FORMULA = "log_y ~ log_P + log_S + log_T"


class NotIdentifiable(ValueError):
    """The runs cannot estimate a law; the message says why in words and what would fix it."""


@dataclass(frozen=True)
class Unfitted:
    """A law that is not identifiable for one split: NaN estimates in its tables, `reason` in words.

    `counts` are the table columns that need no fit (law 1: n_points and n_frontier).
    """

    split: str
    reason: str
    counts: Mapping[str, int] = field(default_factory=dict)


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _log10_of_positive(df: pd.DataFrame, column: str, split: str) -> np.ndarray:
    values = df[column].to_numpy(dtype=float)
    if not (np.isfinite(values) & (values > 0)).all():
        raise ValueError(f"fit for split {split}: column {column} must be finite and > 0 (it is log-transformed)")
    return np.log10(values)


def pareto_frontier(C, y) -> np.ndarray:
    """Boolean mask of the strict Pareto frontier of (compute C, loss y).

    Points are taken in order of increasing C; a point stays if its loss is strictly lower
    than every loss of the points with strictly smaller C. Among points with equal C only
    the lowest-loss one can stay (the first of them in input order if their losses tie too).
    """
    C = np.asarray(C, dtype=float)
    y = np.asarray(y, dtype=float)
    if C.shape != y.shape or C.ndim != 1:
        raise ValueError(f"C and y must be 1-d of equal length, got shapes {C.shape} and {y.shape}")
    if not (np.isfinite(C).all() and np.isfinite(y).all()):
        raise ValueError("C and y must be finite")
    # Sort by C, then by loss, stably: within a C tie the lowest loss comes first, and the
    # others then fail the strict comparison against it.
    order = np.lexsort((y, C))
    mask = np.zeros(C.shape, dtype=bool)
    best_loss = np.inf
    for i in order:
        if y[i] < best_loss:
            mask[i] = True
            best_loss = y[i]
    return mask


@dataclass(frozen=True)
class Law1Fit:
    """Law 1 for one split: log10 y = log10 a0 + a1 log10 C on the frontier points.

    a0 refers to C in MACs. With exactly two frontier points the line passes through both:
    a0 and a1 are exact, while a1_ci and r2 are NaN because no residual degree of freedom
    is left to estimate them.
    """

    split: str
    a0: float
    a1: float
    a1_ci: tuple[float, float]
    r2: float
    n_points: int
    n_frontier: int
    frontier_mask: np.ndarray  # over the rows of the fitted runs table, in its order
    results: RegressionResultsWrapper

    def predict(self, C) -> np.ndarray:
        return self.a0 * np.asarray(C, dtype=float) ** self.a1


def fit_law1(df: pd.DataFrame, split: str) -> Law1Fit:
    """Fit law 1 for `split` on the Pareto frontier of (df.C, df[split]).

    Raises NotIdentifiable if the frontier has fewer than two points (no line can be fitted).
    """
    log_C = _log10_of_positive(df, "C", split)
    log_y = _log10_of_positive(df, split, split)
    mask = pareto_frontier(df["C"], df[split])
    n_frontier = int(mask.sum())
    if n_frontier < 2:
        raise NotIdentifiable(
            f"law 1 not identifiable for split {split}: the Pareto frontier of {len(df)} runs has "
            f"{_count(n_frontier, 'point')}, a line needs 2"
        )
    exog = sm.add_constant(log_C[mask], has_constant="add")
    results = sm.OLS(log_y[mask], exog).fit()
    intercept, slope = results.params
    # statsmodels divides by df_resid for the CI and the adjusted statistics; at 0 it warns
    # and returns inf, so those stay NaN (documented on Law1Fit).
    if results.df_resid > 0:
        low, high = results.conf_int(alpha=0.05)[1]
        a1_ci, r2 = (float(low), float(high)), float(results.rsquared)
    else:
        a1_ci, r2 = (np.nan, np.nan), np.nan
    return Law1Fit(
        split=split,
        a0=float(10.0**intercept),
        a1=float(slope),
        a1_ci=a1_ci,
        r2=r2,
        n_points=len(df),
        n_frontier=n_frontier,
        frontier_mask=mask,
        results=results,
    )


@dataclass(frozen=True)
class Law2Fit:
    """Law 2 for one split: log10 y = log10 b0 + b1 log10 P + b2 log10 S + b3 log10 T.

    All Series are indexed by LAW2_TERMS; `ci` and `std_ci` have columns low/high (95%).
    Standardized coefficients come from a refit on z-scored log10 variables (each log10
    predictor and log10 y of this split), so std_coef_j = b_j * sd(log x_j) / sd(log y) and
    their CIs are the unstandardized ones scaled the same way. The standardized intercept is
    0 by construction; its CI is NaN because it is not an estimate.
    """

    split: str
    coef: pd.Series
    ci: pd.DataFrame
    p: pd.Series
    std_coef: pd.Series
    std_ci: pd.DataFrame
    r2: float
    n_points: int
    log_data: pd.DataFrame  # columns log_y, log_P, log_S, log_T: the regression's data
    results: RegressionResultsWrapper
    std_results: RegressionResultsWrapper

    def predict(self, P, S, T) -> np.ndarray:
        """Predicted loss (geometric-mean scale, i.e. 10 ** E[log10 y]) at P, S, T."""
        P, S, T = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (P, S, T)))
        grid = pd.DataFrame({"log_P": np.log10(P).ravel(), "log_S": np.log10(S).ravel(), "log_T": np.log10(T).ravel()})
        return (10.0 ** self.results.predict(grid).to_numpy()).reshape(P.shape)

    def prediction_frame(self, P, S, T, alpha: float = 0.05) -> pd.DataFrame:
        """statsmodels' get_prediction(...).summary_frame(alpha) at (P, S, T), in log10 space.

        Columns mean, mean_se, mean_ci_lower/upper (confidence interval of the mean) and
        obs_ci_lower/upper (prediction interval of a new observation), one row per point.
        """
        P, S, T = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=float)) for v in (P, S, T)))
        values = {"P": P, "S": S, "T": T}
        for name, v in values.items():
            if not (np.isfinite(v) & (v > 0)).all():
                raise ValueError(f"law 2 prediction for split {self.split}: {name} must be finite and > 0, got {v}")
        grid = pd.DataFrame({f"log_{name}": np.log10(v).ravel() for name, v in values.items()})
        return self.results.get_prediction(grid).summary_frame(alpha=alpha).reset_index(drop=True)

    def predict_interval(self, P, S, T, alpha: float = 0.05) -> pd.DataFrame:
        """Point prediction and (1 - alpha) prediction interval of the loss at (P, S, T).

        The law is linear in log10 space, so the interval is statsmodels' obs_ci there,
        back-transformed with 10 ** (an interval for a new run's loss, not for the mean).
        Columns prediction (10 ** E[log10 y], as `predict`), pi_low, pi_high.
        """
        frame = self.prediction_frame(P, S, T, alpha)
        return pd.DataFrame(
            {
                "prediction": 10.0 ** frame["mean"],
                "pi_low": 10.0 ** frame["obs_ci_lower"],
                "pi_high": 10.0 ** frame["obs_ci_upper"],
            }
        )


def _by_term(values: pd.Series | pd.DataFrame) -> pd.Series | pd.DataFrame:
    """Re-index statsmodels output from formula names to LAW2_TERMS."""
    return values.loc[[_LAW2_FORMULA_NAMES[t] for t in LAW2_TERMS]].set_axis(list(LAW2_TERMS), axis=0)


def law2_design(df: pd.DataFrame) -> np.ndarray:
    """Law 2's design matrix [1, log10 P, log10 S, log10 T], one row per run of `df`."""
    return np.column_stack([np.ones(len(df))] + [np.log10(df[t].to_numpy(dtype=float)) for t in LAW2_TERMS[1:]])


def law2_identification_problem(df: pd.DataFrame) -> str | None:
    """Why law 2 cannot be estimated from the runs of `df` (P, S, T > 0), or None if it can.

    It depends on the design alone, not on the split: the design must have full numerical
    column rank (np.linalg.matrix_rank; otherwise OLS returns one of infinitely many
    solutions) and leave a residual degree of freedom (for CIs and p-values). Two sizes
    never suffice: each size has one P and one T, so log P and log T are both affine in
    the same size indicator.
    """
    X = law2_design(df)
    n, k = X.shape
    rank = int(np.linalg.matrix_rank(X))
    if rank == k and n > k:
        return None
    names = [f"log {t}" for t in LAW2_TERMS[1:]]
    # Constant up to rounding (the rank is numerical too): collinear with the intercept alone.
    constant = [name for name, x in zip(names, X[:, 1:].T) if n and np.ptp(x) <= 1e-9 * np.abs(x).max()]
    collinear = []
    if rank < n:  # a dependency among the runs themselves, not only too few runs
        # A predictor takes part iff some null-space vector loads on it (loadings far below
        # the largest are rounding).
        loading = np.abs(np.linalg.svd(X)[2][rank:]).max(axis=0)[1:]
        collinear = [name for name, w in zip(names, loading) if w > 1e-6 * loading.max() and name not in constant]
    clauses = [f"{_and(constant)} {'is' if len(constant) == 1 else 'are'} constant"] if constant else []
    clauses += [f"{_and(collinear)} are collinear"] if collinear else []
    what = " and ".join(clauses) or f"its {k} parameters need more than {_count(n, 'run')}"
    sizes, budgets = df["P"].nunique(), df["S"].nunique()
    needs = [need for need, short in (("3 sizes", sizes < 3), ("2 budgets", budgets < 2)) if short]
    if needs:
        fix = f"run at least {' and '.join(needs)}"
    elif n <= k:
        fix = f"train at least {k + 1} runs"
    else:
        fix = "vary P, S and T independently across runs"
    return (
        f"law 2 not identifiable on {_count(n, 'run')} of {_count(sizes, 'size')} and "
        f"{_count(budgets, 'budget')}: {what} (rank {rank} of {k}); {fix}"
    )


def fit_law2(df: pd.DataFrame, split: str) -> Law2Fit:
    """Fit law 2 for `split` on all rows of the runs table.

    Raises NotIdentifiable, naming the reason (law2_identification_problem), if the design is
    rank deficient or leaves no residual degree of freedom: e.g. fewer than 5 runs, two model
    sizes, or T an affine function of log P across sizes.
    """
    log_data = pd.DataFrame(
        {
            "log_y": _log10_of_positive(df, split, split),
            "log_P": _log10_of_positive(df, "P", split),
            "log_S": _log10_of_positive(df, "S", split),
            "log_T": _log10_of_positive(df, "T", split),
        }
    )
    problem = law2_identification_problem(df)
    if problem:
        raise NotIdentifiable(f"split {split}: {problem}")
    results = smf.ols(_LAW2_FORMULA, data=log_data).fit()

    z_scored = (log_data - log_data.mean()) / log_data.std(ddof=1)
    std_results = smf.ols(_LAW2_FORMULA, data=z_scored).fit()
    std_coef = _by_term(std_results.params)
    std_ci = _by_term(std_results.conf_int(alpha=0.05)).set_axis(["low", "high"], axis=1)
    std_coef["intercept"] = 0.0
    std_ci.loc["intercept"] = np.nan

    return Law2Fit(
        split=split,
        coef=_by_term(results.params),
        ci=_by_term(results.conf_int(alpha=0.05)).set_axis(["low", "high"], axis=1),
        p=_by_term(results.pvalues),
        std_coef=std_coef,
        std_ci=std_ci,
        r2=float(results.rsquared),
        n_points=len(log_data),
        log_data=log_data,
        results=results,
        std_results=std_results,
    )
