"""Blocked Cholesky factor of the penalized least squares system of a mixed model.

With ``Zt = Z Lambda`` (n x q) and the dense columns D = [X, r] (fixed effects and a
right-hand side r), the weighted system is::

    M = [Zt D]' W [Zt D] + diag(I_q, 0)  =  L L'

as in lme4 and MixedModels.jl.  The blocks follow :class:`~glmx.mixed.structure.Structure`:
each *stage* term s has a (block) diagonal L_ss = chol(A_ss), one small Cholesky per
level, and sparse blocks below it, ``L_is = A_is L_ss^-T``; eliminating it updates the
blocks to its right, ``A_ij -= L_is L_js'``.  The remaining *tail* (crossed terms, X and
r) is one dense Schur complement factored by LAPACK.  The last row of L gives the
solution and the penalized residual sum of squares, ``r2 = L[-1, -1]^2``.

The factor works from the cross-products (:class:`~glmx.mixed.crossprod.Gram`) only: an
evaluation rescales them by Lambda(theta) and refactors, at a cost independent of n.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from numpy.typing import NDArray

from glmx.mixed.crossprod import Gram
from glmx.mixed.schur import dense_update, stage_update
from glmx.mixed.selinv import SelectedInverse
from glmx.mixed.structure import Structure

__all__ = ["BlockedFactor", "Gram", "Structure", "lower_solve", "upper_solve"]

Array = NDArray[np.float64]
IntArray = NDArray[np.intp]

_SMALL = 256  # dense blocks up to this size are factored by numpy (a copy)


def lower_solve(L: Array, B: Array) -> Array:
    """Solve L X = B for stacks of small lower-triangular L (m,k,k), B (m,k,r)."""
    k = L.shape[1]
    X = np.empty_like(B)
    for i in range(k):  # forward substitution over the k rows, vectorized over levels
        acc = B[:, i, :] - np.einsum("mj,mjr->mr", L[:, i, :i], X[:, :i, :])
        X[:, i, :] = acc / L[:, i, i, None]
    return X


def upper_solve(L: Array, B: Array) -> Array:
    """Solve L' X = B for stacks of small lower-triangular L (m,k,k), B (m,k,r)."""
    k = L.shape[1]
    X = np.empty_like(B)
    for i in range(k - 1, -1, -1):
        acc = B[:, i, :] - np.einsum("mj,mjr->mr", L[:, i + 1 :, i], X[:, i + 1 :, :])
        X[:, i, :] = acc / L[:, i, i, None]
    return X


def batched_cholesky(A: Array) -> Array:
    """Lower Cholesky factors of a stack of small SPD matrices (closed form for k <= 2)."""
    k = A.shape[1]
    if k == 1:
        return np.sqrt(A)
    if k == 2:
        L = np.zeros_like(A)
        L[:, 0, 0] = np.sqrt(A[:, 0, 0])
        L[:, 1, 0] = A[:, 1, 0] / L[:, 0, 0]
        L[:, 1, 1] = np.sqrt(A[:, 1, 1] - L[:, 1, 0] ** 2)
        return L
    return np.asarray(np.linalg.cholesky(A), dtype=np.float64)


def block_diagonal(B: Array) -> sp.csr_matrix:
    """The (m k) x (m k) sparse matrix with the k x k blocks B (m,k,k) on its diagonal."""
    m, k, _ = B.shape
    if k == 1:
        return sp.csr_matrix((B.ravel(), np.arange(m), np.arange(m + 1)), shape=(m, m))
    indptr = np.arange(0, m * k * k + 1, k)
    indices = (np.arange(m)[:, None, None] * k + np.arange(k)[None, None, :]).repeat(k, axis=1)
    return sp.csr_matrix((B.ravel(), indices.ravel(), indptr), shape=(m * k, m * k))


def _sandwich(Ti: Array, C: Array, Tj: Array) -> Array:
    """T_i' C_l T_j for each block C_l of a stack (P, k_i, k_j)."""
    if C.shape[1:] == (1, 1):
        return C * (Ti[0, 0] * Tj[0, 0])
    return np.asarray(Ti.T @ C @ Tj)


