"""Sandwich covariances against R's ``sandwich`` and ``lmtest``.

References come from ``tests/fixtures/make_sandwich_cases.R`` (run from tests/fixtures
with ``Rscript make_sandwich_cases.R``; R 4.2.2, sandwich 3.0-2, lmtest 0.9-40), one case
per fit, every fit with ``control = glm.control(epsilon = 1e-12, maxit = 100)`` and then
continued to R's converged fit by ``make_polished_cases.R`` (glmx at its defaults)::

    vcov_HC0..vcov_HC3  sandwich::vcovHC(fit, type = "HC0".."HC3")
    vcov_CL             sandwich::vcovCL(fit, cluster = cl)      # glm default: type HC0,
                                                                 # cadjust G/(G-1)
    vcov_CL_HC1         sandwich::vcovCL(fit, cluster = cl, type = "HC1")
    coeftest_HC3        lmtest::coeftest(fit, vcov. = vcovHC(fit, type = "HC3"))
    coeftest_CL         lmtest::coeftest(fit, vcov. = vcovCL(fit, cluster = cl))

``*_freq`` cases: R fitted the data with row i repeated freq[i] times, glmx fits the
collapsed rows with ``freq_weights``.  ``mtcars_zero_weights``: R's reference is the fit
without the zero-weight rows (sandwich 3.0-2 mishandles zero prior weights; see the R
script), glmx fits every row.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import glmx
from glmx.inference.covariance import cluster_vcov, robust_vcov
from refdata import R_FAMILY, dataset, glm_cases

REF = glm_cases("glm_sandwich_cases.json")
CASES = REF["cases"]
NAMES = sorted(CASES)
HC = ["HC0", "HC1", "HC2", "HC3"]


@cache
def fit_of(name: str, cov_type: str | None = None) -> glmx.GLMResults:
    c = CASES[name]
    case = c["case"]
    freq = c.get("freq")
    kwargs = {}
    if cov_type == "cluster":
        kwargs = {"cov_type": "cluster", "cluster": c["cluster"]}
    elif cov_type is not None:
        kwargs = {"cov_type": cov_type}
    return glmx.glm(
        case["formula"],
        dataset(case["data"]),
        family=R_FAMILY.get(case["family"], case["family"]),
        link=case["link"],
        weights=case.get("weights"),
        offset=case.get("offset"),
        freq_weights=None if freq is None else np.asarray(freq, dtype=float),
        **kwargs,
    )


def assert_matrix(actual: np.ndarray, expected: list, rtol: float = 1e-8) -> None:
    """Relative to the largest entry: covariances have entries near zero."""
    expected_arr = np.asarray(expected, dtype=float)
    scale = np.abs(expected_arr).max()
    np.testing.assert_allclose(actual, expected_arr, rtol=rtol, atol=rtol * scale)


# --- vcovHC and vcovCL ----------------------------------------------------------------
@pytest.mark.parametrize("cov_type", HC)
@pytest.mark.parametrize("name", NAMES)
def test_vcov_hc_matches_sandwich(name, cov_type):
    # R: sandwich::vcovHC(fit, type = cov_type)
    fit = fit_of(name)
    V = fit.vcov_robust(cov_type)
    assert V.shape == (fit.rank, fit.rank)
    assert_matrix(V.to_numpy(), CASES[name][f"vcov_{cov_type}"])


@pytest.mark.parametrize("name", NAMES)
def test_vcov_cluster_matches_vcovcl(name):
    # R: sandwich::vcovCL(fit, cluster = cl)  (type "HC0" for a glm, G/(G-1))
    fit = fit_of(name)
    V = fit.vcov_robust("cluster", CASES[name]["cluster"])
    assert_matrix(V.to_numpy(), CASES[name]["vcov_CL"])


@pytest.mark.parametrize("name", NAMES)
def test_cluster_hc1_matches_vcovcl_hc1(name):
    # R: sandwich::vcovCL(fit, cluster = cl, type = "HC1")  (adds (n-1)/(n-k))
    V = cluster_vcov(fit_of(name), CASES[name]["cluster"], type="HC1")
    assert_matrix(V, CASES[name]["vcov_CL_HC1"])


def test_hc_types_differ_as_the_formulas_say():
    # HC1 = HC0 n/(n-k) exactly; HC2, HC3 inflate by the leverage (nonzero here)
    fit = fit_of("budworm_logit")
    v0, v1 = fit.vcov_robust("HC0").to_numpy(), fit.vcov_robust("HC1").to_numpy()
    np.testing.assert_allclose(v1, v0 * 12 / (12 - 4), rtol=1e-13)
    d0, d2, d3 = (np.diag(fit.vcov_robust(t).to_numpy()) for t in ("HC0", "HC2", "HC3"))
    assert np.all(d0 < d2) and np.all(d2 < d3)


def test_aliased_columns_are_left_out():
    fit = fit_of("collinear_gaussian")
    V = fit.vcov_robust("HC3")
    assert list(V.index) == ["Intercept", "x1", "x3"]
    assert np.isnan(fit.coef["x2"])


def test_cluster_column_name_at_fit_time():
    # mtcars clustered by cyl: glmx.glm(..., cluster="cyl") reads the column
    c = CASES["mtcars_gaussian_weights"]
    assert c["case"]["cluster_column"] == "cyl"
    fit = glmx.glm(
        "mpg ~ wt + qsec", dataset("mtcars"), weights="carb", cov_type="cluster",
        cluster="cyl",
    )  # fmt: skip
    assert fit.cov_type == "cluster"
    assert_matrix(fit.vcov.to_numpy(), c["vcov_CL"])
    # and vcov_robust without labels takes the fit's own
    assert_matrix(fit.vcov_robust("cluster").to_numpy(), c["vcov_CL"])


# --- the fitted coefficient table ------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("cov_type", ["HC3", "cluster"])
def test_coef_table_uses_the_sandwich(name, cov_type):
    # R: lmtest::coeftest(fit, vcov. = vcovHC(fit, "HC3")) / vcovCL(fit, cluster = cl)
    ref = CASES[name]["coeftest_HC3" if cov_type == "HC3" else "coeftest_CL"]
    fit = fit_of(name, cov_type)
    kept = ~np.asarray(CASES[name]["aliased"])
    ct = fit.coef_table[kept]
    assert fit.cov_type == cov_type
    scale = np.abs(ref["estimate"]).max()
    np.testing.assert_allclose(ct["estimate"], ref["estimate"], rtol=1e-8, atol=1e-10 * scale)
    np.testing.assert_allclose(ct["std_error"], ref["std_error"], rtol=1e-8)
    np.testing.assert_allclose(ct["statistic"], ref["statistic"], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fit.se[kept], ref["std_error"], rtol=1e-8)


FIXED = [n for n in NAMES if CASES[n]["case"]["family"] in ("poisson", "binomial", "negbin")]
ESTIMATED = [n for n in NAMES if n not in FIXED]


@pytest.mark.parametrize("name", FIXED)
def test_p_values_match_coeftest_fixed_dispersion(name):
    # coeftest.glm has df = Inf: z tests, as summary.glm for these families
    ref = CASES[name]["coeftest_HC3"]
    kept = ~np.asarray(CASES[name]["aliased"])
    p = fit_of(name, "HC3").coef_table["p_value"][kept]
    np.testing.assert_allclose(p, ref["p_value"], rtol=1e-7, atol=1e-300)


@pytest.mark.parametrize("name", ESTIMATED)
def test_p_values_match_coeftest_estimated_dispersion(name):
    # lmtest::coeftest(fit, vcov = vcovHC(fit, "HC3")): z tests (df = Inf) for every glm
    ref = CASES[name]["coeftest_HC3"]
    kept = ~np.asarray(CASES[name]["aliased"])
    p = fit_of(name, "HC3").coef_table["p_value"][kept]
    np.testing.assert_allclose(p, ref["p_value"], rtol=1e-7, atol=1e-300)


# --- frequency weights, zero weights, invariances --------------------------------------
def _expanded_fit(freq: np.ndarray, cov_type: str, cluster: np.ndarray):
    df = dataset("mtcars")
    idx = np.repeat(np.arange(len(df)), freq)
    return glmx.glm(
        "mpg ~ wt + hp", df.iloc[idx].reset_index(drop=True), family="gamma", link="log",
        cov_type=cov_type, cluster=None if cov_type != "cluster" else cluster[idx],
        tol=1e-12,
    )  # fmt: skip


@pytest.mark.parametrize("cov_type", [*HC, "cluster"])
def test_frequency_weights_equal_expanded_rows(cov_type):
    # a row with frequency f counts as f identical rows (gamma: a dispersion to cancel)
    df = dataset("mtcars")
    freq = np.asarray(df["carb"], dtype=float)
    cluster = np.asarray(df["gear"])
    collapsed = glmx.glm(
        "mpg ~ wt + hp", df, family="gamma", link="log", freq_weights=freq,
        cov_type=cov_type, cluster=None if cov_type != "cluster" else cluster, tol=1e-12,
    )  # fmt: skip
    expanded = _expanded_fit(freq.astype(int), cov_type, cluster)
    assert collapsed.nobs == expanded.nobs == freq.sum()
    assert_matrix(collapsed.vcov.to_numpy(), expanded.vcov.to_numpy().tolist(), rtol=1e-9)


def test_row_order_does_not_matter():
    df = dataset("insurance")
    perm = np.random.default_rng(3).permutation(len(df))
    labels = np.arange(len(df)) % 5
    args = {"family": "poisson", "offset": "log_holders", "tol": 1e-12}
    a = glmx.glm("Claims ~ District + Age", df, **args)
    b = glmx.glm("Claims ~ District + Age", df.iloc[perm].reset_index(drop=True), **args)
    for t in HC:
        assert_matrix(b.vcov_robust(t).to_numpy(), a.vcov_robust(t).to_numpy().tolist())
    assert_matrix(
        b.vcov_robust("cluster", labels[perm]).to_numpy(),
        a.vcov_robust("cluster", labels).to_numpy().tolist(),
    )


def test_sparse_design_equals_dense():
    fit = fit_of("insurance_poisson_offset")
    X = fit._fit.X.X
    y, off = fit.y, fit._fit.offset
    labels = CASES["insurance_poisson_offset"]["cluster"]
    sparse = glmx.glm_fit(sp.csr_matrix(X), y, family="poisson", offset=off, tol=1e-12)
    for t in HC:
        assert_matrix(sparse.vcov_robust(t).to_numpy(), fit.vcov_robust(t).to_numpy().tolist())
    assert_matrix(
        sparse.vcov_robust("cluster", labels).to_numpy(),
        fit.vcov_robust("cluster", labels).to_numpy().tolist(),
    )


def test_clusters_of_one_row_each_are_hc0_times_g_over_g_minus_1():
    fit = fit_of("clotting_gamma_log")
    n = fit.nobs
    V = fit.vcov_robust("cluster", np.arange(n)).to_numpy()
    np.testing.assert_allclose(V, fit.vcov_robust("HC0").to_numpy() * n / (n - 1), rtol=1e-12)


# --- errors and warnings ---------------------------------------------------------------
def test_cluster_errors():
    fit = fit_of("budworm_logit")
    with pytest.raises(glmx.DataError, match="length 11 but the fit used 12 rows"):
        fit.vcov_robust("cluster", np.arange(11))
    with pytest.raises(glmx.DataError, match="at least 2 clusters, got 1"):
        fit.vcov_robust("cluster", np.zeros(12))
    with pytest.raises(glmx.DataError, match="1 missing labels"):
        fit.vcov_robust("cluster", [None] + list(range(11)))
    with pytest.raises(glmx.DataError, match="needs cluster labels"):
        fit.vcov_robust("cluster")
    with pytest.raises(glmx.DataError, match="pass the labels"):
        fit.vcov_robust("cluster", "sex")
    with pytest.raises(glmx.DataError, match="cov_type must be one of"):
        robust_vcov(fit, "HC4", None)


def test_hat_value_one_warns_and_gives_nan_as_r():
    # a dummy for one row: its hat value is 1.  R's vcovHC(fit, "HC3") warns "HC3
    # covariances become numerically unstable if hat values are close to 1" and returns
    # NaN; HC0 stays finite.
    x = np.linspace(-1, 1, 12)
    X = np.column_stack([np.ones(12), x, (np.arange(12) == 0).astype(float)])
    y = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8], dtype=float)
    fit = glmx.glm_fit(X, y, family="poisson", tol=1e-12)
    with pytest.warns(glmx.GlmxWarning, match="rows 0 "):
        V = fit.vcov_robust("HC3")
    assert np.isnan(V.to_numpy()).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(fit.vcov_robust("HC0").to_numpy()).all()
    assert isinstance(fit.vcov_robust("HC0"), pd.DataFrame)
