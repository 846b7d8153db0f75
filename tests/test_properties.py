"""Hypothesis property tests of glmx fits on simulated data (gaussian, poisson, binomial,
Gamma): invariance to row order, frequency weights as duplicated rows, rescaled
predictors, offsets, aliased duplicate columns and rescaled prior weights."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import glmx

RTOL = 1e-8

# family name -> (family, link); Gamma with the log link keeps mu valid for any eta
FAMILIES = {
    "gaussian": ("gaussian", None),
    "poisson": ("poisson", None),
    "binomial": ("binomial", None),  # proportions of 1..5 trials
    "binomial01": ("binomial", None),  # 0/1 response
    "gamma": ("gamma", "log"),
}

families_st = st.sampled_from(sorted(FAMILIES))
seeds = st.integers(min_value=0, max_value=2**32 - 1)
sizes = st.integers(min_value=25, max_value=80)
SETTINGS = settings(max_examples=25, deadline=None)


def simulate(family: str, n: int, seed: int) -> pd.DataFrame:
    """Data from the family with eta = 0.3 + 0.4 x1 - 0.3 x2 (binomial: proportions of
    1..5 trials in column m; the other families, binomial01 included, have m = 1)."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.uniform(-1.0, 1.0, size=n)
    eta = 0.3 + 0.4 * x1 - 0.3 * x2
    m = np.ones(n)
    if family == "gaussian":
        y = eta + rng.normal(scale=0.5, size=n)
    elif family == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    elif family in ("binomial", "binomial01"):
        m = rng.integers(1, 6, size=n).astype(float) if family == "binomial" else m
        y = rng.binomial(m.astype(int), 1.0 / (1.0 + np.exp(-eta))) / m
    elif family == "gamma":
        shape = 3.0
        y = rng.gamma(shape, np.exp(eta) / shape)
    else:  # pragma: no cover
        raise ValueError(family)
    return pd.DataFrame({"x1": x1, "x2": x2, "y": y, "m": m})


def fit(family: str, formula: str, data, **kw):
    """glm with the family's link; binomial gets its trials as prior weights.  Data sets
    where the fit itself is degenerate (separation, no convergence) are not the subject
    of these properties and are skipped."""
    fam, link = FAMILIES[family]
    if family.startswith("binomial") and "weights" not in kw:
        kw["weights"] = "m"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = glmx.glm(formula, data, family=fam, link=link, **kw)
    bad = (glmx.SeparationWarning, glmx.ConvergenceWarning, glmx.BoundaryWarning)
    assume(not any(issubclass(w.category, bad) for w in caught))
    return res


def close(actual, expected, rtol=RTOL, what=""):
    """Relative agreement, with entries near zero judged against the vector's scale."""
    a = np.asarray(actual, dtype=float)
    e = np.asarray(expected, dtype=float)
    assert a.shape == e.shape, what
    np.testing.assert_array_equal(np.isnan(a), np.isnan(e), err_msg=what)
    ok = ~np.isnan(e)
    scale = float(np.max(np.abs(e[ok]))) if ok.any() else 1.0
    np.testing.assert_allclose(a[ok], e[ok], rtol=rtol, atol=rtol * scale, err_msg=what)


FORMULA = "y ~ x1 + x2"


# --- (a) row order -------------------------------------------------------------------


@SETTINGS
@given(family=families_st, n=sizes, seed=seeds, perm_seed=seeds)
def test_permuting_rows_changes_nothing(family, n, seed, perm_seed):
    df = simulate(family, n, seed)
    perm = np.random.default_rng(perm_seed).permutation(n)
    a = fit(family, FORMULA, df)
    b = fit(family, FORMULA, df.iloc[perm].reset_index(drop=True))
    close(b.coef, a.coef, what="coef")
    close(b.se, a.se, what="se")
    close(b.deviance, a.deviance, what="deviance")
    close(b.null_deviance, a.null_deviance, what="null deviance")
    close(b.aic, a.aic, what="aic")
    close(b.fitted, np.asarray(a.fitted)[perm], what="fitted")
    assert b.df_resid == a.df_resid


