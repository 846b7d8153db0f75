"""VIFs and condition numbers against R, and their properties.

References in fixtures/glm_diagnostics_cases.json, written by
fixtures/make_diagnostics_cases.R (R 4.2.2, car 3.1-1) for
``fit <- glm(formula, family, data, weights, offset, control = glm.control(epsilon = 1e-12))``
polished to the MLE by fixtures/make_polished_cases.R (glmx at its default settings):
``car::vif(fit)`` (GVIF, Df, GVIF^(1/(2*Df)), or car's error) and
``kappa(Xs, exact = TRUE)`` with ``Xw <- sqrt(fit$weights) * model.matrix(fit)`` and
``Xs <- sweep(Xw, 2, sqrt(colSums(Xw^2)), "/")``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import glmx
from glmx.diagnostics.collinearity import ADJUSTED, condition_number, vif, vif_table
from refdata import dataset, fit_case, glm_cases

DIAG = glm_cases("glm_diagnostics_cases.json")
WITH_VIF = sorted(n for n in DIAG if "vif" in DIAG[n])
VIF_ERRORS = sorted(n for n in DIAG if "vif_error" in DIAG[n])


def _fit(name: str) -> glmx.GLMResults:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", glmx.GlmxWarning)
        return fit_case(DIAG[name])  # R's polished fits: the MLE, glmx's defaults


def test_reference_cases_cover_factors_weights_and_errors():
    assert len(WITH_VIF) == 12
    assert VIF_ERRORS == ["clotting_gamma_one_term", "collinear_gaussian", "poisson_aliased_factor"]
    assert any(d > 1 for n in WITH_VIF for d in DIAG[n]["vif"]["df"])


@pytest.mark.parametrize("name", WITH_VIF)
def test_vif_matches_car(name):
    # R: car::vif(fit)
    ref = DIAG[name]["vif"]
    fit = _fit(name)
    table = vif_table(fit)
    assert list(table.index) == ref["term"]  # formulaic's term names are R's labels here
    np.testing.assert_allclose(table["GVIF"], ref["gvif"], rtol=1e-7)
    np.testing.assert_array_equal(table["Df"], ref["df"])
    np.testing.assert_allclose(table[ADJUSTED], ref["gvif_adj"], rtol=1e-7)
    series = fit.vif()
    assert isinstance(series, pd.Series) and series.name == "GVIF"
    np.testing.assert_allclose(series.to_numpy(), ref["gvif"], rtol=1e-7)


def test_mtcars_gvif_numbers():
    # R: car::vif(glm(mpg ~ wt + hp + cyl_f, data = mtcars))
    #            GVIF Df GVIF^(1/(2*Df))
    #    wt    2.580877  1        1.606511
    #    hp    3.496014  1        1.869763
    #    cyl_f 5.105811  2        1.503198
    t = vif_table(_fit("mtcars_gaussian_factor"))
    assert t.loc["cyl_f", "GVIF"] == pytest.approx(5.105811, abs=1e-6)
    assert t.loc["cyl_f", "Df"] == 2
    assert t.loc["wt", ADJUSTED] == pytest.approx(1.606511, abs=1e-6)


@pytest.mark.parametrize("name", VIF_ERRORS)
def test_vif_refuses_what_car_refuses(name):
    # R: car::vif -> "there are aliased coefficients in the model" or
    #    "model contains fewer than 2 terms"
    msg = "aliased coefficients" if "aliased" in DIAG[name]["vif_error"] else "at least 2 terms"
    with pytest.raises(glmx.DataError, match=msg):
        vif(_fit(name))


def test_vif_error_names_the_aliased_column():
    with pytest.raises(glmx.DataError, match=r"\(x2\)"):
        _fit("collinear_gaussian").vif()


@pytest.mark.parametrize("name", sorted(DIAG))
def test_condition_number_matches_r(name):
    fit = _fit(name)
    ref = DIAG[name].get("condition_number")
    if ref is None:  # aliased: the design is singular
        assert condition_number(fit) == np.inf
    else:
        assert fit.condition_number() == pytest.approx(ref, rel=1e-9)


def test_glm_fit_design_columns_are_terms():
    mt = dataset("mtcars")
    formula_fit = glmx.glm("carb ~ wt + hp + qsec", mt, family="poisson")
    X = np.column_stack([mt.wt, np.ones(len(mt)), mt.hp, mt.qsec])  # intercept not first
    fit = glmx.glm_fit(X, mt.carb, family="poisson", column_names=["wt", "one", "hp", "qsec"])
    got = fit.vif()
    assert list(got.index) == ["wt", "hp", "qsec"]
    np.testing.assert_allclose(got.to_numpy(), formula_fit.vif().to_numpy(), rtol=1e-9)
    assert fit.condition_number() == pytest.approx(formula_fit.condition_number(), rel=1e-8)


def test_no_intercept_warns_as_car():
    # R: car::vif(glm(mpg ~ wt + hp - 1, data = mtcars)) warns "No intercept: vifs may not
    # be sensible." and uses the correlations of all coefficients
    mt = dataset("mtcars")
    fit = glmx.glm("mpg ~ wt + hp - 1", mt)
    with pytest.warns(glmx.DataWarning, match="no intercept"):
        v = fit.vif()
    V = fit._fit.cov_unscaled
    r = V[0, 1] / np.sqrt(V[0, 0] * V[1, 1])
    np.testing.assert_allclose(v.to_numpy(), 1.0 / (1.0 - r**2), rtol=1e-12)


def test_gaussian_vif_is_one_over_one_minus_r_squared():
    # the textbook definition: regress each predictor on the others
    mt = dataset("mtcars")
    fit = glmx.glm("mpg ~ wt + hp + qsec + drat", mt)
    X = mt[["wt", "hp", "qsec", "drat"]].to_numpy()
    want = []
    for j in range(4):
        others = np.column_stack([np.ones(len(mt)), np.delete(X, j, axis=1)])
        resid = X[:, j] - others @ np.linalg.lstsq(others, X[:, j], rcond=None)[0]
        r2 = 1.0 - resid @ resid / np.sum((X[:, j] - X[:, j].mean()) ** 2)
        want.append(1.0 / (1.0 - r2))
    np.testing.assert_allclose(fit.vif().to_numpy(), want, rtol=1e-10)


def test_scaling_a_predictor_and_robust_covariance_change_nothing():
    mt = dataset("mtcars").assign(hp_k=lambda d: d.hp / 1000.0)
    a = glmx.glm("mpg ~ wt + hp + cyl_f", mt, family="gamma", link="log")
    b = glmx.glm("mpg ~ wt + hp_k + cyl_f", mt, family="gamma", link="log", cov_type="HC0")
    np.testing.assert_allclose(a.vif().to_numpy(), b.vif().to_numpy(), rtol=1e-8)
    assert a.condition_number() == pytest.approx(b.condition_number(), rel=1e-8)
    # the weighted design: prior weights change the condition number as they change X'WX
    c = glmx.glm("mpg ~ wt + hp + cyl_f", mt, family="gamma", link="log", weights="carb")
    assert abs(c.condition_number() - a.condition_number()) > 0.1
