"""Entries of A^-1, A = Lambda'Z'WZ Lambda + I, from the blocked Cholesky factor.

Split u into the stages (s) and the dense tail (t).  With the stages' factor L_s (sparse,
block lower triangular), the tail rows below it L_ts and the tail's own factor L_tt,
N = L_ts L_s^-1 and S^-1 = (L_tt L_tt')^-1::

    (A^-1)_ss = L_s^-T L_s^-1 + N' S^-1 N
    (A^-1)_st = -N' S^-1
    (A^-1)_tt = S^-1

N has the sparsity of L_ts (one stage) and S^-1 the size of the tail, so an entry costs
the nonzeros of one column of N, or the product of two columns' counts: no q x q dense
matrix is formed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from numpy.typing import NDArray

if TYPE_CHECKING:
    from glmx.mixed.structure import Structure

Array = NDArray[np.float64]
IntArray = NDArray[np.intp]

_CHUNK_ENTRIES = 4_000_000  # products per chunk of N' S^-1 N


def _column_dots(N: sp.csc_matrix, cols: IntArray, Y: Array, ycols: IntArray) -> Array:
    """For each k: sum over the nonzeros r of column cols[k] of N of N[r, c] Y[r, ycols[k]]."""
    starts = N.indptr[cols]
    lens = N.indptr[cols + 1] - starts
    seg = np.repeat(np.arange(cols.size), lens)
    pos = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    pos = pos + np.repeat(starts, lens)
    vals = N.data[pos] * Y[N.indices[pos], ycols[seg]]
    return np.asarray(np.bincount(seg, weights=vals, minlength=cols.size), dtype=np.float64)


def _pair_quadratic(N: sp.csc_matrix, Sinv: Array, ii: IntArray, jj: IntArray) -> Array:
    """For each k: sum over nonzeros r of column ii[k] and c of column jj[k] of N of
    N[r, ii[k]] S^-1[r, c] N[c, jj[k]]: the work is the product of the column counts."""
    si, sj = N.indptr[ii], N.indptr[jj]
    ni, nj = N.indptr[ii + 1] - si, N.indptr[jj + 1] - sj
    combos = ni * nj
    seg = np.repeat(np.arange(ii.size), combos)
    t = np.arange(int(combos.sum())) - np.repeat(np.cumsum(combos) - combos, combos)
    pa = si[seg] + t // np.maximum(nj[seg], 1)
    pb = sj[seg] + t % np.maximum(nj[seg], 1)
    vals = N.data[pa] * Sinv[N.indices[pa], N.indices[pb]] * N.data[pb]
    return np.asarray(np.bincount(seg, weights=vals, minlength=ii.size), dtype=np.float64)


def _in_chunks(work: NDArray[np.int64], fn: Callable[[slice], Array]) -> Array:
    """fn over consecutive slices of the items, each slice holding at most
    _CHUNK_ENTRIES units of ``work`` (or one item), concatenated."""
    ends = np.cumsum(work)
    parts = []
    lo = 0
    while lo < work.size:
        done = int(ends[lo - 1]) if lo else 0
        hi = max(lo + 1, int(np.searchsorted(ends, done + _CHUNK_ENTRIES, side="right")))
        parts.append(fn(slice(lo, hi)))
        lo = hi
    return np.concatenate(parts) if parts else np.zeros(0)


class SelectedInverse:
    """Mixin of :class:`~glmx.mixed.blocked.BlockedFactor`: entries of A^-1."""

    s: Structure
    Ls: list[Array]
    Lc: dict[tuple[int, int], sp.csr_matrix]
    Laa: Array

    @cached_property
    def _stage_inverse(self) -> sp.csc_matrix:
        """L_s^-1 by blocks: B_jj = L_jj^-1, B_ij = -L_ii^-1 sum_{j<=h<i} L_ih B_hj."""
        from glmx.mixed.blocked import block_diagonal, lower_solve

        S = self.s.n_stages
        diag_inv = []
        for L in self.Ls:
            eye = np.broadcast_to(np.eye(L.shape[1]), L.shape).copy()
            diag_inv.append(block_diagonal(lower_solve(L, eye)))
        B: list[list[sp.csr_matrix | None]] = [[None] * S for _ in range(S)]
        for j in range(S):
            B[j][j] = diag_inv[j]
            for i in range(j + 1, S):
                acc = sum(self.Lc[(i, h)] @ B[h][j] for h in range(j, i))  # type: ignore[operator]
                B[i][j] = -(diag_inv[i] @ acc)
        return sp.csc_matrix(sp.bmat(B, format="csc"))

    @cached_property
    def _gram_stage(self) -> sp.csr_matrix:
        """L_s^-T L_s^-1."""
        Binv = self._stage_inverse
        return sp.csr_matrix(Binv.T @ Binv)

    @cached_property
    def _N(self) -> sp.csc_matrix:
        """L_ts L_s^-1, (q_tail x q_stages)."""
        s = self.s
        rows = [[self.Lc[(i, j)] for j in range(s.n_stages)] for i in range(s.n_stages, s.K)]
        return sp.csc_matrix(sp.bmat(rows, format="csr") @ self._stage_inverse)

    @cached_property
    def _tail_inverse(self) -> Array:
        """S^-1 = (L_tt L_tt')^-1, dense (q_tail x q_tail)."""
        qt = self.s.q_tail
        inv, info = sla.lapack.dpotri(np.array(self.Laa[:qt, :qt], order="F"), lower=1)
        if info != 0:
            raise np.linalg.LinAlgError("the tail factor is singular")
        return np.asarray(np.tril(inv) + np.tril(inv, -1).T)

    def _quadratic(self, ii: IntArray, jj: IntArray) -> Array:
        """N[:, ii]' S^-1 N[:, jj], entry by entry."""
        N, Sinv = self._N, self._tail_inverse
        counts = np.diff(N.indptr).astype(np.int64)
        return _in_chunks(
            counts[ii] * counts[jj], lambda sl: _pair_quadratic(N, Sinv, ii[sl], jj[sl])
        )

    def _cross(self, ii: IntArray, jj: IntArray) -> Array:
        """(N[:, ii]' S^-1)[jj], entry by entry (jj positions in the tail)."""
        N, Sinv = self._N, self._tail_inverse
        counts = np.diff(N.indptr).astype(np.int64)
        return _in_chunks(counts[ii], lambda sl: _column_dots(N, ii[sl], Sinv, jj[sl]))

    def inverse_entries(self, i: IntArray, j: IntArray) -> Array:
        """Entries (A^-1)[i, j] for index arrays of equal shape (positions in u)."""
        s = self.s
        qs = s.q_stages
        i, j = np.broadcast_arrays(np.asarray(i, dtype=np.intp), np.asarray(j, dtype=np.intp))
        shape = i.shape
        q = s.reterms.q
        keys, back = np.unique(i.ravel().astype(np.int64) * q + j.ravel(), return_inverse=True)
        i, j = (keys // q).astype(np.intp), (keys % q).astype(np.intp)  # each entry once
        out = np.zeros(i.size)
        si, sj = i < qs, j < qs
        both = si & sj
        if both.any():
            G = self._gram_stage
            out[both] = np.asarray(G[i[both], j[both]]).ravel()
        if s.q_tail:
            if both.any():
                out[both] += self._quadratic(i[both], j[both])
            for a, b, sel in ((i, j, si & ~sj), (j, i, ~si & sj)):
                if sel.any():
                    out[sel] = -self._cross(a[sel], b[sel] - qs)
            tt = ~si & ~sj
            if tt.any():
                out[tt] = self._tail_inverse[i[tt] - qs, j[tt] - qs]
        return out[back.ravel()].reshape(shape)
