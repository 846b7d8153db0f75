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
