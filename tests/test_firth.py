"""Firth's bias-reduced binomial regression (method="firth") and its profile
penalized-likelihood intervals.

Reference numbers: tests/fixtures/glm_firth_cases.json, made by make_firth_cases.R with
R 4.2.2 and brglm2 0.9:
  glm(formula, family = binomial(link), data, weights = w, method = "brglmFit",
      type = "AS_mean", epsilon = 1e-13, maxit = 500)
for coef, se (sqrt(diag(vcov(fit)))), deviance and fitted values; `confint_profile`
(logit cases) is the profile penalized-likelihood interval computed in that script by
nlminb + uniroot on the penalized log-likelihood written out in R (logistf's method;
brglm2's own confint is Wald).  Each case records its R call in `r_call`.
"""

from __future__ import annotations

import json
import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import optimize, special, stats

import glmx
from glmx.solvers.firth import penalized_loglik
from refdata import FIXTURES, dataset, fit_case, glm_cases


@cache
def firth_cases() -> dict:
    return json.loads((FIXTURES / "glm_firth_cases.json").read_text())


def case_data(c: dict) -> pd.DataFrame:
    name = c["case"].get("data")  # absent: the simulated rows are in the case
    return pd.DataFrame(c["rows"]) if name is None else dataset(name)


def fit_firth(name: str, **kwargs) -> glmx.GLMResults:
    c = firth_cases()[name]
    cs = c["case"]
    kw = {"weights": cs.get("weights"), **kwargs}
    return glmx.glm(
        cs["formula"], case_data(c), family="binomial", link=cs["link"], method="firth",
        tol=1e-12, **kw,
    )  # fmt: skip


NAMES = list(firth_cases())
LOGIT = [k for k, c in firth_cases().items() if c.get("confint_profile")]