@SETTINGS
@given(family=families_st, n=sizes, seed=seeds, perm_seed=seeds)
def test_permuting_rows_with_weights_and_offset_changes_nothing(family, n, seed, perm_seed):
    df = simulate(family, n, seed)
    rng = np.random.default_rng(perm_seed)
    df["f"] = rng.integers(1, 4, size=n).astype(float)
    df["o"] = rng.normal(scale=0.1, size=n)
    perm = rng.permutation(n)
    a = fit(family, FORMULA, df, freq_weights="f", offset="o")
    b = fit(family, FORMULA, df.iloc[perm].reset_index(drop=True), freq_weights="f", offset="o")
    close(b.coef, a.coef, what="coef")
    close(b.se, a.se, what="se")
    close(b.deviance, a.deviance, what="deviance")
    close(b.null_deviance, a.null_deviance, what="null deviance")
    close(b.aic, a.aic, what="aic")


# --- (b) frequency weights are duplicated rows ---------------------------------------


def _assert_same_fit(a, b):
    close(b.coef, a.coef, what="coef")
    close(b.se, a.se, what="se")
    close(b.deviance, a.deviance, what="deviance")
    close(b.null_deviance, a.null_deviance, what="null deviance")
    close(b.loglik, a.loglik, what="loglik")
    close(b.aic, a.aic, what="aic")
    close(b.bic, a.bic, what="bic")
    close(b.dispersion, a.dispersion, what="dispersion")
    assert b.nobs == a.nobs
    assert b.df_resid == a.df_resid
    assert b.df_null == a.df_null
    assert b.rank == a.rank


@SETTINGS
@given(family=families_st, n=sizes, seed=seeds, dup_seed=seeds)
def test_duplicated_rows_equal_freq_weights_two(family, n, seed, dup_seed):
    df = simulate(family, n, seed)
    dup = np.random.default_rng(dup_seed).random(n) < 0.4
    expanded = pd.concat([df, df[dup]], ignore_index=True)
    a = fit(family, FORMULA, expanded)
    b = fit(family, FORMULA, df, freq_weights=np.where(dup, 2.0, 1.0))
    _assert_same_fit(a, b)


@SETTINGS
@given(family=families_st, n=sizes, seed=seeds, count_seed=seeds)
def test_freq_weights_equal_expanded_data(family, n, seed, count_seed):
    """Counts 0..3: a row with count k is k identical rows (count 0: the row is absent)."""
    df = simulate(family, n, seed)
    counts = np.random.default_rng(count_seed).integers(0, 4, size=n)
    assume(counts.sum() >= 10)
    expanded = df.loc[np.repeat(np.arange(n), counts)].reset_index(drop=True)
    a = fit(family, FORMULA, expanded)
    b = fit(family, FORMULA, df, freq_weights=counts.astype(float))
    _assert_same_fit(a, b)


@SETTINGS
@given(family=families_st, n=sizes, seed=seeds, zero_seed=seeds)
def test_zero_prior_weight_rows_equal_dropping_them(family, n, seed, zero_seed):
    """R: rows with prior weight 0 do not count (nobs, df) and do not move the fit."""
    df = simulate(family, n, seed)
    zero = np.random.default_rng(zero_seed).random(n) < 0.3
    assume((~zero).sum() >= 15)
    w = np.where(zero, 0.0, df["m"].to_numpy())
    a = fit(family, FORMULA, df[~zero].reset_index(drop=True))
    b = fit(family, FORMULA, df, weights=w)
    close(b.coef, a.coef, what="coef")
    close(b.se, a.se, what="se")
    close(b.deviance, a.deviance, what="deviance")
    close(b.null_deviance, a.null_deviance, what="null deviance")
    close(b.dispersion, a.dispersion, what="dispersion")
    close(np.asarray(b.fitted)[~zero], a.fitted, what="fitted")
    assert b.nobs == a.nobs
    assert b.df_resid == a.df_resid
    assert b.df_null == a.df_null


