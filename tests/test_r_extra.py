"""glmx against R on the extra cases of fixtures/glm_extra_cases.json.

The cases and R's numbers come from ``tests/fixtures/make_extra_cases.R`` (run it from
tests/fixtures with ``Rscript make_extra_cases.R``; R 4.2, MASS, statmod).  Each case is::

    fit <- glm(formula, family = <family>(link = <link>), data, weights = <weights>,
               offset = <offset>, start = <start>,
               control = glm.control(epsilon = 1e-12, maxit = 100))
    # tweedie: statmod::tweedie(var.power = <tweedie_power>, link.power = 0)  (log link)
    # quasi: quasi(link = <link>, variance = <quasi_variance>)
    # negative.binomial: MASS::negative.binomial(theta = <theta>)  (theta fixed)
    # negbin: MASS::glm.nb(formula, data, control = ...)  (theta estimated)

continued with R's own IRLS to its fixed point by ``make_polished_cases.R`` (R's
eps = 1e-12 stop is up to ~2e-6 short of the MLE with a non-canonical link; the eps = 1e-12
numbers are kept in ``r_eps12``), with R's ``coef(fit)``, ``summary(fit)$coefficients``,
``vcov(fit)``, ``deviance(fit)``, ``AIC(fit)``, ``BIC(fit)``, ``logLik(fit)``,
``residuals(fit, type)``, ``confint.default(fit)`` and ``predict(fit, newdata, se.fit =
TRUE)`` of that fit.  ``case["note"]`` explains cases where the recorded number is not R's
plain output (zero prior weights).  glmx runs at its default settings; tolerances as in
test_r_reference.py: coefficients 1e-8 (1e-8 x SE absolute), SEs 1e-7, deviance, AIC, BIC
and log-likelihood 1e-9, fitted values, linear predictors and residuals 1e-8.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pytest

import glmx
from refdata import R_FAMILY, R_LINK, assert_close, dataset, glm_cases

CASES = glm_cases("glm_extra_cases.json")
NAMES = sorted(CASES)
NEGBIN = [n for n in NAMES if CASES[n]["case"]["family"] in ("negbin", "negative.binomial")]


def _arr(values) -> np.ndarray:
    """R's numbers as floats; JSON null (R's NA) becomes NaN (numpy maps None to NaN)."""
    return np.array(values, dtype=float)


def close(actual, expected, rtol, atol=0.0) -> None:
    assert_close(actual, _arr(expected), rtol, atol)


def close_vector(actual, expected, rtol=1e-8) -> None:
    """Elementwise to ``rtol``; absolute floor 1e-12 x the largest |value| (zero crossings)."""
    exp = _arr(expected)
    close(actual, exp, rtol=rtol, atol=1e-12 * np.nanmax(np.abs(exp)))


def close_deviance_residuals(actual, expected, rtol=1e-8) -> None:
    """Deviance residuals d as d |d| (see test_r_reference.py: where y ~ mu, the square root
    of a unit deviance with rounding error of a few ulp of y is ~sqrt(eps y), in R and in
    glmx alike); rtol on d is 2 rtol on d |d|."""
    d, ref = np.asarray(actual, dtype=float), _arr(expected)
    sq = ref * np.abs(ref)
    close(d * np.abs(d), sq, rtol=2 * rtol, atol=1e-12 * np.nanmax(np.abs(sq)))


def extra_family(c: dict):
    """The glmx family object for a case's R family."""
    link = R_LINK.get(c["link"], c["link"])
    fam = c["family"]
    if fam == "tweedie":
        return glmx.families.tweedie(power=c["tweedie_power"], link=link)
    if fam == "quasi":
        return glmx.families.quasi(link=link, variance=c["quasi_variance"])
    if fam == "negative.binomial":
        return glmx.families.negative_binomial(theta=c["theta"], link=link)
    return glmx.families.get_family(R_FAMILY.get(fam, fam), link)


