"""Influence diagnostics against R, and their properties.

References:

- fixtures/glm_cases.json (R 4.2.2): ``hatvalues(fit)``, ``cooks.distance(fit)``,
  ``rstandard(fit)``, ``rstudent(fit)`` for the fits described in fixtures/REFERENCE.md.
- fixtures/glm_diagnostics_cases.json, written by fixtures/make_diagnostics_cases.R:
  for ``fit <- glm(formula, family, data, weights, offset,
  control = glm.control(epsilon = 1e-12))`` (``MASS::glm.nb`` for negbin), R's
  ``influence.measures(fit)`` (dfbetas, dffit, cov.r, cook.d, hat and ``is.inf``),
  ``dfbeta(fit)``, ``influence(fit)$sigma`` and ``rstandard(fit, type = "pearson")``.

Both continued to R's converged fit by fixtures/make_polished_cases.R; glmx runs at its
default settings.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import glmx
from glmx.diagnostics.influence import (
    _core,
    cooks_distance,
    hat_values,
    influence_measures,
    rstandard,
    rstudent,
)
from refdata import dataset, fit_case, glm_cases

RTOL = 1e-7  # SE-like (hat values, Cook's, studentized residuals) at the MLE
CASES = glm_cases()
DIAG = glm_cases("glm_diagnostics_cases.json")
# glm_cases.json cases that carry R's influence numbers (separation_logit: infinite MLE)
WITH_INFLUENCE = sorted(n for n in CASES if "hat" in CASES[n] and n != "separation_logit")


def _arr(values: list) -> np.ndarray:
    """R's JSON vector or matrix (rows of lists), null -> NaN."""
    nan = lambda v: np.nan if v is None else v  # noqa: E731
    if values and isinstance(values[0], list):
        return np.array([[nan(v) for v in row] for row in values], dtype=float)
    return np.array([nan(v) for v in values], dtype=float)


def close(actual, expected, atol: float = 1e-10) -> None:
    """R's numbers to RTOL relative; ``atol`` for entries that are zero up to rounding."""
    exp = _arr(expected) if isinstance(expected, list) else expected
    np.testing.assert_allclose(np.asarray(actual, dtype=float), exp, rtol=RTOL, atol=atol)


def _fit(case: dict, **kwargs) -> glmx.GLMResults:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", glmx.GlmxWarning)
        return fit_case(case, **kwargs)


@pytest.fixture(scope="module")
def case_fits() -> dict:
    return {name: _fit(CASES[name]) for name in WITH_INFLUENCE}


@pytest.fixture(scope="module")
def diag_fits() -> dict:
    return {name: _fit(DIAG[name]) for name in DIAG}


def test_the_r_cases_are_the_expected_ones():
    assert len(WITH_INFLUENCE) == 22  # every glm_cases.json case but separation, collinear
    assert {"collinear_gaussian", "gaussian_zero_weights", "poisson_aliased_factor"} <= set(DIAG)


@pytest.mark.parametrize("name", WITH_INFLUENCE)
def test_hat_cooks_rstandard_rstudent_match_r(case_fits, name):
    # R: hatvalues(fit), cooks.distance(fit), rstandard(fit), rstudent(fit)
    ref, fit = CASES[name], case_fits[name]
    close(hat_values(fit), ref["hat"])
    close(cooks_distance(fit), ref["cooks"])
    close(rstandard(fit), ref["rstandard"])
    # clotting_invgauss: R's rstudent is NaN on row 0 (negative leave-one-out variance)
    close(rstudent(fit), ref["rstudent"])


@pytest.mark.parametrize("name", sorted(DIAG))
def test_influence_measures_match_r(diag_fits, name):
    # R: influence.measures(fit)$infmat, dfbeta(fit), rstandard(fit, type = "pearson")
    ref, fit = DIAG[name], diag_fits[name]
    im = fit.influence()
    assert isinstance(im.index, pd.RangeIndex) and len(im) == len(fit.fitted)
    rows = np.array(ref["rows"], dtype=int)
    r = im.iloc[rows]
    close(r["hat"], ref["hat"])
    close(r["hat"], ref["im_hat"])
    close(r["cooks"], ref["cooks"])
    close(r["cooks"], ref["cook_d"])
    close(r["rstandard"], ref["rstandard"])
    close(fit.rstandard("pearson")[rows], ref["rstandard_pearson"])
    close(r["rstudent"], ref["rstudent"])
    close(r["dffits"], ref["dffits"])
    close(r["cov_ratio"], ref["cov_r"])
    close(_core(fit).sigma()[rows], ref["sigma"])  # R: influence(fit)$sigma
    # aliased coefficients are left out, as R's dfbeta and influence.measures do
    kept = [n for n, a in zip(fit.coef.index, fit.aliased) if not a]
    assert len(kept) == len(ref["kept_names"])
    dfbeta = r[[f"dfbeta_{n}" for n in kept]].to_numpy()
    dfbetas = r[[f"dfbetas_{n}" for n in kept]].to_numpy()
    db, dbs = _arr(ref["dfbeta"]), _arr(ref["dfbetas"])
    close(dfbeta, db, atol=1e-9 * np.abs(db).max())
    close(dfbetas, dbs, atol=1e-9 * np.abs(dbs).max())
    # R: apply(influence.measures(fit)$is.inf, 1, any, na.rm = TRUE)
    assert r["influential"].tolist() == ref["is_inf_any"]
    assert im["influential"].dtype == bool


