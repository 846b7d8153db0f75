"""The sparse Gram kernel (glmx.design.sparse_gram) against dense products, and GLM fits
on a sparse X against the same fits on the dense X."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse as sp

import glmx
from glmx.design import sparse_gram as sg
from glmx.design.matrix import SparseDesign

RTOL = 1e-12


def random_csr(n: int, p: int, per_row: float, seed: int) -> sp.csr_matrix:
    """CSR with an intercept-like dense column 0, empty rows and a never-stored column."""
    rng = np.random.default_rng(seed)
    S = sp.random(n, p - 1, density=per_row / (p - 1), format="csr", random_state=rng)
    S.data = rng.standard_normal(S.nnz)
    X = sp.hstack([sp.csr_matrix(rng.uniform(0.5, 1.5, (n, 1))), S], format="lil")
    X[::7] = 0.0  # every 7th row empty
    X[:, p // 2] = 0.0  # a column never stored
    X = X.tocsr()
    X.eliminate_zeros()
    assert np.diff(X.indptr)[::7].max() == 0 and X.getnnz(axis=0)[p // 2] == 0
    return X


def dense_products(X: sp.csr_matrix, w: np.ndarray, v: np.ndarray) -> tuple:
    Xd = X.toarray()
    return Xd.T @ (w[:, None] * Xd), Xd.T @ v


def assert_rel(actual: np.ndarray, expected: np.ndarray, rtol: float = RTOL) -> None:
    """max |actual - expected| <= rtol * max |expected|."""
    err = np.abs(actual - expected).max() / np.abs(expected).max()
    assert err <= rtol, err


def weights(n: int, seed: int) -> np.ndarray:
    w = np.random.default_rng(seed).uniform(0.0, 3.0, n)
    w[::5] = 0.0  # zero weights
    return w


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize(("n", "p", "per_row"), [(3000, 40, 3.0), (400, 300, 60.0), (50, 5, 1.0)])
def test_gram_and_rmatvec_equal_dense_products(n, p, per_row, index_dtype):
    X = random_csr(n, p, per_row, seed=n + p)
    X.indices = X.indices.astype(index_dtype)
    X.indptr = X.indptr.astype(index_dtype)
    w = weights(n, 1)
    v = np.random.default_rng(2).standard_normal(n)
    G_ref, r_ref = dense_products(X, w, v)
    G, r = sg.sparse_gram(X, w, v)
    assert X.indices.dtype == index_dtype  # the kernel ran on these indices
    assert_rel(G, G_ref)
    assert_rel(r, r_ref)
    np.testing.assert_array_equal(G, G.T)
    assert np.all(G[p // 2] == 0.0)  # the never-stored column
    G_only, none = sg.sparse_gram(X, w)
    assert none is None
    np.testing.assert_array_equal(G_only, G)


def test_unsorted_and_duplicate_indices_through_sparse_design():
    rng = np.random.default_rng(3)
    n, p = 500, 30
    X = random_csr(n, p, 4.0, seed=4)
    # reverse each row's entries: same matrix, unsorted indices
    order = np.concatenate(
        [np.arange(X.indptr[i + 1] - 1, X.indptr[i] - 1, -1) for i in range(n)]
    ).astype(np.intp)
    unsorted = sp.csr_matrix((X.data[order], X.indices[order], X.indptr), shape=X.shape)
    assert not unsorted.has_sorted_indices
    # split one stored value of a row into two entries of the same column: duplicates
    i = int(np.flatnonzero(np.diff(X.indptr) >= 2)[0])
    s = X.indptr[i]
    data = np.insert(X.data, s + 1, 0.25 * X.data[s])
    data[s] *= 0.75
    dup = sp.csr_matrix(
        (data, np.insert(X.indices, s + 1, X.indices[s]), X.indptr + (np.arange(n + 1) > i)),
        shape=X.shape,
    )
    assert not dup.has_canonical_format
    w = weights(n, 5)
    v = rng.standard_normal(n)
    G_ref, r_ref = dense_products(X, w, v)
    for Y in (unsorted, dup):
        with pytest.raises(ValueError, match="sorted"):
            sg.sparse_gram(Y, w)
        G, r = SparseDesign(Y).gram_rmatvec(w, v)
        assert_rel(G, G_ref)
        assert_rel(r, r_ref)
        assert not Y.has_canonical_format  # the caller's matrix is left as it was


def test_result_is_bitwise_the_same_for_any_threads_blocks_and_chunks(monkeypatch):
    n, p = 20000, 80
    X = random_csr(n, p, 8.0, seed=6)  # about 0.9 million pairs: a parallel Gram
    w = weights(n, 7)
    v = np.random.default_rng(8).standard_normal(n)
    pairs = sg.column_pairs(X)
    runs = []
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("GLMX_NUM_THREADS", threads)
        blocks = sg.gram_blocks(pairs, n)
        assert len(blocks.runs) == int(threads)
        runs.append(sg.sparse_gram(X, w, v, blocks))
    # every column its own block, two threads
    runs.append(sg.sparse_gram(X, w, v, (np.arange(p + 1), [(0, p // 3), (p // 3, p)])))
    monkeypatch.setattr(sg, "_CHUNK_ROWS", 777)  # rows taken in chunks, the last one short
    runs.append(sg.sparse_gram(X, w, v, blocks))
    G_ref, r_ref = dense_products(X, w, v)
    assert_rel(runs[0][0], G_ref)
    assert_rel(runs[0][1], r_ref)
    for G, r in runs[1:]:
        np.testing.assert_array_equal(G, runs[0][0])
        np.testing.assert_array_equal(r, runs[0][1])


def test_column_pairs_and_blocks_cover_the_columns():
    X = sp.csr_matrix(np.array([[1.0, 0, 2, 3], [0, 0, 0, 0], [0, 4, 5, 0]]))
    # row 0: (0,0) (0,2) (0,3) (2,2) (2,3) (3,3); row 2: (1,1) (1,2) (2,2)
    np.testing.assert_array_equal(sg.column_pairs(X), [3.0, 2.0, 3.0, 1.0])
    blocks = sg.gram_blocks(np.full(1000, 1000.0), 10_000)
    assert blocks.cuts[0] == 0 and blocks.cuts[-1] == 1000
    assert np.all(np.diff(blocks.cuts) > 0)
    assert blocks.runs[0][0] == 0 and blocks.runs[-1][1] == len(blocks.cuts) - 1


def test_empty_designs():
    for shape in ((0, 3), (4, 0), (5, 3)):
        G, r = SparseDesign(sp.csr_matrix(shape)).gram_rmatvec(np.ones(shape[0]), np.ones(shape[0]))
        np.testing.assert_array_equal(G, np.zeros((shape[1], shape[1])))
        np.testing.assert_array_equal(r, np.zeros(shape[1]))


def test_spgemm_fallback_without_numba(monkeypatch):
    X = random_csr(300, 12, 3.0, seed=9)
    w = weights(300, 10)
    v = np.ones(300)
    monkeypatch.setitem(sys.modules, "glmx.design.sparse_gram", None)  # import fails
    G, r = SparseDesign(X).gram_rmatvec(w, v)
    G_ref, r_ref = dense_products(X, w, v)
    assert_rel(G, G_ref)
    assert_rel(r, r_ref)


def simulated_glm(family: str, seed: int) -> tuple[sp.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, p = 20000, 60
    S = sp.random(n, p - 1, density=6.0 / (p - 1), format="csr", random_state=rng)
    S.data = rng.standard_normal(S.nnz)
    X = sp.hstack([sp.csr_matrix(np.ones((n, 1))), S], format="csr")
    eta = X @ (rng.choice([-1.0, 1.0], p) * rng.uniform(0.05, 0.3, p))
    if family == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    return X, y


@pytest.mark.parametrize("family", ["poisson", "binomial"])
def test_glm_fit_on_sparse_x_equals_fit_on_dense_x(family):
    X, y = simulated_glm(family, seed=11)
    sparse = glmx.glm_fit(X, y, family=family)
    dense = glmx.glm_fit(X.toarray(), y, family=family)
    assert isinstance(sparse._fit.X, SparseDesign)
    assert sparse.converged and sparse.n_iter == dense.n_iter
    np.testing.assert_allclose(sparse.coef.to_numpy(), dense.coef.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(sparse.se.to_numpy(), dense.se.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(sparse.deviance, dense.deviance, rtol=1e-12)