# --- (c) rescaled predictor ----------------------------------------------------------


@SETTINGS
@given(
    family=families_st,
    n=sizes,
    seed=seeds,
    c=st.one_of(st.floats(1e-3, 1e3), st.floats(-1e3, -1e-3)),
)
def test_rescaling_a_predictor_rescales_its_coefficient(family, n, seed, c):
    df = simulate(family, n, seed)
    a = fit(family, FORMULA, df)
    b = fit(family, FORMULA, df.assign(x1=df["x1"] * c))
    close(b.coef["x1"] * c, a.coef["x1"], what="coef x1 * c")
    close(abs(c) * b.se["x1"], a.se["x1"], what="se x1 * |c|")
    close(b.coef[["Intercept", "x2"]], a.coef[["Intercept", "x2"]], what="other coef")
    close(b.se[["Intercept", "x2"]], a.se[["Intercept", "x2"]], what="other se")
    close(b.deviance, a.deviance, what="deviance")
    close(b.fitted, a.fitted, what="fitted")
    close(b.aic, a.aic, what="aic")


# --- (d) offsets ---------------------------------------------------------------------


@SETTINGS
@given(n=sizes, seed=seeds, off_seed=seeds)
def test_gaussian_offset_equals_subtracting_it_from_y(n, seed, off_seed):
    df = simulate("gaussian", n, seed)
    o = np.random.default_rng(off_seed).normal(size=n)
    a = fit("gaussian", FORMULA, df, offset=o)
    b = fit("gaussian", FORMULA, df.assign(y=df["y"] - o))
    close(a.coef, b.coef, what="coef")
    close(a.se, b.se, what="se")
    close(a.deviance, b.deviance, what="deviance")
    close(a.aic, b.aic, what="aic")
    close(np.asarray(a.fitted) - o, b.fitted, what="fitted")
    close(a.residuals("response"), b.residuals("response"), what="residuals")


@SETTINGS
@given(family=families_st, n=sizes, seed=seeds, c=st.floats(-2.0, 2.0))
def test_constant_offset_shifts_only_the_intercept(family, n, seed, c):
    df = simulate(family, n, seed)
    a = fit(family, FORMULA, df)
    b = fit(family, FORMULA, df, offset=np.full(n, c))
    close(b.coef["Intercept"] + c, a.coef["Intercept"], what="intercept")
    close(b.coef[["x1", "x2"]], a.coef[["x1", "x2"]], what="slopes")
    close(b.se, a.se, what="se")
    close(b.deviance, a.deviance, what="deviance")
    close(b.null_deviance, a.null_deviance, what="null deviance")
    close(b.fitted, a.fitted, what="fitted")
    close(b.aic, a.aic, what="aic")


@SETTINGS
@given(family=families_st, n=sizes, seed=seeds, a0=st.floats(-1.0, 1.0), a1=st.floats(-1.0, 1.0))
def test_linear_offset_is_absorbed_by_the_coefficients(family, n, seed, a0, a1):
    """offset = a0 + a1 x1 moves the intercept by -a0 and the x1 slope by -a1."""
    df = simulate(family, n, seed)
    a = fit(family, FORMULA, df)
    b = fit(family, FORMULA, df, offset=a0 + a1 * df["x1"].to_numpy())
    close(b.coef["Intercept"] + a0, a.coef["Intercept"], what="intercept")
    close(b.coef["x1"] + a1, a.coef["x1"], what="x1")
    close(b.coef["x2"], a.coef["x2"], what="x2")
    close(b.deviance, a.deviance, what="deviance")
    close(b.fitted, a.fitted, what="fitted")


