"""glmx against R on every case of fixtures/glm_cases.json.

Each case was produced in R 4.2.2 by (see fixtures/REFERENCE.md)::

    fit <- glm(formula, family = <family>(link = <link>), data, weights = <weights>,
               offset = <offset>, start = <start>,
               control = glm.control(epsilon = 1e-12, maxit = 100))
    # family "negbin": MASS::glm.nb(formula, data, link = log)

then continued with R's own IRLS to its fixed point by fixtures/make_polished_cases.R (the
eps = 1e-12 fit stops up to ~1e-6 short of the MLE with a non-canonical link), and the
numbers below are R's ``coef(fit)``, ``summary(fit)$coefficients``, ``vcov(fit)``,
``deviance(fit)``, ``AIC(fit)``, ``logLik(fit)``, ``residuals(fit, type)``,
``confint.default(fit)`` and ``predict(fit, newdata, se.fit = TRUE)`` of that fit.
glmx runs at its default settings and must agree with R to: coefficients 1e-8 relative
(absolute 1e-8 x SE for a coefficient that is ~0), standard errors 1e-7, deviance, AIC,
BIC and log-likelihood 1e-9, fitted values, linear predictors and residuals 1e-8.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import glmx
from refdata import assert_close, dataset, fit_case, glm_cases

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
    assert_close(actual, _arr(expected) if isinstance(expected, list) else expected, rtol, atol)


def close_vector(actual, expected, rtol=1e-8) -> None:
    """Elementwise to ``rtol``, with an absolute floor of 1e-12 x the largest |value| for
    entries that are zero up to rounding (values crossing zero)."""
    exp = _arr(expected)
    close(actual, exp, rtol=rtol, atol=1e-12 * np.nanmax(np.abs(exp)))


def close_deviance_residuals(actual, expected, rtol=1e-8) -> None:
    """Deviance residuals as signed unit deviances d |d|: a unit deviance is computed with an
    absolute rounding error of a few ulp of y, and its square root amplifies that to
    ~sqrt(eps y) where y ~ mu (R itself gives 0 or 3e-8 there).  rtol 1e-8 on d is 2e-8
    on d |d|."""
    d, ref = np.asarray(actual, dtype=float), _arr(expected)
    sq = ref * np.abs(ref)
    close(d * np.abs(d), sq, rtol=2 * rtol, atol=1e-12 * np.nanmax(np.abs(sq)))


@pytest.mark.parametrize("name", [n for n in NAMES if n != "separation_logit"])
def test_coefficients_and_standard_errors(fits, name):
    ref, fit = CASES[name], fits[name]
    assert len(fit.coef) == len(ref["coef_names"])
    se_ref = _arr(ref["se"])
    # coefficients 1e-8 relative; 1e-8 x SE absolute for those that are ~0 (1e-15 in R)
    close(fit.coef.to_numpy(), ref["coef"], rtol=1e-8, atol=1e-8 * se_ref)
    close(fit.se.to_numpy(), se_ref, rtol=1e-7)
    # statistic = coef / se: 1e-8 + 1e-7 relative, 1e-8 absolute where coef ~ 0
    close(fit.coef_table["statistic"].to_numpy(), ref["statistic"], rtol=2e-7, atol=1e-8)
    close(fit.coef_table["p_value"].to_numpy(), ref["p_value"], rtol=1e-5, atol=1e-12)
    kept = ~np.isnan(_arr(ref["coef"]))
    vref = np.array(ref["vcov"], dtype=float)
    if vref.shape[0] != kept.sum():  # R's vcov has NA rows for aliased coefficients
        vref = vref[np.ix_(kept, kept)]
    # products of two SEs and a correlation: 2e-7
    close(fit.vcov.to_numpy(), vref, rtol=2e-7, atol=1e-12 * np.abs(vref).max())
    if "confint_wald" not in ref:
        return
    # coef -/+ 1.96 se: 1e-8 relative, plus 2 x 1e-7 x se absolute (bounds near zero)
    close(
        fit.confint(method="wald").to_numpy(),
        np.array(ref["confint_wald"], dtype=float),
        rtol=1e-8,
        atol=2e-7 * se_ref[kept][:, None],
    )


@pytest.mark.parametrize("name", NAMES)
def test_fit_statistics(fits, name):
    ref, fit = CASES[name], fits[name]
    atol = 1e-9 if name == "separation_logit" else 0.0  # R's deviance there is 3.6e-15
    assert fit.nobs == ref["n_used"]
    assert fit.df_resid == ref["df_residual"]
    assert fit.df_null == ref["df_null"]
    close(fit.deviance, ref["deviance"], rtol=1e-9, atol=atol)
    close(fit.null_deviance, ref["null_deviance"], rtol=1e-9)
    # the Pearson statistic is not stationary at the MLE: residual-like, 1e-8
    close(fit.dispersion, ref["dispersion"], rtol=1e-8)
    close(fit.pearson_chi2, ref["pearson_chi2"], rtol=1e-8, atol=atol)
    if ref["loglik"] is None:
        assert np.isnan(fit.loglik) and np.isnan(fit.aic) and np.isnan(fit.bic)
    else:
        close(fit.loglik, ref["loglik"], rtol=1e-9, atol=atol)
        close(fit.aic, ref["aic"], rtol=1e-9, atol=atol)
        close(fit.bic, ref["bic"], rtol=1e-9, atol=atol)
    assert fit.converged == ref["converged"]


@pytest.mark.parametrize("name", [n for n in NAMES if n != "separation_logit"])
def test_fitted_values_and_residuals(fits, name):
    ref, fit = CASES[name], fits[name]
    close_vector(fit.fitted, ref["fitted"])
    close_vector(fit.linear_predictor, ref["linear_predictor"])
    close_deviance_residuals(fit.residuals("deviance"), ref["resid_deviance"])
    for kind in ("pearson", "working", "response"):
        close_vector(fit.residuals(kind), ref[f"resid_{kind}"])


@pytest.mark.parametrize("name", [n for n in NAMES if n != "separation_logit"])
def test_predict_with_standard_errors(fits, name):
    ref, fit = CASES[name], fits[name]
    if "predict_rows" not in ref:
        pytest.skip("R gave no predictions for this case")
    newdata = dataset(ref["case"]["data"]).iloc[ref["predict_rows"]]
    link = fit.predict(newdata, type="link", se=True)
    resp = fit.predict(newdata, type="response", se=True)
    close_vector(link["fit"].to_numpy(), ref["predict_link"])
    close(link["se"].to_numpy(), ref["predict_link_se"], rtol=1e-7)
    close_vector(resp["fit"].to_numpy(), ref["predict_response"])
    close(resp["se"].to_numpy(), ref["predict_response_se"], rtol=1e-7, atol=1e-12)


def test_negative_binomial_theta(fits):
    # MASS::glm.nb(Days ~ Eth + Sex + Age + Lrn, data = quine): theta 1.2749, SE 0.1610
    # (polished: glm.nb restarted until theta and the coefficients stop changing)
    ref, fit = CASES["quine_negbin"], fits["quine_negbin"]
    assert fit.theta == pytest.approx(ref["theta"], rel=1e-8)
    # the SE at the MLE (MASS's theta.ml information at the final theta and mu), to 1e-7;
    # MASS's SE.theta evaluates that information at the theta before theta.ml's last
    # Newton step (steps stop below 1.2e-4), which leaves it ~3e-6 off (quine)
    assert fit.theta_se == pytest.approx(ref["theta_se_mle"], rel=1e-7)
    assert fit.theta_se == pytest.approx(ref["theta_se"], rel=1e-5)
    assert 2 * fit.loglik == pytest.approx(ref["twologlik"], rel=1e-9)


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


def test_the_r_cases_are_fitted_at_default_settings(monkeypatch):
    """The tests above compare glmx at its default settings with R's fully converged fits:
    fit_case passes the case's model and data, and no solver option (tol, max_iter)."""
    seen = []
    monkeypatch.setattr(glmx, "glm", lambda *args, **kwargs: seen.append(kwargs))
    for name in NAMES:
        fit_case(CASES[name])
    assert len(seen) == len(NAMES)
    for kwargs in seen:
        assert set(kwargs) == {"family", "link", "weights", "offset", "start"}


def test_r_references_are_polished():
    """Every reference but separation_logit records R's eps = 1e-12 fit (r_eps12) and the
    restarts that took it to R's fixed point (change < 1e-14, see make_polished_cases.R)."""
    for name in NAMES:
        if name == "separation_logit":
            continue
        ref = CASES[name]
        assert ref["polish"]["change"] < 1e-14, name
        assert len(ref["r_eps12"]["coef"]) == len(ref["coef"])


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