def test_influential_rows_of_mtcars_are_rs():
    # R: im <- influence.measures(glm(mpg ~ wt + hp + cyl_f, data = mtcars))
    #    which(apply(im$is.inf, 1, any)) -> 16 20 31 (1-based; Lincoln Continental, Toyota
    #    Corolla, Maserati Bora), flagged by cov.r, and row 31 also by hat (> 3k/n = 15/32)
    fit = _fit(DIAG["mtcars_gaussian_factor"], tol=1e-12)
    im = fit.influence()
    assert np.flatnonzero(im["influential"]).tolist() == [15, 19, 30]
    k, n = 5, 32
    assert (np.abs(1 - im["cov_ratio"].iloc[[15, 19, 30]]) > 3 * k / (n - k)).all()
    assert np.flatnonzero(im["hat"] > 3 * k / n).tolist() == [30]


def test_columns_and_methods():
    fit = _fit(DIAG["mtcars_gaussian_factor"], tol=1e-12)
    im = influence_measures(fit)
    names = list(fit.coef.index)
    assert list(im.columns) == (
        ["hat", "cooks", "rstandard", "rstudent", "dffits", "cov_ratio"]
        + [f"dfbeta_{n}" for n in names]
        + [f"dfbetas_{n}" for n in names]
        + ["influential"]
    )
    np.testing.assert_array_equal(fit.hat(), im["hat"])
    np.testing.assert_array_equal(fit.cooks_distance(), im["cooks"])
    np.testing.assert_array_equal(fit.rstudent(), im["rstudent"])
    np.testing.assert_array_equal(fit.rstandard(), im["rstandard"])
    # leverages add up to the rank
    assert im["hat"].sum() == pytest.approx(fit.rank, rel=1e-12)
    with pytest.raises(ValueError, match="'deviance' or 'pearson'"):
        fit.rstandard("working")


def test_zero_weight_rows_change_nothing(diag_fits):
    # R leaves rows 2, 9, 19 (prior weight 0) out; glmx keeps them with neutral values
    fit = diag_fits["gaussian_zero_weights"]
    im = fit.influence()
    zero = np.flatnonzero(fit.prior_weights == 0)
    assert zero.tolist() == [2, 9, 19]
    z = im.iloc[zero]
    assert (z["hat"] == 0).all() and (z["cooks"] == 0).all()
    assert (z[[c for c in im.columns if c.startswith("dfbeta")]] == 0).all().all()
    assert (z[["rstandard", "rstudent", "dffits"]] == 0).all().all()
    np.testing.assert_allclose(z["cov_ratio"], 1.0, rtol=1e-14)
    assert not z["influential"].any()


def test_hat_one_gives_nan_as_r():
    # a factor level seen once is fitted exactly: h = 1, and R's rstandard, cooks.distance
    # and dffits are NaN there (R: res[is.infinite(res)] <- NaN; 0/0)
    df = pd.DataFrame(
        {"y": [1.0, 2.0, 2.5, 4.1, 5.2, 6.3, 9.0], "x": [1, 2, 3, 4, 5, 6, 7.0],
         "g": ["a"] * 6 + ["b"]}
    )  # fmt: skip
    fit = glmx.glm("y ~ x + g", df)
    im = fit.influence()
    assert im["hat"].iloc[6] == 1.0
    assert np.isnan(im[["cooks", "rstandard", "dffits", "cov_ratio"]].iloc[6]).all()
    assert (im[[c for c in im.columns if c.startswith("dfbeta_")]].iloc[6] == 0).all()
    assert np.isfinite(im["rstandard"].iloc[:6]).all()


def test_saturated_model_is_refused():
    # R: influence.measures stops with "too few cases i with h_ii > 0), n < k"
    df = pd.DataFrame({"y": [1.0, 3.0, 2.0], "x": [0.0, 1.0, 2.0], "z": [1.0, 0.0, 4.0]})
    fit = glmx.glm("y ~ x + z", df)
    np.testing.assert_allclose(fit.hat(), 1.0)
    with pytest.raises(glmx.DataError, match="3 cases, 3 coefficients"):
        fit.influence()


