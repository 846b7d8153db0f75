"""Maxima on the edge of the valid region (glmx.solvers.boundary), against an oracle that
shares nothing with glmx: scipy's SLSQP on the deviance written out here, with the edge
as explicit linear constraints, from several starts.

The classes: binomial (and quasibinomial) with the log link, where the maximum puts
fitted probabilities at 1 for rows with y = 1; poisson (and quasipoisson) with the
identity or sqrt link, where it puts rates at 0 for rows with y = 0.  On data generated
so that the edge binds, glmx must say ``converged=True`` (the point satisfies the
Karush-Kuhn-Tucker conditions of a concave problem: it is the maximum), reach the
oracle's deviance to the margin it keeps from the edge, keep every fitted value valid,
and warn that the maximum is on the edge.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

import glmx
from glmx.errors import BoundaryWarning, ConvergenceWarning

SEEDS = range(12)


def _log_binomial(seed: int) -> pd.DataFrame:
    """Risks exp(a + b x) capped at 1: rows beyond the cap are all successes."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([40, 80, 200]))
    x = rng.uniform(0, 1, n)
    z = rng.normal(size=n)
    eta = np.minimum(-2.0 + 3.0 * x + 0.3 * z, 0.0)
    y = (rng.random(n) < np.exp(eta)).astype(float)
    y[x > 0.85] = 1.0  # the top rows at certainty: the maximum wants them beyond 1
    return pd.DataFrame({"y": y, "x": x, "z": z})


def _poisson_edge(seed: int) -> pd.DataFrame:
    """Rates a + b x crossing 0: rows below it have counts of 0."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([40, 80, 200]))
    x = rng.uniform(-1, 1, n)
    z = rng.normal(size=n)
    mu = np.maximum(2.0 + 4.0 * x + 0.3 * z, 0.0)
    y = rng.poisson(mu).astype(float)
    y[x < -0.5] = 0.0
    return pd.DataFrame({"y": y, "x": x, "z": z})


def _deviance(family: str, link: str, y: np.ndarray, eta: np.ndarray) -> float:
    """The textbook deviance, +inf outside the valid region."""
    if family == "binomial":  # log link
        mu = np.exp(eta)
        if np.any(mu > 1.0):
            return np.inf
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = np.where(y > 0, y * np.log(y / mu), 0.0)
            t2 = np.where(y < 1, (1 - y) * np.log((1 - y) / (1 - mu)), 0.0)
        return float(2 * np.sum(t1 + t2))
    if np.any(eta < 0):
        return np.inf
    with np.errstate(over="ignore"):
        mu = eta if link == "identity" else eta**2
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(y > 0, y * np.log(y / mu), 0.0)
    return float(2 * np.sum(t - (y - mu)))


def _oracle(family: str, link: str, df: pd.DataFrame, starts: list[np.ndarray]) -> float:
    """The lowest deviance SLSQP reaches subject to the edge (every row's eta on its
    valid side), from the given starts."""
    X = np.column_stack([np.ones(len(df)), df["x"], df["z"]])
    y = df["y"].to_numpy()
    side = -1.0 if family == "binomial" else 1.0
    cons = {"type": "ineq", "fun": lambda b: side * (X @ b), "jac": lambda b: side * X}
    best = np.inf
    for b0 in starts:
        res = optimize.minimize(
            lambda b: min(_deviance(family, link, y, X @ b), 1e300),
            b0,
            method="SLSQP",
            constraints=[cons],
            options={"maxiter": 500, "ftol": 1e-14},
        )
        if np.all(side * (X @ res.x) >= -1e-12):
            best = min(best, _deviance(family, link, y, np.maximum(side * (X @ res.x), 0) * side))
    return best


def _fit(family: str, link: str, df: pd.DataFrame):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = glmx.glm("y ~ x + z", df, family=family, link=link)
    return res, [w for w in caught if issubclass(w.category, glmx.GlmxWarning)]


CLASSES = [
    ("binomial", "log", _log_binomial),
    ("quasibinomial", "log", _log_binomial),
    ("poisson", "identity", _poisson_edge),
    ("quasipoisson", "identity", _poisson_edge),
    ("poisson", "sqrt", _poisson_edge),
]


@pytest.mark.parametrize("family,link,make", CLASSES, ids=[f"{f}-{k}" for f, k, _ in CLASSES])
@pytest.mark.parametrize("seed", SEEDS)
def test_maximum_on_the_edge_is_reached_and_certified(family, link, make, seed):
    df = make(seed)
    res, caught = _fit(family, link, df)
    kind = "binomial" if "binomial" in family else "poisson"
    X = np.column_stack([np.ones(len(df)), df["x"], df["z"]])
    starts = [np.nan_to_num(res.coef.to_numpy())]
    starts.append(np.array([-3.0, 0.5, 0.0]) if kind == "binomial" else np.array([3.0, 1.0, 0.0]))
    oracle = _oracle(kind, link, df, starts)
    dev = _deviance(kind, link, df["y"].to_numpy(), X @ np.nan_to_num(res.coef.to_numpy()))
    assert np.isfinite(dev)
    # the margin glmx keeps from the edge costs at most 1e-9 of a unit per row
    assert dev <= oracle + 1e-9 * len(df) + 1e-9 * abs(oracle), (dev, oracle)
    assert res.converged
    assert not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    mu = np.asarray(res.fitted)
    if kind == "binomial":
        assert np.all(mu < 1.0) and np.all(mu > 0.0)
    else:
        assert np.all(mu > 0.0)
    np.testing.assert_allclose(
        X @ res.coef.to_numpy(), res.linear_predictor, rtol=1e-12, atol=1e-15
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_edge_warning_counts_the_fitted_values_at_the_bound(seed):
    df = _poisson_edge(seed)
    res, caught = _fit("poisson", "identity", df)
    edge = [w for w in caught if issubclass(w.category, BoundaryWarning)]
    at_bound = int(np.sum(np.asarray(res.fitted) < 1e-6 * df["y"].mean()))
    if at_bound:
        assert any(f"{at_bound} fitted value(s) at the bound" in str(w.message) for w in edge)
    else:
        assert not any("at the bound" in str(w.message) for w in edge)


def test_edge_maximum_matches_a_brute_force_small_case():
    """Two parameters, a grid over the feasible region: the edge maximum is its corner."""
    x = np.array([0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0])
    y = np.array([1.0, 0.0, 1.0, 1.0, 2.0, 3.0, 0.0, 0.0])
    df = pd.DataFrame({"y": y, "x": x})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", glmx.GlmxWarning)
        res = glmx.glm("y ~ x", df, family="poisson", link="identity")
    a = np.linspace(0.0, 3.0, 601)
    b = np.linspace(-1.5, 1.5, 601)
    A, B = np.meshgrid(a, b, indexing="ij")
    eta = A[..., None] + B[..., None] * x
    ok = np.all(eta >= 0, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(y > 0, y * np.log(y / eta), 0.0)
    dev = np.where(ok, 2 * np.sum(t - (y - eta), axis=-1), np.inf)
    assert res.converged
    assert res.deviance <= np.nanmin(dev) + 1e-7
    i, j = np.unravel_index(np.nanargmin(dev), dev.shape)
    np.testing.assert_allclose(res.coef.to_numpy(), [a[i], b[j]], atol=0.01)