@cache
def fit(name: str):
    c = CASES[name]["case"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", glmx.GlmxWarning)
        return glmx.glm(
            c["formula"],
            dataset(c["data"]),
            family=extra_family(c),
            weights=c.get("weights"),
            offset=c.get("offset"),
            start=c.get("start"),
        )


@pytest.mark.parametrize("name", NAMES)
def test_coefficients_and_standard_errors(name):
    ref, res = CASES[name], fit(name)
    assert len(res.coef) == len(ref["coef_names"])
    assert res.aliased.tolist() == ref["aliased"]
    se_ref = _arr(ref["se"])
    close(res.coef.to_numpy(), ref["coef"], rtol=1e-8, atol=1e-8 * se_ref)
    close(res.se.to_numpy(), se_ref, rtol=1e-7)
    close(res.coef_table["statistic"].to_numpy(), ref["statistic"], rtol=2e-7, atol=1e-8)
    close(res.coef_table["p_value"].to_numpy(), ref["p_value"], rtol=1e-5, atol=1e-12)
    kept = ~np.asarray(ref["aliased"])
    vref = _arr(ref["vcov"])
    if vref.shape[0] != kept.sum():  # R's vcov has NA rows for aliased coefficients
        vref = vref[np.ix_(kept, kept)]
    close(res.vcov.to_numpy(), vref, rtol=2e-7, atol=1e-12 * np.abs(vref).max())
    ci = _arr(ref["confint_wald"])
    ci_se = se_ref if ci.shape[0] == len(se_ref) else se_ref[kept]
    close(res.confint(method="wald").to_numpy(), ci, rtol=1e-8, atol=2e-7 * ci_se[:, None])


@pytest.mark.parametrize("name", NAMES)
def test_fit_statistics(name):
    ref, res = CASES[name], fit(name)
    assert res.nobs == ref["n_used"]
    assert res.df_resid == ref["df_residual"]
    assert res.df_null == ref["df_null"]
    assert res.converged == ref["converged"]
    close(res.deviance, ref["deviance"], rtol=1e-9)
    close(res.null_deviance, ref["null_deviance"], rtol=1e-9)
    close(res.dispersion, ref["dispersion"], rtol=1e-8)  # Pearson-based: residual-like
    close(res.pearson_chi2, ref["pearson_chi2"], rtol=1e-8)
    for key, value in (("loglik", res.loglik), ("aic", res.aic), ("bic", res.bic)):
        if ref[key] is None:  # R: NA (quasi, tweedie)
            assert np.isnan(value), f"{key}: R gives NA, glmx {value!r}"
        else:
            close(value, ref[key], rtol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_fitted_values_and_residuals(name):
    ref, res = CASES[name], fit(name)
    close_vector(res.fitted, ref["fitted"])
    close_vector(res.linear_predictor, ref["linear_predictor"])
    close_deviance_residuals(res.residuals("deviance"), ref["resid_deviance"])
    for kind in ("pearson", "working", "response"):
        close_vector(res.residuals(kind), ref[f"resid_{kind}"])


@pytest.mark.parametrize("name", NAMES)
def test_predict_with_standard_errors(name):
    ref, res = CASES[name], fit(name)
    newdata = dataset(ref["case"]["data"]).iloc[ref["predict_rows"]]
    link = res.predict(newdata, type="link", se=True)
    resp = res.predict(newdata, type="response", se=True)
    close_vector(link["fit"].to_numpy(), ref["predict_link"])
    close(link["se"].to_numpy(), ref["predict_link_se"], rtol=1e-7)
    close_vector(resp["fit"].to_numpy(), ref["predict_response"])
    close(resp["se"].to_numpy(), ref["predict_response_se"], rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("name", NEGBIN)
def test_negative_binomial_theta(name):
    ref, res = CASES[name], fit(name)
    if ref["case"]["family"] == "negative.binomial":  # fixed theta
        assert res.theta == ref["case"]["theta"]
        return
    assert res.theta == pytest.approx(ref["theta"], rel=1e-8)
    # the SE at the MLE (MASS's theta.ml information at the final theta and mu), to 1e-7;
    # MASS's SE.theta evaluates that information at the theta before theta.ml's last
    # Newton step (steps stop below 1.2e-4), which leaves it ~3e-6 off (quine)
    assert res.theta_se == pytest.approx(ref["theta_se_mle"], rel=1e-7)
    assert res.theta_se == pytest.approx(ref["theta_se"], rel=1e-5)
    assert 2 * res.loglik == pytest.approx(ref["twologlik"], rel=1e-9)