@SETTINGS
@given(n=sizes, seed=seeds, t_seed=seeds)
def test_poisson_exposure_offset_formula_term_equals_argument(n, seed, t_seed):
    """offset(log(t)) in the formula is offset=log(t); a rate model with exposure t
    scales the fitted counts with t."""
    df = simulate("poisson", n, seed)
    df["t"] = np.random.default_rng(t_seed).uniform(0.5, 3.0, size=n)
    a = fit("poisson", FORMULA + " + offset(log(t))", df)
    b = fit("poisson", FORMULA, df, offset=np.log(df["t"].to_numpy()))
    close(a.coef, b.coef, what="coef")
    close(a.se, b.se, what="se")
    close(a.deviance, b.deviance, what="deviance")
    close(a.null_deviance, b.null_deviance, what="null deviance")
    close(a.aic, b.aic, what="aic")
    rate = np.exp(a.coef["Intercept"] + a.coef["x1"] * df["x1"] + a.coef["x2"] * df["x2"])
    close(a.fitted, rate * df["t"], what="fitted = rate * t")


# --- (e) aliased duplicate columns ---------------------------------------------------


@SETTINGS
@given(family=families_st, n=sizes, seed=seeds)
def test_duplicated_design_columns_are_aliased(family, n, seed):
    df = simulate(family, n, seed)
    fam, link = FAMILIES[family]
    X = np.column_stack([np.ones(n), df["x1"], df["x2"]])
    w = df["m"].to_numpy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = glmx.glm_fit(X, df["y"], family=fam, link=link, weights=w)
        b = glmx.glm_fit(np.hstack([X, X]), df["y"], family=fam, link=link, weights=w)
    assume(not any(issubclass(c.category, glmx.SeparationWarning) for c in caught))
    coef = b.coef.to_numpy()
    assert np.all(np.isnan(coef[3:])), coef
    assert list(b.aliased) == [False] * 3 + [True] * 3
    assert b.rank == a.rank == 3
    close(coef[:3], a.coef, what="coef")
    close(b.se.to_numpy()[:3], a.se, what="se")
    assert np.all(np.isnan(b.se.to_numpy()[3:]))
    close(b.fitted, a.fitted, what="fitted")
    close(b.deviance, a.deviance, what="deviance")
    close(b.aic, a.aic, what="aic")
    assert b.df_resid == a.df_resid


@SETTINGS
@given(family=families_st, n=sizes, seed=seeds, k=st.floats(0.1, 10.0))
def test_scaled_copy_in_formula_is_aliased(family, n, seed, k):
    df = simulate(family, n, seed)
    df["x3"] = k * df["x1"]
    a = fit(family, FORMULA, df)
    b = fit(family, "y ~ x1 + x2 + x3", df)
    assert np.isnan(b.coef["x3"]) and bool(b.aliased["x3"])
    close(b.coef[["Intercept", "x1", "x2"]], a.coef, what="coef")
    close(b.fitted, a.fitted, what="fitted")
    close(b.deviance, a.deviance, what="deviance")


@SETTINGS
@given(family=families_st, n=sizes, seed=seeds)
def test_sparse_design_equals_dense(family, n, seed):
    df = simulate(family, n, seed)
    fam, link = FAMILIES[family]
    X = np.column_stack([np.ones(n), df["x1"], df["x2"]])
    a = glmx.glm_fit(X, df["y"], family=fam, link=link, weights=df["m"])
    b = glmx.glm_fit(sp.csr_matrix(X), df["y"], family=fam, link=link, weights=df["m"])
    close(b.coef, a.coef, what="coef")
    close(b.se, a.se, what="se")
    close(b.deviance, a.deviance, what="deviance")


# --- (f) rescaled prior weights ------------------------------------------------------


