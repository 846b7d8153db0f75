"""Row-parallel passes over a dense design give the serial results."""

from __future__ import annotations

import numpy as np
import pytest

import glmx
from glmx.design import parallel
from glmx.design.matrix import DenseDesign
from glmx.families import binomial


@pytest.fixture
def wide():
    rng = np.random.default_rng(3)
    n, p = 60_000, 40  # n * p above parallel.MIN_PARALLEL_ELEMENTS
    X = rng.normal(size=(n, p))
    return X, rng.random(n), rng.normal(size=n)


@pytest.mark.parametrize("order", ["C", "F"])
def test_gram_and_rmatvec_in_threads_equal_the_direct_products(wide, order, monkeypatch):
    X, w, v = wide
    monkeypatch.setenv("GLMX_NUM_THREADS", "3")
    assert len(parallel.row_slices(X.shape[0], X.shape[1])) == 3
    D = DenseDesign(np.asarray(X, order=order))
    G, rhs = D.gram_rmatvec(w, v)
    G0 = X.T @ (X * w[:, None])
    np.testing.assert_allclose(G, G0, rtol=1e-12, atol=1e-9 * np.abs(G0).max())
    np.testing.assert_array_equal(G, G.T)
    np.testing.assert_allclose(rhs, X.T @ v, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(D.gram(w), G, rtol=1e-15)


def test_thread_count_does_not_change_a_fit(wide, monkeypatch):
    X, _, _ = wide
    rng = np.random.default_rng(5)
    y = rng.poisson(np.exp(0.05 * X[:, :5].sum(axis=1))).astype(float)
    monkeypatch.setenv("GLMX_NUM_THREADS", "1")
    one = glmx.glm_fit(X, y, family="poisson")
    monkeypatch.setenv("GLMX_NUM_THREADS", "2")
    two = glmx.glm_fit(X, y, family="poisson")
    np.testing.assert_allclose(two.coef, one.coef, rtol=1e-10)
    np.testing.assert_allclose(two.se, one.se, rtol=1e-10)


def test_row_slices_cover_the_rows_once_on_block_boundaries(monkeypatch):
    monkeypatch.setenv("GLMX_NUM_THREADS", "4")
    slices = parallel.row_slices(1_000_003, 10, align=4096)
    assert slices[0][0] == 0 and slices[-1][1] == 1_000_003
    assert all(a[1] == b[0] for a, b in zip(slices, slices[1:]))
    assert all(lo % 4096 == 0 for lo, _ in slices)
    assert parallel.row_slices(1000, 10) == [(0, 1000)]  # too small to split
    monkeypatch.setenv("GLMX_NUM_THREADS", "1")
    assert parallel.row_slices(10**7, 50) == [(0, 10**7)]


def test_blas_threads_are_restored_after_a_pass(wide, monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [i["num_threads"] for i in threadpoolctl.threadpool_info()]
    X, w, _ = wide
    monkeypatch.setenv("GLMX_NUM_THREADS", "2")
    DenseDesign(X).gram(w)
    assert [i["num_threads"] for i in threadpoolctl.threadpool_info()] == before


def test_binary_response_deviance_shortcut_equals_the_unit_deviances():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, size=1000).astype(float)
    mu = rng.uniform(1e-12, 1 - 1e-9, size=1000)
    w = rng.uniform(0.5, 2.0, size=1000)
    fam = binomial()
    exact = float(np.sum(w * fam.unit_deviance(y, mu)))
    assert fam.deviance_function(y, w)(mu) == pytest.approx(exact, rel=1e-13)
    # a proportion response takes the general formula
    yp = np.where(y > 0, 0.5, 0.25)
    general = float(np.sum(w * fam.unit_deviance(yp, mu)))
    assert fam.deviance_function(yp, w)(mu) == pytest.approx(general, rel=1e-15)


def test_blockwise_irls_quantities_equal_the_whole_column_formulas(monkeypatch):
    from glmx.families import gamma
    from glmx.solvers.elementwise import (
        BLOCK_ROWS,
        fitted_and_deviance,
        working_weights_and_residuals,
    )
    from glmx.solvers.state import IRLSInputs

    rng = np.random.default_rng(4)
    n = 3 * BLOCK_ROWS + 123
    eta = rng.normal(0.5, 0.3, n)
    y = rng.gamma(2.0, np.exp(eta) / 2.0)
    w = rng.uniform(0.0, 2.0, n)
    w[:10] = 0.0  # zero prior weights: no working weight, no residual
    fam = gamma(link="log")
    inp = IRLSInputs(
        X=DenseDesign(np.ones((n, 1))), y=y, weights=w, freq_weights=np.ones(n),
        offset=np.zeros(n), family=fam,
    )  # fmt: skip
    for threads in ("1", "3"):
        monkeypatch.setenv("GLMX_NUM_THREADS", threads)
        mu, dev, valid = fitted_and_deviance(inp, eta)
        np.testing.assert_array_equal(mu, np.exp(eta))
        assert valid
        assert dev == pytest.approx(fam.deviance(y, mu, w), rel=1e-13)
        W, r = working_weights_and_residuals(inp, eta, mu)
        np.testing.assert_allclose(W, w * mu**2 / mu**2, rtol=1e-14)
        np.testing.assert_allclose(r[10:], ((y - mu) / mu)[10:], rtol=1e-14)
        assert not r[:10].any() and not W[:10].any()
    bad = eta.copy()
    bad[5] = np.nan  # an undefined mean is outside the family's range
    assert not fitted_and_deviance(inp, bad)[2]


def test_threads_raise_no_floating_point_warnings(monkeypatch):
    """numpy's error state is per thread: the workers set their own."""
    import warnings

    from glmx.families import poisson
    from glmx.solvers.elementwise import fitted_and_deviance
    from glmx.solvers.state import IRLSInputs

    monkeypatch.setenv("GLMX_NUM_THREADS", "2")
    n = 400_000
    eta = np.full(n, 800.0)  # exp overflows to inf quietly: an invalid mean, as R
    y = np.zeros(n)
    inp = IRLSInputs(
        X=DenseDesign(np.ones((n, 1))), y=y, weights=np.ones(n), freq_weights=np.ones(n),
        offset=np.zeros(n), family=poisson(),
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mu, dev, valid = fitted_and_deviance(inp, eta)
    assert np.all(mu == np.inf) and not valid


@pytest.mark.parametrize("family", ["poisson", "binomial", "gamma"])
def test_a_fit_keeps_its_n_vectors_in_buffers(family):
    """IRLS writes eta, mu, W and r into buffers kept for the fit, and default weights and
    offset take no memory: the traced peak is a few n-vectors whatever the iteration count
    (before the buffers it was 11-12 and grew with the temporaries of each step)."""
    import importlib
    import tracemalloc

    rng = np.random.default_rng(11)
    n, p = 200_000, 5  # below the warm-start size: R's start, 4-6 iterations
    X = np.column_stack([np.ones(n), 0.3 * rng.standard_normal((n, p - 1))])
    mu = np.exp(X @ np.full(p, 0.2))
    y = {
        "poisson": rng.poisson(mu).astype(float),
        "binomial": (rng.random(n) < mu / (1 + mu)).astype(float),
        "gamma": rng.gamma(2.0, mu / 2.0),
    }[family]
    glmx.glm_fit(X[:500], y[:500], family=family)  # imports and caches outside the trace
    try:  # the narrow Gram kernel these rows use: its import and first call allocate MBs
        kernel = importlib.import_module("glmx.design.dense_gram")
        kernel.narrow_gram(X[:1000], np.ones(1000), np.ones(1000))
    except ImportError:
        pass
    tracemalloc.start()
    try:
        fit = glmx.glm_fit(X, y, family=family, link="log" if family == "gamma" else None)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fit.n_iter >= 4
    vec = 8.0 * n
    assert peak / vec < 8.5, f"peak {peak / vec:.1f} n-vectors"
    assert held / vec < 3.5, f"held {held / vec:.1f} n-vectors"  # eta, mu, W for the results
    assert len(fit.fit_log.seconds) == fit.n_iter
    assert all(s > 0 for s in fit.fit_log.seconds)
