"""PIRLS for a non-canonical link takes Newton steps (the observed information) after its
first Fisher step: the same conditional modes, reached quadratically.  Fisher scoring
alone creeps where the random effects are large (a 26-row cauchit GLMM ran for minutes),
so the two must give the same Laplace maximum, and Newton's few iterations a call."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import glmx
import glmx.mixed.pirls as pirls_module

CDF = {
    "probit": stats.norm.cdf,
    "cloglog": lambda e: 1 - np.exp(-np.exp(e)),
    "cauchit": stats.cauchy.cdf,
}


def _data(link: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n, groups = 150, 15
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    eta = -0.3 + 0.7 * x + rng.normal(size=groups)[g] * 0.8
    y = (rng.random(n) < CDF[link](eta)).astype(float)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


def _fit(df: pd.DataFrame, link: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", glmx.GlmxWarning)
        return glmx.glmm("y ~ x + (1 | g)", df, family="binomial", link=link)


@pytest.mark.parametrize("link", sorted(CDF))
def test_newton_pirls_reaches_fisher_pirls_maximum_in_few_iterations(link, monkeypatch):
    df = _data(link, seed=len(link))
    iterations: list[int] = []
    original = pirls_module.pirls

    def counted(*args, **kwargs):
        result = original(*args, **kwargs)
        iterations.append(result.n_iter)
        return result

    monkeypatch.setattr("glmx.mixed.glmm.pirls", counted)
    newton = _fit(df, link)
    newton_iterations = list(iterations)
    monkeypatch.setattr(pirls_module.RowModel, "observed", lambda self, eta, state: None)
    fisher = _fit(df, link)
    assert newton.converged and fisher.converged
    assert abs(newton.loglik - fisher.loglik) < 1e-7
    np.testing.assert_allclose(newton.coef, fisher.coef, atol=1e-4)
    if link != "cauchit":  # log-concave: Newton's weights are positive, so it is used
        assert np.median(newton_iterations) <= 4  # Fisher scoring alone: 5 (probit), 7 (cloglog)
