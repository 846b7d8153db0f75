"""glmx against R on every case of fixtures/glm_cases.json.

Each case was produced in R 4.2.2 by (see fixtures/REFERENCE.md)::

    fit <- glm(formula, family = <family>(link = <link>), data, weights = <weights>,
               offset = <offset>, start = <start>,
               control = glm.control(epsilon = 1e-12, maxit = 100))
    # family "negbin": MASS::glm.nb(formula, data, link = log)

and the numbers below are R's ``coef(fit)``, ``summary(fit)$coefficients``,
``vcov(fit)``, ``deviance(fit)``, ``AIC(fit)``, ``logLik(fit)``, ``residuals(fit, type)``,
``confint.default(fit)`` and ``predict(fit, newdata, se.fit = TRUE)``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import glmx
from refdata import dataset, fit_case, glm_cases

CASES = glm_cases()
NAMES = sorted(CASES)


def _arr(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


@pytest.fixture(scope="module")
def fits() -> dict:
    out = {}
    for name in NAMES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", glmx.GlmxWarning)
            out[name] = fit_case(CASES[name])
    return out


def close(actual, expected, rtol, atol=0.0) -> None:
    np.testing.assert_allclose(
        actual, _arr(expected) if isinstance(expected, list) else expected, rtol=rtol, atol=atol
    )


@pytest.mark.parametrize("name", [n for n in NAMES if n != "separation_logit"])
def test_coefficients_and_standard_errors(fits, name):
    ref, fit = CASES[name], fits[name]
    assert len(fit.coef) == len(ref["coef_names"])
    close(fit.coef.to_numpy(), ref["coef"], rtol=1e-6, atol=1e-12)
    close(fit.se.to_numpy(), ref["se"], rtol=1e-5)
    close(fit.coef_table["statistic"].to_numpy(), ref["statistic"], rtol=1e-5, atol=1e-10)
    close(fit.coef_table["p_value"].to_numpy(), ref["p_value"], rtol=1e-5, atol=1e-12)
    kept = ~np.isnan(_arr(ref["coef"]))
    vref = np.array(ref["vcov"], dtype=float)
    if vref.shape[0] != kept.sum():  # R's vcov has NA rows for aliased coefficients
        vref = vref[np.ix_(kept, kept)]
    np.testing.assert_allclose(
        fit.vcov.to_numpy(), vref, rtol=1e-5, atol=1e-12 * np.abs(vref).max()
    )
    # bounds near zero: allow what the SE tolerance allows (2 x 1e-5 x se)
    if "confint_wald" not in ref:
        return
    ci_atol = 2e-5 * float(np.nanmax(_arr(ref["se"])))
    close(
        fit.confint(method="wald").to_numpy(),
        np.array(ref["confint_wald"], dtype=float),
        rtol=1e-6,
        atol=ci_atol,
    )


@pytest.mark.parametrize("name", NAMES)
def test_fit_statistics(fits, name):
    ref, fit = CASES[name], fits[name]
    atol = 1e-9 if name == "separation_logit" else 0.0  # R's deviance there is 3.6e-15
    assert fit.nobs == ref["n_used"]
    assert fit.df_resid == ref["df_residual"]
    assert fit.df_null == ref["df_null"]
    close(fit.deviance, ref["deviance"], rtol=1e-7, atol=atol)
    close(fit.null_deviance, ref["null_deviance"], rtol=1e-7)
    close(fit.dispersion, ref["dispersion"], rtol=1e-7)
    close(fit.pearson_chi2, ref["pearson_chi2"], rtol=1e-7, atol=atol)
    if ref["loglik"] is None:
        assert np.isnan(fit.loglik) and np.isnan(fit.aic) and np.isnan(fit.bic)
    else:
        close(fit.loglik, ref["loglik"], rtol=1e-7, atol=atol)
        close(fit.aic, ref["aic"], rtol=1e-7, atol=atol)
        close(fit.bic, ref["bic"], rtol=1e-7, atol=atol)
    assert fit.converged == ref["converged"]


@pytest.mark.parametrize("name", [n for n in NAMES if n != "separation_logit"])
def test_fitted_values_and_residuals(fits, name):
    ref, fit = CASES[name], fits[name]
    close(fit.fitted, ref["fitted"], rtol=1e-6)
    close(fit.linear_predictor, ref["linear_predictor"], rtol=1e-6, atol=1e-9)
    for kind in ("deviance", "pearson", "working", "response"):
        close(fit.residuals(kind), ref[f"resid_{kind}"], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "separation_logit"])
def test_predict_with_standard_errors(fits, name):
    ref, fit = CASES[name], fits[name]
    if "predict_rows" not in ref:
        pytest.skip("R gave no predictions for this case")
    newdata = dataset(ref["case"]["data"]).iloc[ref["predict_rows"]]
    link = fit.predict(newdata, type="link", se=True)
    resp = fit.predict(newdata, type="response", se=True)
    close(link["fit"].to_numpy(), ref["predict_link"], rtol=1e-6, atol=1e-9)
    close(link["se"].to_numpy(), ref["predict_link_se"], rtol=1e-5)
    close(resp["fit"].to_numpy(), ref["predict_response"], rtol=1e-6)
    close(resp["se"].to_numpy(), ref["predict_response_se"], rtol=1e-5, atol=1e-12)


def test_negative_binomial_theta(fits):
    # MASS::glm.nb(Days ~ Eth + Sex + Age + Lrn, data = quine): theta 1.2749, SE 0.1610
    ref, fit = CASES["quine_negbin"], fits["quine_negbin"]
    assert fit.theta == pytest.approx(ref["theta"], rel=1e-4)
    assert fit.theta_se == pytest.approx(ref["theta_se"], rel=1e-4)
    assert 2 * fit.loglik == pytest.approx(ref["twologlik"], rel=1e-7)


def test_separation_warns_and_names_the_predictor():
    # R: glm(y ~ x, binomial, separation) warns "fitted probabilities numerically 0 or 1"
    with pytest.warns(glmx.SeparationWarning, match=r"complete separation.*'x'"):
        fit = fit_case(CASES["separation_logit"])
    assert fit.deviance < 1e-8
    assert any("separation" in w for w in fit.warnings)


def test_collinear_column_is_aliased_as_in_r():
    # R: coef(glm(y ~ x1 + x2 + x3, data = collinear)) has NA for x2 (x2 = 2 x1 + 1)
    fit = fit_case(CASES["collinear_gaussian"])
    assert fit.aliased.tolist() == CASES["collinear_gaussian"]["aliased"]
    assert np.isnan(fit.coef["x2"]) and np.isnan(fit.se["x2"])
    assert fit.rank == 3
    assert "x2" not in fit.vcov.index


def test_default_tolerance_agrees_with_r():
    """glmx's default tol=1e-10 stops earlier than R's epsilon=1e-12 runs; Fisher scoring
    with a non-canonical link converges linearly, so the estimates then agree to about
    1e-5 (not to the last digits: pass tol=1e-12 to reproduce R's iterations exactly)."""
    for name in NAMES:
        if name == "separation_logit":
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", glmx.GlmxWarning)
            fit = fit_case(CASES[name], tol=1e-10)
        ref_coef = _arr(CASES[name]["coef"])
        scale = float(np.nanmax(np.abs(ref_coef)))
        close(fit.coef.to_numpy(), CASES[name]["coef"], rtol=1e-5, atol=1e-6 * scale)
        close(fit.se.to_numpy(), CASES[name]["se"], rtol=1e-5)
        close(fit.deviance, CASES[name]["deviance"], rtol=1e-7)


@pytest.mark.parametrize("name", [n for n in NAMES if CASES[n].get("confint_profile")])
def test_profile_confint_matches_mass(fits, name):
    # R: MASS:::confint.glm(fit) -- MASS interpolates a spline through the profile,
    # glmx solves for the roots, so agreement is to MASS's interpolation error
    ci = fits[name].confint(level=0.95)
    ref = np.array(CASES[name]["confint_profile"], dtype=float)
    np.testing.assert_allclose(ci.to_numpy(), ref, rtol=2e-3, atol=1e-6 * np.abs(ref).max())
    assert (ci["lower"] < fits[name].coef).all() and (fits[name].coef < ci["upper"]).all()


def test_results_are_immutable(fits):
    fit = fits["dobson_poisson"]
    with pytest.raises(AttributeError, match="immutable"):
        fit.coef = None
    with pytest.raises(ValueError, match="read-only"):
        fit.fitted[0] = 1.0
