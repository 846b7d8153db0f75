"""The narrow dense Gram kernel (glmx.design.dense_gram) against numpy's products, and
when DenseDesign uses it."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import glmx
from glmx.design import dense_gram as dg
from glmx.design import matrix as dm
from glmx.design.matrix import DenseDesign

RTOL = 1e-13


def assert_rel(actual: np.ndarray, expected: np.ndarray, rtol: float = RTOL) -> None:
    """max |actual - expected| <= rtol * max |expected|."""
    err = np.abs(actual - expected).max() / np.abs(expected).max()
    assert err <= rtol, err


def data(n: int, p: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    w = rng.uniform(-1.0, 3.0, n)  # any sign: no square roots
    w[::5] = 0.0
    return X, w, rng.standard_normal(n)


# p: below, at and past the kernel's groups of four k; n: not a multiple of the block
@pytest.mark.parametrize("p", [1, 3, 4, 5, 9, 32])
@pytest.mark.parametrize("n", [2, 63, 64, 1001, 20_000])
def test_gram_and_rmatvec_equal_numpy(n, p):
    X, w, v = data(n, p, seed=n + p)
    G, r = dg.narrow_gram(X, w, v)
    assert_rel(G, X.T @ (w[:, None] * X))
    assert_rel(r, X.T @ v)
    assert np.array_equal(G, G.T)  # exactly symmetric
    G2, none = dg.narrow_gram(X, w)
    assert none is None
    assert np.array_equal(G2, G)  # X'v does not change the Gram


@pytest.mark.parametrize("layout", ["F", "column slice", "row slice"])
def test_any_memory_layout(layout):
    X, w, v = data(5000, 12)
    wide = np.random.default_rng(1).standard_normal((10_000, 30))
    Y = {
        "F": np.asfortranarray(X),
        "column slice": wide[:5000, ::3][:, :12],
        "row slice": wide[::2, :12],
    }[layout]
    G, r = dg.narrow_gram(Y, w, v)
    assert_rel(G, Y.T @ (w[:, None] * Y))
    assert_rel(r, Y.T @ v)


def test_threads_give_the_same_gram_to_rounding(monkeypatch):
    X, w, v = data(50_000, 7)
    results = {}
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("GLMX_NUM_THREADS", threads)
        results[threads] = dg.narrow_gram(X, w, v)
    for G, r in results.values():
        assert_rel(G, results["1"][0], 1e-14)
        assert_rel(r, results["1"][1], 1e-14)


def test_non_finite_values_propagate():
    # the kernel's fast-math allows reassociation only: NaN and inf are not assumed away
    X, w, v = data(3000, 6)
    w[17] = np.nan
    G, _ = dg.narrow_gram(X, w, v)
    assert np.isnan(G).all()
    X[42, 2] = np.inf
    w[17] = 1.0
    G, r = dg.narrow_gram(X, np.abs(w), v)
    assert np.isinf(G[2, 2]) and not np.isfinite(r[2])
    assert np.isfinite(G[0, 1])  # untouched entries stay finite


def test_design_uses_the_kernel_for_narrow_tall_designs(monkeypatch):
    calls = []
    real = dg.narrow_gram
    monkeypatch.setattr(dg, "narrow_gram", lambda *a: calls.append(a[0].shape) or real(*a))
    big, w, v = data(200_000, 10)  # 200,000 x 55 multiply-adds: the kernel
    G, r = DenseDesign(big).gram_rmatvec(w, v)
    assert calls == [(200_000, 10)]
    assert_rel(G, big.T @ (w[:, None] * big))
    small = big[:2000]  # a small Gram: syrk, Numba not needed
    DenseDesign(small).gram_rmatvec(np.abs(w[:2000]), v[:2000])
    wide = np.random.default_rng(3).standard_normal((20_000, 40))  # past 32 columns: syrk
    DenseDesign(wide).gram_rmatvec(np.abs(w[:20_000]), v[:20_000])
    assert calls == [(200_000, 10)]
    assert dm._NARROW_COLUMNS == 32


def test_syrk_fallback_without_numba(monkeypatch):
    X, w, v = data(200_000, 10)
    w = np.abs(w)  # the syrk path scales rows by sqrt(w)
    expected = DenseDesign(X).gram_rmatvec(w, v)
    monkeypatch.setitem(sys.modules, "glmx.design.dense_gram", None)  # import fails
    G, r = DenseDesign(X).gram_rmatvec(w, v)
    assert_rel(G, expected[0], 1e-12)
    assert_rel(r, expected[1], 1e-12)


@pytest.mark.parametrize("family", ["poisson", "binomial", "gamma"])
def test_glm_fit_through_the_kernel_equals_fit_through_syrk(family, monkeypatch):
    rng = np.random.default_rng(4)
    n = 100_000
    X = np.c_[np.ones(n), rng.standard_normal((n, 6))]
    eta = X @ np.r_[0.3, 0.2, -0.1, 0.05, 0.0, 0.1, -0.2]
    y = {
        "poisson": lambda: rng.poisson(np.exp(eta)),
        "binomial": lambda: rng.binomial(1, 1 / (1 + np.exp(-eta))),
        "gamma": lambda: rng.gamma(2.0, np.exp(eta) / 2.0),
    }[family]()
    link = {"poisson": "log", "binomial": "logit", "gamma": "log"}[family]
    kernel = glmx.glm_fit(X, y, family=family, link=link)
    monkeypatch.setattr(dm, "_NARROW_COLUMNS", 0)  # every Gram by syrk
    syrk = glmx.glm_fit(X, y, family=family, link=link)
    np.testing.assert_allclose(kernel.coef, syrk.coef, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(kernel.se, syrk.se, rtol=1e-10)
    assert kernel.deviance == pytest.approx(syrk.deviance, rel=1e-13)
