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

from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.linalg as sla
import scipy.sparse as sp
from numpy.typing import NDArray

if TYPE_CHECKING:
    from glmx.mixed.structure import Structure

Array = NDArray[np.float64]
IntArray = NDArray[np.intp]


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
        from glmx.mixed.kernels import pair_quadratic

        N, Sinv = self._N, self._tail_inverse
        return np.asarray(pair_quadratic(N.indptr, N.indices, N.data, Sinv, ii, jj))

    def _cross(self, ii: IntArray, jj: IntArray) -> Array:
        """(N[:, ii]' S^-1)[jj], entry by entry (jj positions in the tail)."""
        from glmx.mixed.kernels import column_dots

        N, Sinv = self._N, self._tail_inverse
        return np.asarray(column_dots(N.indptr, N.indices, N.data, Sinv, ii, jj))

    def inverse_entries(self, i: IntArray, j: IntArray) -> Array:
        """Entries (A^-1)[i, j] for index arrays of equal shape (positions in u)."""
        s = self.s
        qs = s.q_stages
        i, j = np.broadcast_arrays(np.asarray(i, dtype=np.intp), np.asarray(j, dtype=np.intp))
        shape = i.shape
        q = s.reterms.q
        back, keys = pd.factorize(i.ravel().astype(np.int64) * q + j.ravel())  # by hashing
        keys = np.asarray(keys, dtype=np.int64)
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