@SETTINGS
@given(
    family=st.sampled_from(["gaussian", "gamma"]),
    n=sizes,
    seed=seeds,
    w_seed=seeds,
    k=st.floats(0.01, 100.0),
)
def test_scaling_prior_weights_for_dispersion_families(family, n, seed, w_seed, k):
    """R: glm(..., weights = k * w) for gaussian and Gamma gives the same coefficients and
    standard errors (the estimated dispersion absorbs k) and k times the deviance and
    the dispersion.  For gaussian, R's logLik and AIC are unchanged too (the -sum(log w)
    term cancels the log(deviance) shift).

    The iterates are the same for w and k * w, but R's stopping rule
    |dev - dev_old| / (|dev| + 0.1) < tol is not scale-free (the 0.1), so the two fits
    may stop an iteration apart; Fisher scoring for Gamma with the log link converges
    linearly, and the deviance change is quadratic in the coefficient error, so at
    tol = 1e-10 (and k = 1/32) about 1e-5 relative is left in the coefficients, 6e-8 at
    tol = 1e-14.  tol = 1e-16 (stop when the deviance no longer moves) makes this a test
    of the estimates, not of the stopping rule."""
    df = simulate(family, n, seed)
    w = np.random.default_rng(w_seed).uniform(0.5, 2.0, size=n)
    a = fit(family, FORMULA, df, weights=w, tol=1e-16)
    b = fit(family, FORMULA, df, weights=k * w, tol=1e-16)
    close(b.coef, a.coef, what="coef")
    close(b.se, a.se, what="se")
    close(b.deviance, k * a.deviance, what="deviance")
    close(b.null_deviance, k * a.null_deviance, what="null deviance")
    close(b.dispersion, k * a.dispersion, what="dispersion")
    close(b.fitted, a.fitted, what="fitted")
    assert b.df_resid == a.df_resid
    if family == "gaussian":
        close(b.loglik, a.loglik, what="loglik")
        close(b.aic, a.aic, what="aic")


@SETTINGS
@given(n=sizes, seed=seeds, w_seed=seeds)
def test_gaussian_integer_prior_weights_match_freq_weights_estimates(n, seed, w_seed):
    """Integer prior weights and the same frequency weights give the same coefficients
    and deviance (they differ in the residual degrees of freedom)."""
    df = simulate("gaussian", n, seed)
    w = np.random.default_rng(w_seed).integers(1, 4, size=n).astype(float)
    a = fit("gaussian", FORMULA, df, weights=w)
    b = fit("gaussian", FORMULA, df, freq_weights=w)
    close(b.coef, a.coef, what="coef")
    close(b.deviance, a.deviance, what="deviance")
    assert a.nobs == n
    assert b.nobs == w.sum()


def test_r_reference_gaussian_weights_doubled():
    """Numbers from R 4.x: x <- 1:6; y <- c(1.2,1.9,3.4,3.8,5.3,5.9); w <- c(1,2,1,2,1,2);
    glm(y ~ x, weights = w) and weights = 2 * w: identical coef, SE, logLik and AIC;
    deviance doubled."""
    df = pd.DataFrame({"x": [1.0, 2, 3, 4, 5, 6], "y": [1.2, 1.9, 3.4, 3.8, 5.3, 5.9]})
    w = np.array([1.0, 2, 1, 2, 1, 2])
    for fit_ in (glmx.glm("y ~ x", df, weights=w), glmx.glm("y ~ x", df, weights=2 * w)):
        close(fit_.coef, [0.105128205128206, 0.974358974358974], rtol=1e-10)
        close(fit_.se, [0.2480562172502482, 0.0613779959158247], rtol=1e-10)
        assert fit_.loglik == pytest.approx(0.712418566469860, rel=1e-10)
        assert fit_.aic == pytest.approx(4.575162867060280, rel=1e-10)
    a = glmx.glm("y ~ x", df, weights=w)
    b = glmx.glm("y ~ x", df, weights=2 * w)
    assert a.deviance == pytest.approx(0.391794871794872, rel=1e-10)
    assert b.deviance == pytest.approx(0.783589743589744, rel=1e-10)