def test_gaussian_dfbeta_is_the_exact_change_on_deletion():
    # for a (weighted) linear model the one-step deletion formulas are exact
    mt = dataset("mtcars")
    fit = glmx.glm("mpg ~ wt + hp + cyl_f", mt, weights="carb", tol=1e-12)
    im = fit.influence()
    db = im[[f"dfbeta_{n}" for n in fit.coef.index]].to_numpy()
    for i in (0, 16, 30):
        drop = glmx.glm("mpg ~ wt + hp + cyl_f", mt.drop(index=i), weights="carb", tol=1e-12)
        np.testing.assert_allclose(db[i], fit.coef - drop.coef, rtol=1e-8, atol=1e-12)
        # rstudent: the deletion residual scaled by the leave-one-out sigma
        y_hat = drop.predict(mt.iloc[[i]])[0]
        s_i = np.sqrt(drop.dispersion)
        x_i = fit._fit.X.X[i]
        se = s_i * np.sqrt(1.0 / mt.carb[i] + x_i @ (drop._fit.cov_unscaled @ x_i))
        assert im["rstudent"][i] == pytest.approx((mt.mpg[i] - y_hat) / se, rel=1e-8)


def _expanded(df: pd.DataFrame, f: np.ndarray) -> pd.DataFrame:
    return df.loc[df.index.repeat(f)].reset_index(drop=True)


@pytest.mark.parametrize(
    ("family", "link", "formula"),
    [
        ("poisson", None, "Days ~ Eth + Sex + Lrn"),
        ("gamma", "log", "Days1 ~ Eth + Sex + Lrn"),
        ("gaussian", None, "Days ~ Eth + Sex + Lrn"),
    ],
)
def test_frequency_weights_are_case_groups(family, link, formula):
    """A row of frequency f is a group of f identical cases: its hat is the sum of the
    cases' hats; rows with f = 1 get exactly the measures of the expanded data."""
    q = dataset("quine").iloc[::4].copy()
    q["Days1"] = q["Days"] + 1.0
    f = np.random.default_rng(5).integers(1, 4, size=len(q))
    f[:8] = 1
    grouped = glmx.glm(formula, q, family=family, link=link, freq_weights=f, tol=1e-12)
    expanded = glmx.glm(formula, _expanded(q, f), family=family, link=link, tol=1e-12)
    first = np.concatenate([[0], np.cumsum(f)[:-1]])  # each group's first expanded row
    h_g, h_e = grouped.hat(), expanded.hat()
    np.testing.assert_allclose(h_g, f * h_e[first], rtol=1e-9)
    assert h_g.sum() == pytest.approx(grouped.rank, rel=1e-12)
    ones = np.flatnonzero(f == 1)
    im_g, im_e = grouped.influence(), expanded.influence().iloc[first[ones]]
    for col in im_g.columns.drop("influential"):
        np.testing.assert_allclose(
            im_g[col].iloc[ones], im_e[col], rtol=1e-8, atol=1e-12, err_msg=col
        )


def test_gaussian_group_dfbeta_deletes_the_whole_group():
    q = dataset("quine").iloc[::4]
    f = np.random.default_rng(6).integers(1, 5, size=len(q))
    fit = glmx.glm("Days ~ Eth + Age", q, freq_weights=f, tol=1e-12)
    db = fit.influence()[[f"dfbeta_{n}" for n in fit.coef.index]].to_numpy()
    for i in np.flatnonzero(f > 1)[:3]:
        keep = np.arange(len(q)) != i
        drop = glmx.glm("Days ~ Eth + Age", q[keep], freq_weights=f[keep], tol=1e-12)
        np.testing.assert_allclose(db[i], fit.coef - drop.coef, rtol=1e-8, atol=1e-12)


def test_glm_fit_dense_and_sparse_agree_with_formula_fit():
    ins = dataset("insurance")
    ref = _fit(DIAG["insurance_poisson_offset"], tol=1e-12)
    X = ref._fit.X.X
    kw = dict(family="poisson", offset=ins["log_holders"].to_numpy(), tol=1e-12)
    dense = glmx.glm_fit(X, ins["Claims"].to_numpy(), **kw)
    sparse = glmx.glm_fit(sp.csr_matrix(X), ins["Claims"].to_numpy(), **kw)
    want = ref.influence().to_numpy(dtype=float)
    for fit in (dense, sparse):
        got = fit.influence().to_numpy(dtype=float)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-13)


def test_row_order_does_not_matter():
    bw = dataset("budworm")
    perm = np.random.default_rng(1).permutation(len(bw))
    a = glmx.glm("prop ~ sex * ldose", bw, family="binomial", weights="total", tol=1e-12)
    b = glmx.glm("prop ~ sex * ldose", bw.iloc[perm], family="binomial", weights="total", tol=1e-12)
    np.testing.assert_allclose(
        b.influence().to_numpy(dtype=float),
        a.influence().iloc[perm].to_numpy(dtype=float),
        rtol=1e-9,
        atol=1e-13,
    )
