"""Law-2 analysis beyond the coefficient table: contrasts, diagnostics, extrapolation,
held-out validation and a bootstrap of the coefficients.

Every function takes fitted Law2Fit objects (or a runs table) and returns a DataFrame in
one of the column layouts below; build.write_report writes them as CSV + Markdown.

Notation: b1, b2, b3 are the law-2 exponents of P, S and T (DESIGN.md section 1).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.diagnostic import het_breuschpagan
from statsmodels.stats.outliers_influence import variance_inflation_factor
from statsmodels.stats.stattools import jarque_bera

from .laws import LAW2_TERMS, Law2Fit, NotIdentifiable, fit_law2, law2_design

log = logging.getLogger(__name__)

CONTRAST_COLUMNS = ("split", "contrast", "estimate", "ci_low", "ci_high", "p")
DIAGNOSTIC_COLUMNS = ("split", "diagnostic", "term", "statistic", "p", "note")
EXTRAPOLATION_COLUMNS = ("split", "P", "S", "T", "prediction", "pi_low", "pi_high")
HOLDOUT_COLUMNS = (
    "split", "held_out", "run", "observed", "predicted", "pi_low", "pi_high", "rel_error", "inside_pi",
)
BOOTSTRAP_COLUMNS = (
    "split", "term", "coef", "ci_low", "ci_high", "boot_ci_low", "boot_ci_high", "boot_se", "n_boot",
)

# The paper's extrapolation (section 4.1): a 30B, highly multilingual model after 10M samples.
PAPER_TARGET = {"P": 30.0e9, "S": 1.0e7, "T": 3.0}

# Contrast name -> statsmodels t_test hypothesis on the formula names of law 2. The paper
# compares magnitudes: b1 - b2 (P against S; both negative), b3 + b2 and b3 + b1 (T, which
# is positive, against S and P).
CONTRASTS = {"b1-b2": "log_P - log_S = 0", "b3+b2": "log_T + log_S = 0", "b3+b1": "log_T + log_P = 0"}
# Rows on the standardized coefficients (as the paper reports them) carry this prefix.
STD_PREFIX = "std "

# Thresholds behind the `note` column of the diagnostics table.
DIAGNOSTIC_ALPHA = 0.05
VIF_LIMIT = 10.0


def law2_contrasts(fits: Iterable[Law2Fit], alpha: float = 0.05) -> pd.DataFrame:
    """95% CIs and two-sided p of b1-b2, b3+b2, b3+b1, per split.

    Each is a t test on the fitted model (statsmodels `t_test` with a contrast string), so
    the interval uses the full coefficient covariance, not the separate coefficient CIs.
    Rows "b1-b2" etc. are on the unstandardized exponents; rows "std b1-b2" etc. on the
    standardized coefficients (the scale on which the paper compares magnitudes).
    """
    rows = []
    for fit in fits:
        for prefix, results in (("", fit.results), (STD_PREFIX, fit.std_results)):
            for name, hypothesis in CONTRASTS.items():
                test = results.t_test(hypothesis)
                low, high = np.asarray(test.conf_int(alpha=alpha)).ravel()
                rows.append(
                    {
                        "split": fit.split,
                        "contrast": prefix + name,
                        "estimate": float(np.asarray(test.effect).ravel()[0]),
                        "ci_low": float(low),
                        "ci_high": float(high),
                        "p": float(np.asarray(test.pvalue).ravel()[0]),
                    }
                )
    return pd.DataFrame(rows, columns=list(CONTRAST_COLUMNS))


def law2_diagnostics(fits: Iterable[Law2Fit]) -> pd.DataFrame:
    """OLS assumption checks per split, on the residuals of the log10 fit.

    Rows: jarque_bera and shapiro_wilk (residual normality; H0 normal), breusch_pagan
    (heteroscedasticity against log P, log S, log T; H0 constant variance; the LM form) and
    one vif row per predictor (variance inflation factor; p is NaN). `note` is "ok" or says
    which threshold was crossed (p < 0.05, VIF > 10). With 16 runs these tests have little
    power: "ok" means no evidence against the assumption, not proof of it.
    """
    rows = []
    for fit in fits:
        resid = np.asarray(fit.results.resid, dtype=float)
        exog = np.asarray(fit.results.model.exog, dtype=float)

        def add(diagnostic, term, statistic, p, bad_note):
            note = bad_note if np.isfinite(p) and p < DIAGNOSTIC_ALPHA else "ok"
            rows.append(
                {"split": fit.split, "diagnostic": diagnostic, "term": term,
                 "statistic": float(statistic), "p": float(p), "note": note}
            )

        jb, jb_p, _, _ = jarque_bera(resid)
        add("jarque_bera", "residuals", jb, jb_p, "p < 0.05: residuals not normal")
        if len(resid) >= 3 and np.ptp(resid) > 0:
            w, sw_p = stats.shapiro(resid)
        else:
            w, sw_p = np.nan, np.nan
        add("shapiro_wilk", "residuals", w, sw_p, "p < 0.05: residuals not normal")
        lm, lm_p, _, _ = het_breuschpagan(resid, exog)
        add("breusch_pagan", "P+S+T", lm, lm_p, "p < 0.05: heteroscedastic residuals")

        names = list(fit.results.model.exog_names)
        for term in LAW2_TERMS[1:]:
            vif = float(variance_inflation_factor(exog, names.index(f"log_{term}")))
            rows.append(
                {"split": fit.split, "diagnostic": "vif", "term": term, "statistic": vif, "p": np.nan,
                 "note": f"VIF > {VIF_LIMIT:g}: collinear with the other predictors" if vif > VIF_LIMIT else "ok"}
            )
    return pd.DataFrame(rows, columns=list(DIAGNOSTIC_COLUMNS))


def check_targets(targets: Sequence[Mapping[str, float]]) -> list[dict[str, float]]:
    """Each target must map exactly P, S, T to finite positive numbers; ValueError naming it."""
    checked = []
    for i, target in enumerate(targets):
        if not isinstance(target, Mapping) or set(target) != {"P", "S", "T"}:
            raise ValueError(f"extrapolation target {i} must have exactly the keys P, S, T, got {target!r}")
        values = {}
        for key in ("P", "S", "T"):
            try:
                value = float(target[key])
            except (TypeError, ValueError):
                value = np.nan
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"extrapolation target {i}: {key} must be a finite number > 0, got {target[key]!r}")
            values[key] = value
        checked.append(values)
    return checked


def extrapolation_table(
    fits: Iterable[Law2Fit], targets: Sequence[Mapping[str, float]] = (PAPER_TARGET,), alpha: float = 0.05
) -> pd.DataFrame:
    """Predicted loss with its (1 - alpha) prediction interval per split and target model."""
    targets = check_targets(targets)
    rows = []
    for fit in fits:
        for target in targets:
            pi = fit.predict_interval(target["P"], target["S"], target["T"], alpha).iloc[0]
            rows.append({"split": fit.split, **target, "prediction": pi["prediction"],
                         "pi_low": pi["pi_low"], "pi_high": pi["pi_high"]})
    return pd.DataFrame(rows, columns=list(EXTRAPOLATION_COLUMNS))


def holdout_masks(runs: pd.DataFrame) -> dict[str, np.ndarray]:
    """The held-out sets: the runs of the largest model (max P) and of the largest budget (max S)."""
    return {
        "largest_size": (runs["P"] == runs["P"].max()).to_numpy(),
        "largest_budget": (runs["S"] == runs["S"].max()).to_numpy(),
    }


def law2_holdout(runs: pd.DataFrame, splits: Sequence[str], alpha: float = 0.05) -> pd.DataFrame:
    """Refit law 2 without each held-out set and predict its runs (an extrapolation check).

    rel_error = (predicted - observed) / observed; inside_pi says whether the observed loss
    lies in the refit's (1 - alpha) prediction interval. A held-out set whose refit is not
    identifiable (too few runs left, or P, S, T collinear without it) is left out with a
    warning in the log.
    """
    rows = []
    for held_out, mask in holdout_masks(runs).items():
        kept, test = runs.loc[~mask], runs.loc[mask]
        for split in splits:
            try:
                fit = fit_law2(kept, split)
            except NotIdentifiable as error:
                log.warning("held-out check %s on %s skipped: %s", held_out, split, error)
                continue
            pi = fit.predict_interval(test["P"], test["S"], test["T"], alpha)
            observed = test[split].to_numpy(dtype=float)
            predicted = pi["prediction"].to_numpy()
            for i, run in enumerate(test["run"]):
                rows.append(
                    {
                        "split": split,
                        "held_out": held_out,
                        "run": run,
                        "observed": observed[i],
                        "predicted": predicted[i],
                        "pi_low": pi["pi_low"].iloc[i],
                        "pi_high": pi["pi_high"].iloc[i],
                        "rel_error": (predicted[i] - observed[i]) / observed[i],
                        "inside_pi": bool(pi["pi_low"].iloc[i] <= observed[i] <= pi["pi_high"].iloc[i]),
                    }
                )
    return pd.DataFrame(rows, columns=list(HOLDOUT_COLUMNS))


def bootstrap_coefficients(
    runs: pd.DataFrame, splits: Sequence[str], n_samples: int, seed: int
) -> dict[str, np.ndarray]:
    """Law-2 coefficients of `n_samples` case resamples of the runs: split -> (n_valid, 4).

    The same resampled row sets (drawn once from numpy's default_rng(seed)) serve every
    split. A resample whose design is rank deficient (e.g. it drew two model sizes only) has
    no unique OLS solution and is dropped; columns follow LAW2_TERMS.
    """
    if n_samples < 1:
        raise ValueError(f"bootstrap needs at least 1 resample, got {n_samples}")
    X = law2_design(runs)
    Y = np.column_stack([np.log10(runs[s].to_numpy(dtype=float)) for s in splits])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(runs), size=(n_samples, len(runs)))
    coefs = []
    for rows in draws:
        Xb = X[rows]
        if np.linalg.matrix_rank(Xb) < X.shape[1]:
            continue
        coefs.append(np.linalg.lstsq(Xb, Y[rows], rcond=None)[0])  # (4, n_splits)
    if not coefs:
        return {s: np.empty((0, X.shape[1])) for s in splits}
    stacked = np.stack(coefs)  # (n_valid, 4, n_splits)
    return {s: stacked[:, :, j] for j, s in enumerate(splits)}


def law2_bootstrap(
    runs: pd.DataFrame, fits: Sequence[Law2Fit], n_samples: int, seed: int = 0, alpha: float = 0.05
) -> pd.DataFrame:
    """Percentile bootstrap CIs (case resampling) beside the OLS coefficients and CIs.

    coef, ci_low, ci_high repeat law2.csv; boot_ci_low/high are the alpha/2 and 1 - alpha/2
    percentiles over the resamples, boot_se their standard deviation and n_boot the number
    of resamples with an identifiable fit. No fits (law 2 not identifiable): no rows.
    """
    if not fits:
        return pd.DataFrame(columns=list(BOOTSTRAP_COLUMNS))
    draws = bootstrap_coefficients(runs, [f.split for f in fits], n_samples, seed)
    dropped = n_samples - len(next(iter(draws.values()))) if draws else 0
    if dropped:
        log.info("bootstrap: %d of %d resamples were rank deficient and dropped", dropped, n_samples)
    rows = []
    for fit in fits:
        boot = draws[fit.split]
        for j, term in enumerate(LAW2_TERMS):
            if len(boot) >= 2:
                low, high = np.percentile(boot[:, j], [100 * alpha / 2, 100 * (1 - alpha / 2)])
                se = boot[:, j].std(ddof=1)
            else:
                low = high = se = np.nan
            rows.append(
                {
                    "split": fit.split,
                    "term": term,
                    "coef": fit.coef[term],
                    "ci_low": fit.ci.at[term, "low"],
                    "ci_high": fit.ci.at[term, "high"],
                    "boot_ci_low": low,
                    "boot_ci_high": high,
                    "boot_se": se,
                    "n_boot": len(boot),
                }
            )
    return pd.DataFrame(rows, columns=list(BOOTSTRAP_COLUMNS))
