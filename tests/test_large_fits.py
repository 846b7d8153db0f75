"""Large fits start from a subsample fit; the estimates must be the fully converged ones."""

from __future__ import annotations

import numpy as np
import pytest

import glmx
import glmx.solvers.warmstart as warmstart


@pytest.mark.parametrize("family", ["gamma", "poisson"])
def test_warm_started_fit_equals_fully_converged_fit(family, monkeypatch):
    rng = np.random.default_rng(11)
    n = warmstart.WARM_START_MIN_ROWS + 10_000
    X = np.column_stack([np.ones(n), rng.normal(scale=0.3, size=(n, 4))])
    mu = np.exp(X @ np.array([0.5, 0.4, -0.3, 0.2, 0.1]))
    y = rng.gamma(2.0, mu / 2.0) if family == "gamma" else rng.poisson(mu).astype(float)
    link = "log"
    warm = glmx.glm_fit(X, y, family=family, link=link)
    monkeypatch.setattr(warmstart, "WARM_START_MIN_ROWS", 10**12)  # R's start
    exact = glmx.glm_fit(X, y, family=family, link=link, tol=1e-15, max_iter=200)
    np.testing.assert_allclose(warm.coef, exact.coef, rtol=1e-8)
    np.testing.assert_allclose(warm.se, exact.se, rtol=1e-5)
    assert warm.deviance == pytest.approx(exact.deviance, rel=1e-12)
    assert warm.n_iter <= exact.n_iter


def test_warm_start_of_a_many_level_factor_refines_its_levels(monkeypatch):
    import pandas as pd

    rng = np.random.default_rng(12)
    n, levels = warmstart.WARM_START_MIN_ROWS + 10_000, 400
    g = rng.integers(0, levels, n)
    df = pd.DataFrame({"x": rng.normal(size=n), "g": [f"L{i:03d}" for i in g]})
    df["y"] = rng.poisson(np.exp(0.3 + 0.2 * df["x"] + rng.normal(0, 0.5, levels)[g]))
    warm = glmx.glm("y ~ x + g", df, family="poisson")
    assert warm._fit.X.__class__.__name__ == "CategoricalDesign"
    monkeypatch.setattr(warmstart, "WARM_START_MIN_ROWS", 10**12)
    exact = glmx.glm("y ~ x + g", df, family="poisson", tol=1e-15, max_iter=200)
    np.testing.assert_allclose(warm.coef, exact.coef, rtol=1e-8, atol=1e-10)
    assert warm.deviance == pytest.approx(exact.deviance, rel=1e-12)
    # the level refinement makes the first full step small: Newton then needs three
    assert warm.n_iter <= 3 < exact.n_iter


def test_canonical_links_are_recognized():
    from glmx import families

    assert families.poisson().canonical and families.binomial().canonical
    assert families.gaussian().canonical and families.inverse_gaussian().canonical
    assert not families.gamma(link="log").canonical
    assert not families.binomial(link="probit").canonical
    assert not families.negative_binomial(theta=2.0).canonical


def test_one_pass_design_scan_finds_late_bad_values_and_broken_ones_columns(monkeypatch):
    # glm_fit scans a numpy X in row blocks and threads: a value far from the first
    # block must still be caught, and a column of ones broken late is not an intercept
    import glmx.fitting as fitting
    from glmx.design.scan import scan_dense

    monkeypatch.setenv("GLMX_NUM_THREADS", "2")
    rng = np.random.default_rng(13)
    n = 300_000
    X = np.column_stack([np.ones(n), rng.normal(size=n), np.full(n, 1e306)])
    finite, ones = scan_dense(X)  # the row sums overflow: not finite, checked exactly
    assert not finite and ones
    X[:, 2] = 1.0  # two columns of ones
    X[n - 3, 0] = 2.0
    assert scan_dense(X) == (True, True)  # column 2 is still all ones
    X[n - 1, 2] = 0.5
    assert scan_dense(X) == (True, False)
    assert scan_dense(X[:0]) == (True, False)
    y = rng.poisson(1.0, n).astype(float)
    fit = glmx.glm_fit(X[:, :2], y, family="poisson")
    assert not fit._fit.has_intercept  # column 0 has a 2 in row n - 3
    X[n - 2, 1] = np.nan
    with pytest.raises(glmx.DataError, match=r"column 'x1' of X has 1 missing"):
        glmx.glm_fit(X, y, family="poisson")
    X[n - 2, 1] = 0.0
    X[:, 0] = 1.0
    X[:, 2] = 1e306  # the block sums overflow, but every value is finite: no error
    design, ones = fitting._checked_design(X, None)
    assert ones and design.X is X