# separation_wide: fitted probabilities reach R's logit clamp, and glmx says so as brglm2
# does ("fitted probabilities numerically 0 or 1"), with a BoundaryWarning
@pytest.mark.filterwarnings("ignore::glmx.BoundaryWarning")
@pytest.mark.parametrize("name", NAMES)
def test_estimates_match_brglm2(name: str) -> None:
    # R: see `r_call` of the case (brglm2 AS_mean, epsilon = 1e-13)
    ref = firth_cases()[name]
    fit = fit_firth(name)
    assert fit.converged
    assert len(fit.coef) == len(ref["coef_names"])  # R's names, in R's (and glmx's) order
    np.testing.assert_allclose(fit.coef.to_numpy(), ref["coef"], rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(fit.se.to_numpy(), ref["se"], rtol=1e-8, atol=1e-9)
    assert fit.deviance == pytest.approx(ref["deviance"], rel=1e-9)
    np.testing.assert_allclose(fit.fitted[:5], ref["fitted_head"], rtol=1e-8)
    if not ref["case"].get("offset"):  # brglm2 reuses the full fit's mu with an offset
        # brglm2 fits the intercept-only model by Firth too
        assert fit.null_deviance == pytest.approx(ref["null_deviance"], rel=1e-8)


@pytest.mark.parametrize("name", LOGIT)
def test_profile_intervals_match_independent_r(name: str) -> None:
    # R: nlminb-maximized penalized likelihood + uniroot (make_firth_cases.R, profile_pl)
    ref = firth_cases()[name]
    ci = fit_firth(name).confint()
    np.testing.assert_allclose(ci.to_numpy(), np.array(ref["confint_profile"]), atol=1e-7)
    # the interval is not the Wald one: separated data make it strongly asymmetric
    assert not np.allclose(ci.to_numpy(), fit_firth(name).confint(method="wald"), atol=1e-3)


def test_penalized_loglik_at_estimate_matches_r() -> None:
    # pl_max of make_firth_cases.R: the binomial kernel plus 0.5 log|X'WX| (0/1 data, so
    # the binomial coefficients of R's logLik are 0)
    for name in ("separation", "mtcars", "quasi_separation"):
        fit = fit_firth(name)
        f = fit._fit
        pl = penalized_loglik(f.X, f.y, f.weights, f.freq_weights, f.offset, f.coef)
        assert pl == pytest.approx(firth_cases()[name]["pl_max"], rel=1e-11)


def _numpy_pl(X: np.ndarray, y: np.ndarray, beta: np.ndarray) -> float:
    """Firth's penalized log-likelihood for 0/1 data, written out independently."""
    eta = X @ beta
    mu = special.expit(eta)
    loglik = np.sum(y * np.log(mu) + (1 - y) * np.log1p(-mu))
    info = X.T @ (X * (mu * (1 - mu))[:, None])
    return float(loglik + 0.5 * np.linalg.slogdet(info)[1])


def test_profile_interval_by_brute_force_on_separated_data() -> None:
    df = dataset("separation")
    X = np.column_stack([np.ones(len(df)), df["x"].to_numpy(float)])
    y = df["y"].to_numpy(float)
    fit = glmx.glm("y ~ x", df, family="binomial", method="firth", tol=1e-12)
    bhat = fit.coef.to_numpy()
    assert penalized_loglik(X, y, None, None, None, bhat) == pytest.approx(
        _numpy_pl(X, y, bhat), rel=1e-13
    )
    pl_max = _numpy_pl(X, y, bhat)
    crit = stats.chi2.ppf(0.95, 1)

    def deficit(b: float) -> float:  # 2 (pl_max - max over the intercept at slope b) - crit
        res = optimize.minimize_scalar(lambda a: -_numpy_pl(X, y, np.array([a, b])),
                                       bracket=(-1.0, 1.0), tol=1e-12)  # fmt: skip
        return 2.0 * (pl_max + res.fun) - crit

    grid = np.linspace(bhat[1] - 5.0, bhat[1] + 8.0, 53)
    vals = np.array([deficit(b) for b in grid])
    inside = vals < 0
    lo_i, hi_i = np.flatnonzero(inside)[[0, -1]]
    lower = optimize.brentq(deficit, grid[lo_i - 1], grid[lo_i], xtol=1e-12)
    upper = optimize.brentq(deficit, grid[hi_i], grid[hi_i + 1], xtol=1e-12)
    ci = fit.confint().loc["x"]
    assert ci["lower"] == pytest.approx(lower, abs=1e-6)
    assert ci["upper"] == pytest.approx(upper, abs=1e-6)
    # finite although the ML slope is infinite; logistf-like asymmetry around 1.779
    assert 0.2 < ci["lower"] < bhat[1] < 6.0 < ci["upper"] < 7.0


@pytest.mark.parametrize("name", ["separation", "quasi_separation"])
def test_separation_warning_then_finite_firth_estimates(name: str) -> None:
    c = firth_cases()[name]
    df = case_data(c)
    with pytest.warns(glmx.SeparationWarning):
        ml = glmx.glm(c["case"]["formula"], df, family="binomial")
    assert np.max(np.abs(ml.coef)) > 20  # ML drifts towards infinity
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Firth raises no separation (or other) warning
        fit = glmx.glm(c["case"]["formula"], df, family="binomial", method="firth", tol=1e-12)
    assert fit.converged and np.all(np.isfinite(fit.coef)) and np.all(np.isfinite(fit.se))
    np.testing.assert_allclose(fit.coef.to_numpy(), c["coef"], rtol=1e-8, atol=1e-9)
    assert np.all((fit.fitted > 1e-5) & (fit.fitted < 1 - 1e-5))  # ML's reach 1 - 1e-10


def test_frequency_weights_match_brglm2_counts_and_duplicated_rows() -> None:
    # brglm2 with weights = count on a 0/1 response is glmx's freq_weights = count
    ref = firth_cases()["quasi_separation_counts"]
    df = case_data(ref)
    fit = glmx.glm("y ~ x + g", df, family="binomial", freq_weights="count",
                   method="firth", tol=1e-12)  # fmt: skip
    np.testing.assert_allclose(fit.coef.to_numpy(), ref["coef"], rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(fit.se.to_numpy(), ref["se"], rtol=1e-8, atol=1e-9)
    long = df.iloc[np.repeat(np.arange(len(df)), df["count"])].reset_index(drop=True)
    dup = glmx.glm("y ~ x + g", long, family="binomial", method="firth", tol=1e-12)
    np.testing.assert_allclose(dup.coef.to_numpy(), fit.coef.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(dup.se.to_numpy(), fit.se.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(dup.confint().to_numpy(), fit.confint().to_numpy(), atol=1e-7)


def test_trials_equal_bernoulli_rows() -> None:
    # a proportion with trials as weights is the same estimate as the 0/1 rows it stands for
    bw = glmx.datasets.load("budworm")
    agg = glmx.glm("prop ~ ldose + sex", bw, family="binomial", weights="total", method="firth")
    dead = bw.assign(y=1.0, n=bw["numdead"])
    alive = bw.assign(y=0.0, n=bw["total"] - bw["numdead"])
    rows = pd.concat([dead, alive], ignore_index=True)
    long = rows.iloc[np.repeat(np.arange(len(rows)), rows["n"])].reset_index(drop=True)
    fit = glmx.glm("y ~ ldose + sex", long, family="binomial", method="firth")
    np.testing.assert_allclose(fit.coef.to_numpy(), agg.coef.to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(fit.se.to_numpy(), agg.se.to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(
        agg.coef.to_numpy(), firth_cases()["budworm_logit"]["coef"], rtol=1e-7
    )


def test_aliased_column_is_nan_and_others_unchanged() -> None:
    mt = glmx.datasets.load("mtcars")
    X = np.column_stack([np.ones(len(mt)), mt["wt"], mt["hp"], 2.0 * mt["wt"]])
    y = mt["am"].to_numpy(float)
    fit = glmx.glm_fit(X, y, family="binomial", method="firth", tol=1e-12)
    assert fit.aliased.tolist() == [False, False, False, True]
    assert np.isnan(fit.coef.iloc[3]) and np.isnan(fit.se.iloc[3])
    np.testing.assert_allclose(fit.coef.to_numpy()[:3], firth_cases()["mtcars"]["coef"], rtol=1e-8)
    np.testing.assert_allclose(fit.se.to_numpy()[:3], firth_cases()["mtcars"]["se"], rtol=1e-8)


def test_sparse_design_equals_dense() -> None:
    mt = glmx.datasets.load("mtcars")
    X = np.column_stack([np.ones(len(mt)), mt["wt"], mt["hp"]])
    y = mt["am"].to_numpy(float)
    dense = glmx.glm_fit(X, y, family="binomial", method="firth", tol=1e-12)
    sparse = glmx.glm_fit(sp.csr_matrix(X), y, family="binomial", method="firth", tol=1e-12)
    np.testing.assert_allclose(sparse.coef.to_numpy(), dense.coef.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(sparse.se.to_numpy(), dense.se.to_numpy(), rtol=1e-10)


def test_estimate_maximizes_the_penalized_loglik() -> None:
    fit = fit_firth("mtcars")
    f = fit._fit
    bhat = f.coef

    def pl(b: np.ndarray) -> float:
        return penalized_loglik(f.X, f.y, f.weights, f.freq_weights, f.offset, b)

    h = 1e-5 * fit.se.to_numpy()
    grad = [
        (pl(bhat + h[j] * e) - pl(bhat - h[j] * e)) / (2 * h[j]) for j, e in enumerate(np.eye(3))
    ]
    np.testing.assert_allclose(np.array(grad) * fit.se.to_numpy(), 0.0, atol=1e-6)
    rng = np.random.default_rng(1)
    for _ in range(5):
        assert pl(bhat + 0.1 * fit.se.to_numpy() * rng.standard_normal(3)) < pl(bhat)


def test_errors() -> None:
    bw = glmx.datasets.load("budworm")
    probit = glmx.glm("prop ~ ldose + sex", bw, family="binomial", link="probit",
                      weights="total", method="firth")  # fmt: skip
    with pytest.raises(glmx.FamilyError, match="logit link"):
        probit.confint()
    ci = probit.confint(method="wald")  # Wald intervals remain available
    assert ci.loc["ldose", "lower"] == pytest.approx(0.619366577839841 - 1.959963984540054 * 0.0687045349883473, rel=1e-7)  # fmt: skip
    with pytest.raises(glmx.FamilyError, match="binomial"):
        glmx.glm("prop ~ ldose", bw, family="quasibinomial", weights="total", method="firth")
    with pytest.raises(glmx.FamilyError, match="binomial"):
        glmx.glm("numdead ~ ldose", bw, family="poisson", method="firth")


def test_start_values_and_fit_log() -> None:
    ref = firth_cases()["mtcars"]
    fit = fit_firth("mtcars", start=[10.0, -4.0, 0.02])
    np.testing.assert_allclose(fit.coef.to_numpy(), ref["coef"], rtol=1e-8)
    assert fit.n_iter == len(fit.fit_log.deviance) > 0
    assert fit.fit_log.deviance[-1] == pytest.approx(ref["deviance"], rel=1e-9)


def test_ordinary_profile_intervals_unchanged() -> None:
    # MASS:::confint.glm from glm_cases.json: the non-Firth path of profile.py (MASS
    # interpolates a spline through the profile, hence the tolerance of test_r_reference)
    for c in glm_cases().values():
        if c["case"]["family"] == "binomial" and c.get("confint_profile"):
            fit = fit_case(c)
            np.testing.assert_allclose(
                fit.confint().to_numpy(), np.array(c["confint_profile"], dtype=float), rtol=2e-3
            )
            return
    pytest.fail("no binomial case with confint_profile in glm_cases.json")
