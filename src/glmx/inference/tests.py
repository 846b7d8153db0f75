"""Specification tests of a fitted GLM: chi-squared goodness of fit, overdispersion
(Pearson ratio; Cameron & Trivedi for Poisson) and Pregibon's link test."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from glmx.errors import DataError, FamilyError, GlmxWarning
from glmx.families.exponential import Binomial, Poisson
from glmx.families.negbin import NegativeBinomial
from glmx.results.rformat import format_pval

if TYPE_CHECKING:
    from glmx.results.glm import GLMResults

# Cochran's rule for the chi-squared approximation: expected counts of at least 5 in
# 80% of the cells and none below 1
SMALL_EXPECTED = 5.0
SMALL_SHARE = 0.2


def binary_response(fit: GLMResults) -> bool:
    """A binomial fit to ungrouped 0/1 data (every used row is one trial)."""
    f = fit._fit
    pos = f.weights > 0
    return (
        isinstance(fit.family, Binomial)
        and bool(np.all(f.weights[pos] == 1.0))
        and bool(np.all((f.y[pos] == 0.0) | (f.y[pos] == 1.0)))
    )


def _expected_counts(fit: GLMResults) -> np.ndarray:
    """The smallest expected count of each used row: mu for counts, min(m mu, m (1-mu))
    for binomial with m trials."""
    f = fit._fit
    pos = f.weights > 0
    if isinstance(fit.family, Binomial):
        m = f.weights[pos]
        return np.minimum(m * f.mu[pos], m * (1.0 - f.mu[pos]))
    return f.mu[pos]


def goodness_of_fit(fit: GLMResults) -> pd.DataFrame:
    """Deviance and Pearson chi-squared goodness-of-fit tests on ``df_resid`` degrees of
    freedom, for fixed-dispersion families (binomial, poisson, negative binomial):
    rows ``deviance`` and ``pearson``, columns ``statistic, df, p_value`` with
    p = P(chi^2_df >= statistic).  Small p-values mean lack of fit (or overdispersion).

    Warns (:class:`glmx.GlmxWarning`) when the chi-squared approximation is doubtful:
    binary data, or many small expected counts (Cochran's rule: more than 20% below 5,
    or any below 1).  Families with an estimated dispersion raise
    :class:`glmx.FamilyError`: their scaled deviance equals df_resid by construction."""
    fam = fit.family
    if not fam.fixed_dispersion:
        raise FamilyError(
            f"no chi-squared goodness-of-fit test for the {fam.name} family: its dispersion "
            "is estimated from the same residuals (the scaled Pearson statistic equals "
            "df_resid by construction); check the fit with residual plots instead"
        )
    if binary_response(fit):
        warnings.warn(
            "goodness of fit on binary (0/1) data: the deviance and Pearson statistics do "
            "not follow a chi-squared distribution however many rows there are; group the "
            "data (as binomial counts) or use a Hosmer-Lemeshow type test",
            GlmxWarning,
            stacklevel=3,
        )
    else:
        e = _expected_counts(fit)
        small = float(np.mean(e < SMALL_EXPECTED))
        if small > SMALL_SHARE or np.any(e < 1.0):
            warnings.warn(
                f"the chi-squared approximation may be poor: {small:.0%} of the expected "
                f"counts are below {SMALL_EXPECTED:g} (smallest {e.min():.3g})",
                GlmxWarning,
                stacklevel=3,
            )
    df = float(fit.df_resid)
    stat = np.array([fit.deviance, fit.pearson_chi2])
    return pd.DataFrame(
        {"statistic": stat, "df": [df, df], "p_value": stats.chi2.sf(stat, df)},
        index=pd.Index(["deviance", "pearson"], name="test"),
    )


@dataclass(frozen=True)
class DispersionTest:
    """Overdispersion tests of a Poisson or binomial fit.

    ``ratio`` = pearson_chi2 / df_resid (about 1 without overdispersion); ``statistic``
    the Pearson chi-squared on ``df`` = df_resid; ``p_value`` = P(chi^2_df >= statistic),
    one-sided against overdispersion.  Poisson fits (unit prior weights) add Cameron &
    Trivedi's test as ``AER::dispersiontest(fit)``: with a_i = ((y - mu)^2 - y) / mu,
    ``ct_dispersion`` = mean(a) + 1 and ``ct_statistic`` = sqrt(n) mean(a) / sd(a), with
    the upper normal tail ``ct_p_value``; NaN otherwise.
    """

    ratio: float
    statistic: float
    df: float
    p_value: float
    ct_dispersion: float = float("nan")
    ct_statistic: float = float("nan")
    ct_p_value: float = float("nan")

    def to_frame(self) -> pd.DataFrame:
        """A one-row DataFrame of the fields."""
        return pd.DataFrame([self.__dict__])


def _cameron_trivedi(fit: GLMResults) -> tuple[float, float, float]:
    f = fit._fit
    pos = f.weights > 0
    if not np.all(f.weights[pos] == 1.0):
        return (np.nan, np.nan, np.nan)
    y, mu, n_i = f.y[pos], f.mu[pos], f.freq_weights[pos]
    # one row or sd 0 (an exact fit), means beyond 1e154 (extreme offsets): NaN or inf
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        a = ((y - mu) ** 2 - y) / mu  # mean dispersion - 1 when Var(y) = dispersion mu
        n = float(np.sum(n_i))
        mean = float(np.sum(n_i * a)) / n
        sd = float(np.sqrt(np.sum(n_i * (a - mean) ** 2) / np.float64(n - 1.0)))
        z = np.sqrt(n) * mean / sd
    return (mean + 1.0, float(z), float(stats.norm.sf(z)))


def dispersion_test(fit: GLMResults) -> DispersionTest:
    """Test a Poisson or binomial fit (or its quasi version) for overdispersion; see
    :class:`DispersionTest` for what is returned.  Binary data warn: their Pearson
    statistic says nothing about overdispersion."""
    fam = fit.family
    if not isinstance(fam, (Poisson, Binomial)):
        raise FamilyError(
            f"the overdispersion test is for poisson and binomial fits, not {fam.name}"
        )
    if binary_response(fit):
        warnings.warn(
            "overdispersion cannot be seen in binary (0/1) data: the Pearson ratio is "
            "not informative there",
            GlmxWarning,
            stacklevel=3,
        )
    df = float(fit.df_resid)
    x2 = fit.pearson_chi2
    ct = _cameron_trivedi(fit) if isinstance(fam, Poisson) else (np.nan, np.nan, np.nan)
    return DispersionTest(
        ratio=x2 / df if df > 0 else np.nan,
        statistic=x2,
        df=df,
        p_value=float(stats.chi2.sf(x2, df)) if df > 0 else np.nan,
        ct_dispersion=ct[0],
        ct_statistic=ct[1],
        ct_p_value=ct[2],
    )


@dataclass(frozen=True)
class LinkTest:
    """Pregibon's link test (Stata's ``linktest``).  ``coef``, ``se``, ``statistic``
    (z, or t on the refit's df_resid for estimated-dispersion families) and ``p_value``
    of the squared linear predictor; ``table`` is the refit's coefficient table (rows
    ``(Intercept)``, ``hat``, ``hatsq``).  A small p-value says the link (or the linear
    predictor) is misspecified."""

    coef: float
    se: float
    statistic: float
    p_value: float
    table: pd.DataFrame


def link_test(fit: GLMResults) -> LinkTest:
    """Refit the same family and link on hat = X b (the linear predictor without the
    offset) and hat^2 with an intercept, keeping the weights and offset:

        g(mu) = offset + a + b hat + c hat^2,   H0: c = 0

    A negative binomial re-estimates theta; the covariance type is the fit's."""
    from glmx.fitting import glm_fit

    f = fit._fit
    hat = f.eta - f.offset
    pos = f.weights > 0
    if np.ptp(hat[pos]) <= 1e-12 * max(1.0, float(np.max(np.abs(hat[pos])))):
        raise DataError("the link test needs a model whose linear predictor varies (a predictor)")
    fam = fit.family
    if isinstance(fam, NegativeBinomial) and fam.estimate_theta:
        fam = NegativeBinomial(theta=None, link=fam.link)
    X = np.column_stack([np.ones_like(hat), hat, hat**2])
    refit = glm_fit(
        X, f.y, family=fam, weights=f.weights, freq_weights=f.freq_weights, offset=f.offset,
        tol=f.tol, max_iter=f.max_iter, column_names=["(Intercept)", "hat", "hatsq"],
        intercept=True, method=f.method, cov_type=f.cov_type, cluster=f.cluster,
    )  # fmt: skip
    table = refit.coef_table
    row = table.loc["hatsq"]
    return LinkTest(
        coef=float(row["estimate"]),
        se=float(row["std_error"]),
        statistic=float(row["statistic"]),
        p_value=float(row["p_value"]),
        table=table,
    )


def dispersion_note(fit: GLMResults) -> list[str]:
    """The summary's line on overdispersion for Poisson and binomial fits (not quasi, not
    binary data), e.g. ``(Pearson dispersion ratio: 1.43 on 139 df; overdispersion test
    p = 0.003)``; an empty list otherwise."""
    fam = fit.family
    if not isinstance(fam, (Poisson, Binomial)) or fam.is_quasi or binary_response(fit):
        return []
    if fit.df_resid <= 0:
        return []
    t = dispersion_test(fit)
    p = format_pval([t.p_value], 3)[0]
    p = f"p < {p.lstrip('< ')}" if p.startswith("<") else f"p = {p}"
    return [f"(Pearson dispersion ratio: {t.ratio:.3g} on {t.df:g} df; overdispersion test {p})"]
