"""Regression splines in glmx formulas, end to end: formulaic's bs() and cr().

R's numbers come from tests/fixtures/make_spline_cases.R (glm_spline_cases.json).
formulaic's bs(x, df) is splines::bs(x, df): same knots (type-7 quantiles of x, range of
x as boundary knots), same basis, so coefficients agree too.  formulaic's cr(x, df) is
mgcv's unpenalized cubic regression spline basis (knots at quantiles of unique(x)) with
no centering constraint: with an intercept it spans the same space as
splines::ns(x, knots = interior knots) plus an intercept, and one column is aliased.
Differences from R, tested below: bs() refuses new x outside the training range unless
given extrapolation='extend' (R extrapolates with a warning), and bs()'s knots come from
the rows the model uses (R takes them from every row with x, before dropping rows with
a missing response).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import glmx

REF = json.loads((Path(__file__).parent / "fixtures" / "glm_spline_cases.json").read_text())
CASES = REF["cases"]
NEW = pd.DataFrame({"x": REF["new_x"]})
OUT = pd.DataFrame({"x": REF["out_x"]})
BS_CASES = ["gaussian_bs", "poisson_bs", "binomial_bs5"]
CR_CASES = ["gaussian_cr_ns", "poisson_cr_ns"]


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return pd.DataFrame(REF["data"])


@pytest.fixture(scope="module")
def fits(data):
    # tol equal to R's glm.control(epsilon = 1e-12)
    return {
        name: glmx.glm(CASES[name]["formula"], data, family=CASES[name]["family"])
        for name in BS_CASES + CR_CASES
    }


def spline_state(fit) -> dict:
    (state,) = fit._fit.terms.model_spec.transform_state.values()
    return state


@pytest.mark.parametrize("name", BS_CASES)
def test_bs_matches_r_bs(fits, name):
    # R: glm(y ~ bs(x, df = 4 or 5), family, d, control = glm.control(epsilon = 1e-12))
    fit, ref = fits[name], CASES[name]
    # knots: degree + 1 copies of each boundary knot around R's interior knots
    knots = spline_state(fit)["knots"]
    lo, hi = ref["boundary_knots"]
    np.testing.assert_allclose(knots, [lo] * 4 + ref["knots"] + [hi] * 4, rtol=1e-14)
    # same basis, so the same coefficients, not only the same column space
    np.testing.assert_allclose(fit.coef, ref["coef"], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fit.se, ref["se"], rtol=1e-8)  # R's converged fit
    np.testing.assert_allclose(fit.fitted, ref["fitted"], rtol=1e-8, atol=1e-12)
    assert fit.deviance == pytest.approx(ref["deviance"], rel=1e-10)
    assert fit.aic == pytest.approx(ref["aic"], rel=1e-10)
    assert fit.dispersion == pytest.approx(ref["dispersion"], rel=1e-8)


@pytest.mark.parametrize("name", CR_CASES)
def test_cr_spans_r_natural_spline_space(fits, name):
    # R: glm(y ~ ns(x, knots = quantile(unique(x), c(.25, .5, .75))), family, d)
    fit, ref = fits[name], CASES[name]
    lo, hi = ref["boundary_knots"]
    np.testing.assert_allclose(spline_state(fit)["knots"], [lo, *ref["knots"], hi], rtol=1e-14)
    # cr's five columns sum to one: with the intercept, the last is aliased (R's NA)
    assert fit.aliased.tolist() == [False] * 5 + [True]
    assert np.isnan(fit.coef.iloc[-1]) and fit.rank == 5
    np.testing.assert_allclose(fit.fitted, ref["fitted"], rtol=1e-8, atol=1e-12)
    assert fit.deviance == pytest.approx(ref["deviance"], rel=1e-10)
    assert fit.aic == pytest.approx(ref["aic"], rel=1e-10)


def test_cr_is_mgcv_cubic_regression_spline(fits):
    # R: mgcv::gam(yg ~ s(x, bs = "cr", k = 5, fx = TRUE), data = d)
    ref = CASES["gaussian_cr_ns"]
    np.testing.assert_allclose(spline_state(fits["gaussian_cr_ns"])["knots"], ref["mgcv_knots"])
    np.testing.assert_allclose(fits["gaussian_cr_ns"].fitted, ref["mgcv_fitted"], rtol=1e-8)


@pytest.mark.parametrize("name", BS_CASES + CR_CASES)
def test_predict_reproduces_fitted_and_r_predictions(fits, data, name):
    fit, ref = fits[name], CASES[name]
    # the training rows through the stored transform state give the fitted values
    np.testing.assert_allclose(fit.predict(data), fit.fitted, rtol=1e-13, atol=1e-15)
    # R: predict(fit, data.frame(x = new_x), type = "response")
    np.testing.assert_allclose(fit.predict(NEW), ref["predict_new"], rtol=1e-8)
    # one row alone: knots are kept from the fit, not recomputed from the new data
    one = fit.predict(NEW.iloc[[3]])
    np.testing.assert_allclose(one, ref["predict_new"][3], rtol=1e-8)


@pytest.mark.parametrize("name", ["gaussian_bs", "binomial_bs5", "gaussian_cr_ns"])
def test_predictions_are_smooth_across_knots(fits, name):
    fit, ref = fits[name], CASES[name]
    grid = pd.DataFrame({"x": np.linspace(0.0, 10.0, 1001)})  # step h = 0.01
    eta = fit.predict(grid, type="link")
    assert np.isfinite(eta).all()
    # a cubic spline is C2: second differences are h^2 f'' (|f''| < 10 here); a kink
    # of slope jump s would give s h
    assert np.abs(np.diff(eta, 2)).max() < 1e-3
    for k in ref["knots"]:  # continuous at each interior knot
        left, right = fit.predict(pd.DataFrame({"x": [k - 1e-9, k + 1e-9]}), type="link")
        assert abs(left - right) < 1e-7


def test_bs_refuses_new_x_outside_the_data_unless_asked_to_extend(fits, data):
    # formulaic's bs() defaults to extrapolation='raise'; R's bs() extends the end
    # polynomials (with a warning)
    with pytest.raises(glmx.GlmxError, match="extrapolation"):
        fits["gaussian_bs"].predict(OUT)
    for name in BS_CASES:
        ref = CASES[name]
        formula = ref["formula"].replace(")", ", extrapolation='extend')")
        fit = glmx.glm(formula, data, family=ref["family"])
        np.testing.assert_allclose(fit.fitted, ref["fitted"], rtol=1e-8, atol=1e-12)
        # R: predict(fit, data.frame(x = out_x), type = "response")
        np.testing.assert_allclose(fit.predict(OUT), ref["predict_out"], rtol=1e-8)


@pytest.mark.parametrize("name", CR_CASES)
def test_cr_extends_linearly_as_ns_and_mgcv(fits, name):
    # cr() defaults to extrapolation='extend': linear beyond the boundary knots, as
    # R's ns() and mgcv's predict.gam
    ref = CASES[name]
    np.testing.assert_allclose(fits[name].predict(OUT), ref["predict_out"], rtol=1e-8)
    if "mgcv_predict_out" in ref:
        np.testing.assert_allclose(fits[name].predict(OUT), ref["mgcv_predict_out"], rtol=1e-8)


def test_knots_come_from_the_rows_used(data):
    # R: glm(yg ~ bs(x, df = 4), gaussian, d_na) with d_na$yg[1:20] <- NA takes bs()'s
    # knots from all 150 x (model.frame evaluates bs() before na.omit); glmx drops the
    # 20 rows first, as R's fit on d_na[!is.na(d_na$yg), ] does.
    ref = CASES["gaussian_bs_na_response"]
    d_na = data.copy()
    d_na.loc[: ref["n_missing"] - 1, "yg"] = np.nan
    fit = glmx.glm(ref["formula"], d_na, tol=1e-12)
    assert fit.n_dropped == 20
    knots = spline_state(fit)["knots"]
    np.testing.assert_allclose(knots[4:-4], ref["complete_case_knots"], rtol=1e-14)
    assert knots[4:-4] != ref["knots"]  # R's knot on the full x: 5.1, not 5.25
    np.testing.assert_allclose(fit.fitted, ref["complete_case_fitted"], rtol=1e-8)
    assert np.abs(fit.fitted - np.array(ref["fitted"])).max() > 1e-2


@pytest.mark.parametrize("name", BS_CASES)
def test_profile_confint_matches_mass(fits, name):
    # R: MASS:::confint.glm(fit); MASS interpolates a spline through the profile, glmx
    # solves for the roots, so agreement is to MASS's interpolation error
    ci = fits[name].confint(level=0.95)
    ref = np.array(CASES[name]["confint_profile"], dtype=float)
    # (MASS's error is ~1e-4 of the interval's width, also for bounds near 0)
    width = (ref[:, 1] - ref[:, 0])[:, None]
    assert np.all(np.abs(ci.to_numpy() - ref) <= 2e-3 * np.abs(ref) + 2e-4 * width)


def test_cr_confint_has_nan_for_the_aliased_column(fits):
    ci = fits["poisson_cr_ns"].confint()
    assert ci.iloc[-1].isna().all() and np.isfinite(ci.iloc[:-1].to_numpy()).all()
    assert (ci["lower"].iloc[:-1] < fits["poisson_cr_ns"].coef.iloc[:-1]).all()


def test_summary_prints_spline_columns(fits):
    text = str(fits["poisson_bs"].summary())
    for j in range(1, 5):
        assert f"bs(x, df=4)[{j}]" in text
    # R: summary(glm(yc ~ bs(x, df = 4), poisson, d))$coefficients[2, 1], rounded
    assert f"{CASES['poisson_bs']['coef'][1]:.4f}" in text
    cr_text = str(fits["gaussian_cr_ns"].summary())
    assert "(1 not defined because of singularities)" in cr_text


def test_missing_new_x_gives_nan_and_intervals_work(fits):
    fit = fits["poisson_bs"]
    new = pd.DataFrame({"x": [2.0, np.nan, 8.0]})
    pred = fit.predict(new, interval="confidence")
    assert pred.loc[1].isna().all() and np.isfinite(pred.loc[[0, 2]].to_numpy()).all()
    pi = fit.predict(new, interval="prediction", n_sim=500, seed=0)
    assert pi.loc[1, ["lower", "upper"]].isna().all()
    assert (pi.loc[[0, 2], "lower"] <= pi.loc[[0, 2], "upper"]).all()
