"""Weighted cross-products of ``[Z D]`` in one pass over the rows, O(nnz) work.

Z = [Z_1 ... Z_K], one block per random-effect term; a row of Z_i holds the term's k_i
model-matrix values in the columns of its level.  D holds dense columns as rows
(``DT``, pD x n: the fixed effects X and a right-hand side).  With weights w::

    Z_i'WZ_i   block diagonal, one k_i x k_i block per level   (m_i, k_i, k_i)
    Z_i'WZ_j   (i > j) one k_i x k_j block per pair of levels that share a row  (P_ij, k_i, k_j)
    Z_i'WD     per level of term i                              (m_i, k_i, pD)
    D W D'                                                      (pD, pD)

Every sum is a ``np.bincount`` over the rows' level (or pair) index, so no array of
n x q is ever formed; the pairs' layout (:class:`PairPattern`) is found once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

Array = NDArray[np.float64]
IntArray = NDArray[np.intp]

_CHUNK = 1 << 20  # rows per chunk of D W D'


@dataclass(frozen=True)
class PairPattern:
    """The pairs (level of term i, level of term j) that share a row, sorted by
    (row level, column level); ``of_row`` is each observation's pair."""

    m_i: int
    m_j: int
    k_i: int
    k_j: int
    rows: IntArray  # (P,) level of term i
    cols: IntArray  # (P,) level of term j
    of_row: IntArray  # (n,) pair index of each observation
    _cache: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_pairs(self) -> int:
        return int(self.rows.size)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.m_i * self.k_i, self.m_j * self.k_j)

    @property
    def nnz(self) -> int:
        """Entries of Z_i'Z_j (k_i k_j per pair)."""
        return self.n_pairs * self.k_i * self.k_j

    def level_pattern(self) -> sp.csr_matrix:
        """m_i x m_j pattern with a one for each pair."""
        ones = np.ones(self.n_pairs)
        return sp.csr_matrix((ones, (self.rows, self.cols)), shape=(self.m_i, self.m_j))

    @cached_property
    def _layout(self) -> tuple[IntArray, IntArray, IntArray]:
        """indptr, indices and the positions in CSR data of the (P, k_i, k_j) entries of
        the expanded q_i x q_j matrix: expanded row r k_i + a holds, for each pair p of
        level row r in turn, its k_j entries (p, a, :)."""
        ki, kj, P = self.k_i, self.k_j, self.n_pairs
        per_level = np.bincount(self.rows, minlength=self.m_i)
        start = np.concatenate([[0], np.cumsum(per_level)[:-1]]).astype(np.intp)
        row_len = np.repeat(per_level * kj, ki)  # entries per expanded row
        indptr = np.concatenate([[0], np.cumsum(row_len)]).astype(np.intp)
        p = np.arange(P)
        r = self.rows
        pos = (
            ki * kj * start[r][:, None, None]
            + np.arange(ki)[None, :, None] * (per_level[r] * kj)[:, None, None]
            + ((p - start[r]) * kj)[:, None, None]
            + np.arange(kj)[None, None, :]
        )
        indices = np.empty(P * ki * kj, dtype=np.intp)
        indices[pos.ravel()] = np.broadcast_to(
            self.cols[:, None, None] * kj + np.arange(kj)[None, None, :], (P, ki, kj)
        ).ravel()
        return indptr, indices, pos.ravel().astype(np.intp)

    @cached_property
    def positions(self) -> tuple[IntArray, IntArray]:
        """Row and column of each entry (P, k_i, k_j) in the expanded q_i x q_j matrix."""
        ki, kj = self.k_i, self.k_j
        rows = self.rows[:, None, None] * ki + np.arange(ki)[None, :, None]
        cols = self.cols[:, None, None] * kj + np.arange(kj)[None, None, :]
        return np.broadcast_to(rows, (self.n_pairs, ki, kj)), np.broadcast_to(
            cols, (self.n_pairs, ki, kj)
        )

    def csr(self, data: Array) -> sp.csr_matrix:
        """The expanded q_i x q_j matrix from per-pair blocks ``data`` (P, k_i, k_j)."""
        if self.k_i == 1 and self.k_j == 1:
            indptr = np.concatenate(
                [[0], np.cumsum(np.bincount(self.rows, minlength=self.m_i))]
            ).astype(np.intp)
            return sp.csr_matrix((data.ravel(), self.cols, indptr), shape=self.shape)
        indptr, indices, pos = self._layout
        flat = np.empty(pos.size)
        flat[pos] = data.ravel()
        return sp.csr_matrix((flat, indices, indptr), shape=self.shape)