def _dense_cholesky(A: Array) -> Array:
    """Lower Cholesky factor of A (F-ordered, lower triangle read): in place by LAPACK
    for a large A, by numpy for a small one."""
    if A.shape[0] <= _SMALL:
        return np.asarray(np.linalg.cholesky(A), dtype=np.float64)
    L, info = sla.lapack.dpotrf(A, lower=1, clean=1, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError("the penalized system is not positive definite")
    return np.asarray(L, dtype=np.float64)


class BlockedFactor(SelectedInverse):
    """L of ``M = [Zt D]'W[Zt D] + diag(I, 0)`` at theta; D's last column is the
    right-hand side, the ``n_coef`` before it are coefficients (X)."""

    def __init__(self, structure: Structure, theta: Array, gram: Gram) -> None:
        s = structure
        self.s = s
        rt = s.reterms
        Ts = rt.Ts(np.asarray(theta, dtype=float))
        K, S = s.K, s.n_stages
        off = s.offsets
        pD = gram.dd.shape[0]
        p = pD - 1
        self.n_coef = p
        qs, qt = s.q_stages, s.q_tail
        na = qt + p
        # Lambda'(cross-products)Lambda, stage blocks and the dense tail
        diag = [_sandwich(Ts[i], gram.diag[i], Ts[i]) + np.eye(s.k[i]) for i in range(S)]
        cross: dict[tuple[int, int], sp.csr_matrix] = {}
        for (i, j), pat in s.pairs.items():
            if j < S:
                cross[(i, j)] = pat.csr(_sandwich(Ts[i], gram.cross[(i, j)], Ts[j]))
        # Lambda_i' Z_i'W D, (q_i, pD)
        ZD = [np.asarray(Ts[i].T @ gram.zd[i]).reshape(-1, pD) for i in range(K)]
        tail = np.zeros((na, na), order="F")  # lower triangle of the tail and X
        tb = np.zeros(na)  # the right-hand side's column
        tbb = float(gram.dd[p, p])
        for i in range(S, K):
            a = off[i] - qs
            G = _sandwich(Ts[i], gram.diag[i], Ts[i]) + np.eye(s.k[i])
            idx = a + np.arange(s.m[i])[:, None] * s.k[i] + np.arange(s.k[i])
            tail[idx[:, :, None], idx[:, None, :]] = G
            for j in range(S, i):
                C = gram.cross[(i, j)]
                rows, cols = s.pairs[(i, j)].positions
                tail[a + rows, off[j] - qs + cols] = _sandwich(Ts[i], C, Ts[j])
            tail[qt:, a : a + s.m[i] * s.k[i]] = ZD[i][:, :p].T
            tb[a : a + s.m[i] * s.k[i]] = ZD[i][:, p]
        tail[qt:, qt:] = gram.dd[:p, :p].T  # D W D' by rows: its upper triangle
        tb[qt:] = gram.dd[p, :p]
        # eliminate the stages: L_ss, L_is = A_is L_ss^-T, then the Schur updates
        self.Ls: list[Array] = []
        self.Lc: dict[tuple[int, int], sp.csr_matrix] = {}
        self.Ct: list[Array] = []  # L_D,s' per level of stage s: (m_s, k_s, pD)
        for st in range(S):
            L = batched_cholesky(diag[st])
            if not np.all(np.isfinite(L)):
                raise np.linalg.LinAlgError("the penalized system is not positive definite")
            self.Ls.append(L)
            if st + 1 < K:
                Linv = lower_solve(L, np.broadcast_to(np.eye(s.k[st]), L.shape).copy())
                R = block_diagonal(np.ascontiguousarray(np.transpose(Linv, (0, 2, 1))))
                for i in range(st + 1, K):
                    self.Lc[(i, st)] = (cross[(i, st)] @ R).tocsr()
            Ct = lower_solve(L, ZD[st].reshape(L.shape[0], L.shape[1], pD))
            self.Ct.append(Ct)
            for i in range(st + 1, S):
                stage_update(self, diag, cross, ZD, st, i)
            tb, tbb = dense_update(self, tail, tb, tbb, st, p)
        if not np.all(np.isfinite(tail)) or not np.isfinite(tbb):
            raise np.linalg.LinAlgError("the penalized system is not finite")
        if na:
            self.Laa: Array = _dense_cholesky(tail)
            self.l2 = sla.solve_triangular(self.Laa, tb, lower=True, check_finite=False)
        else:
            self.Laa = np.zeros((0, 0))
            self.l2 = np.zeros(0)
        self.r2 = float(tbb - self.l2 @ self.l2)  # penalized residual sum of squares
        dt = np.diag(self.Laa)
        # log det(Lambda'Z'WZLambda + I) and log det(R_X' R_X)
        self.logdet_L = float(
            sum(2.0 * np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))) for L in self.Ls)
            + 2.0 * np.sum(np.log(dt[:qt]))
        )
        self.logdet_RX = float(2.0 * np.sum(np.log(dt[qt:])))

    @property
    def L11(self) -> Array:
        """The first term's (block) diagonal factor, (m1, k1, k1); its diagonal blocks of
        the dense factor when the first term is in the tail (its block of A is block
        diagonal, so is its factor's)."""
        if self.Ls:
            return self.Ls[0]
        s = self.s
        pos = np.arange(s.m1)[:, None] * s.k1 + np.arange(s.k1)
        return np.asarray(self.Laa[pos[:, :, None], pos[:, None, :]])

    # --- solves ---------------------------------------------------------------------
    def _backward(self, ys: list[Array], y_aa: Array) -> tuple[list[Array], Array]:
        """Solve L' x = y: x per stage (flat) and x of the tail and X."""
        s = self.s
        S, K, p = s.n_stages, s.K, self.n_coef
        x_aa = (
            sla.solve_triangular(self.Laa.T, y_aa, lower=False, check_finite=False)
            if y_aa.size
            else np.zeros(0)
        )
        qt = s.q_tail
        xs: list[Array] = [np.zeros(0)] * S
        for st in range(S - 1, -1, -1):
            Ct = self.Ct[st]
            r = ys[st] - (Ct[:, :, :p] @ x_aa[qt:]).ravel() if p else ys[st]
            for i in range(st + 1, K):
                xi = (
                    xs[i]
                    if i < S
                    else x_aa[s.offsets[i] - s.q_stages : s.offsets[i + 1] - s.q_stages]
                )
                r = r - self.Lc[(i, st)].T @ xi
            L = self.Ls[st]
            xs[st] = upper_solve(L, r.reshape(L.shape[0], L.shape[1], 1)).ravel()
        return xs, x_aa

    def solve(self) -> tuple[Array, Array]:
        """(u, coefficients): back substitution with the last row of L."""
        p, qt = self.n_coef, self.s.q_tail
        xs, x_aa = self._backward([Ct[:, :, p].ravel() for Ct in self.Ct], self.l2)
        return np.concatenate([*xs, x_aa[:qt]]), x_aa[qt:]

    def solve_system(self, rhs: Array) -> Array:
        """M_aa^-1 rhs, M_aa the system without its right-hand side column: the random
        effects' block A = Lambda'Z'WZ Lambda + I, bordered by X when the factor has
        coefficient columns (length q, or q + n_coef)."""
        s = self.s
        S, K, p = s.n_stages, s.K, self.n_coef
        off, qs = s.offsets, s.q_stages
        ys: list[Array] = []
        for st in range(S):
            r = np.array(rhs[off[st] : off[st + 1]], dtype=float)
            for j in range(st):
                r -= self.Lc[(st, j)] @ ys[j]
            L = self.Ls[st]
            ys.append(lower_solve(L, r.reshape(L.shape[0], L.shape[1], 1)).ravel())
        r = np.array(rhs[qs:], dtype=float)
        for j in range(S):
            for i in range(S, K):
                r[off[i] - qs : off[i + 1] - qs] -= self.Lc[(i, j)] @ ys[j]
            if p:
                r[s.q_tail :] -= self.Ct[j][:, :, :p].reshape(ys[j].size, p).T @ ys[j]
        y_aa = (
            sla.solve_triangular(self.Laa, r, lower=True, check_finite=False)
            if r.size
            else np.zeros(0)
        )
        xs, x_aa = self._backward(ys, y_aa)
        return np.concatenate([*xs, x_aa])

    def fixed_cov_unscaled(self) -> Array:
        """(R_X' R_X)^-1, the fixed effects' covariance without sigma^2."""
        qt = self.s.q_tail
        RXt = self.Laa[qt:, qt:]
        inv = sla.solve_triangular(RXt, np.eye(RXt.shape[0]), lower=True)
        return np.asarray(inv.T @ inv)

    @cached_property
    def inv11(self) -> Array:
        """Diagonal k1 x k1 blocks of (A^-1)_11, per level of the first term."""
        s = self.s
        k = s.k1
        if s.K == 1:  # A = L11 L11', (A^-1)_jj = L_j^-T L_j^-1 per level
            Linv = lower_solve(self.L11, np.broadcast_to(np.eye(k), self.L11.shape).copy())
            return np.asarray(np.transpose(Linv, (0, 2, 1)) @ Linv)
        pos = np.arange(s.m1)[:, None] * k + np.arange(k)
        return self.inverse_entries(pos[:, :, None], pos[:, None, :])