def pair_pattern(
    codes_i: IntArray, m_i: int, k_i: int, codes_j: IntArray, m_j: int, k_j: int
) -> PairPattern:
    key = codes_i.astype(np.int64) * m_j + codes_j
    uniq, of_row = np.unique(key, return_inverse=True)
    return PairPattern(
        m_i=m_i,
        m_j=m_j,
        k_i=k_i,
        k_j=k_j,
        rows=(uniq // m_j).astype(np.intp),
        cols=(uniq % m_j).astype(np.intp),
        of_row=np.asarray(of_row, dtype=np.intp).ravel(),
    )


@dataclass(frozen=True)
class Gram:
    """Weighted cross-products of [Z D] before Lambda is applied (see the module)."""

    diag: tuple[Array, ...]  # term i: (m_i, k_i, k_i)
    cross: dict[tuple[int, int], Array]  # (i, j), i > j: (P_ij, k_i, k_j)
    zd: tuple[Array, ...]  # term i: (m_i, k_i, pD)
    dd: Array  # (pD, pD)


def _sums(index: IntArray, values: Array, size: int, runs: IntArray | None = None) -> Array:
    """Sums of ``values`` by ``index``; with ``runs``, the starts of contiguous runs of
    each level (rows sorted by level, every level present), by ``np.add.reduceat``."""
    if runs is not None:
        return np.asarray(np.add.reduceat(values, runs), dtype=np.float64)
    return np.asarray(np.bincount(index, weights=values, minlength=size), dtype=np.float64)


def compute_gram(
    codes: list[IntArray],
    Xs: list[Array],
    m: list[int],
    pairs: dict[tuple[int, int], PairPattern],
    w: Array,
    DT: Array,
    runs: IntArray | None = None,
) -> Gram:
    """The cross-products for weights w (n,) and dense columns DT (pD, n); term i has
    level ``codes[i]`` and model matrix ``Xs[i]`` in each row, and m[i] levels; ``runs``
    are the starts of the first term's levels when the rows are sorted by them."""
    K = len(codes)
    pD, n = DT.shape
    sizes = [int(X.shape[1]) for X in Xs]
    diag = []
    zd = []
    wX = [X.T * w for X in Xs]  # (k_i, n) each: the weighted columns of the terms
    for i in range(K):
        k = sizes[i]
        r = runs if i == 0 else None
        G = np.empty((m[i], k, k))
        for a in range(k):
            for b in range(a + 1):
                G[:, a, b] = G[:, b, a] = _sums(codes[i], wX[i][a] * Xs[i][:, b], m[i], r)
        diag.append(G)
        H = np.empty((m[i], k, pD))
        for a in range(k):
            for c in range(pD):
                H[:, a, c] = _sums(codes[i], wX[i][a] * DT[c], m[i], r)
        zd.append(H)
    cross = {}
    for (i, j), p in pairs.items():
        C = np.empty((p.n_pairs, sizes[i], sizes[j]))
        for a in range(sizes[i]):
            for b in range(sizes[j]):
                C[:, a, b] = _sums(p.of_row, wX[i][a] * Xs[j][:, b], p.n_pairs)
        cross[(i, j)] = C
    dd = np.zeros((pD, pD))
    for lo in range(0, n, _CHUNK):
        chunk = DT[:, lo : lo + _CHUNK]
        dd += chunk @ (chunk * w[lo : lo + _CHUNK]).T
    return Gram(tuple(diag), cross, tuple(zd), dd)
