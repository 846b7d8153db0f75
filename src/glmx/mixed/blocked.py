"""Blocked Cholesky factor of the penalized least squares system of a mixed model.

With ``Zt = Z Lambda`` (n x q) and the dense columns D = [X, r] (fixed effects and a
right-hand side r), the weighted system is::

    M = [Zt D]' W [Zt D] + diag(I_q, 0)  =  L L'

as in lme4 and MixedModels.jl.  The first random-effect term (the one with most levels)
makes the leading block A11 block diagonal with k x k blocks, one per level: it is
factored by batched Cholesky.  Everything else (further terms, X and r) is a dense
Schur complement ``S = M22 - L21 L21'`` factored densely.  The last row of L gives the
solution and the penalized residual sum of squares, ``r2 = L[-1, -1]^2``.

Rows are sorted by the first term's levels, so the per-level sums are ``np.add.reduceat``
over contiguous runs and ``Zt b`` gathers with ``np.repeat``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from numpy.typing import NDArray

from glmx.mixed.reterms import ReTerms

Array = NDArray[np.float64]
IntArray = NDArray[np.intp]


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


@dataclass(frozen=True)
class Gram:
    """Weighted cross-products of [Z1 | Zr | D] before Lambda is applied.

    z1z1 (m1,k1,k1): per level of term 1, sum of w x x'; z1R (m1,k1,pR): per level,
    sum of w x [zr, d]'; RR (pR,pR): [Zr D]' W [Zr D]."""

    z1z1: Array
    z1R: Array
    RR: Array


class Structure:
    """The random-effect layout of a model whose rows are sorted by term 1's levels."""

    def __init__(self, reterms: ReTerms) -> None:
        self.reterms = reterms
        first = reterms.terms[0]
        if np.any(np.diff(first.codes) < 0):
            raise ValueError("rows must be sorted by the first term's levels")
        self.X1 = first.X
        self.X1T = np.ascontiguousarray(first.X.T)
        self.k1 = first.k
        self.m1 = first.n_levels
        self.q1 = self.m1 * self.k1
        self.counts = np.bincount(first.codes, minlength=self.m1)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.intp)
        self.q2 = reterms.q - self.q1
        others = reterms.terms[1:]
        self.Zr: sp.csc_matrix | None = (
            sp.hstack([t.Z() for t in others], format="csc") if others else None
        )
        self.Z1: sp.csr_matrix = first.Z()
        self.Z1t: sp.csr_matrix = self.Z1.T.tocsr()  # per-level sums as one sparse product

    # --- row-level helpers ----------------------------------------------------------
    def level_sums(self, M: Array) -> Array:
        """Per level of term 1, the sums of the rows of M (n,...) -> (m1,...)."""
        return np.add.reduceat(M, self.starts, axis=0)

    def expand(self, V: Array) -> Array:
        """Per-level values (m1,...) repeated to the rows (n,...)."""
        return np.repeat(V, self.counts, axis=0)

    def Zt_u(self, theta: Array, u: Array) -> Array:
        """Z Lambda u, length n."""
        rt = self.reterms
        b1 = (u[: self.q1].reshape(self.m1, self.k1)) @ rt.terms[0].T(rt.theta_of(theta, 0)).T
        eta = self.X1T[0] * np.repeat(b1[:, 0], self.counts)
        for a in range(1, self.k1):
            eta += self.X1T[a] * np.repeat(b1[:, a], self.counts)
        if self.Zr is not None:
            b = rt.b_from_u(theta, u)
            eta = eta + self.Zr @ b[self.q1 :]
        return np.asarray(eta)

    # --- cross-products -------------------------------------------------------------
    def gram(self, w: Array, DT: Array) -> Gram:
        """Weighted cross-products for weights w (n,) and the dense columns as rows of
        DT (pD, n).  Row-level arrays are kept as rows (long contiguous inner loops)."""
        k1, pD, n = self.k1, DT.shape[0], DT.shape[1]
        wX = self.X1T * w  # (k1, n)
        P = np.empty((k1 * (k1 + pD), n))
        np.multiply(wX[:, None, :], self.X1T[None, :, :], out=P[: k1 * k1].reshape(k1, k1, n))
        np.multiply(wX[:, None, :], DT[None, :, :], out=P[k1 * k1 :].reshape(k1, pD, n))
        sums = np.add.reduceat(P, self.starts, axis=1)  # per level of term 1
        z1z1 = sums[: k1 * k1].T.reshape(self.m1, k1, k1)
        z1D = sums[k1 * k1 :].T.reshape(self.m1, k1, pD)
        wD = DT * w
        DD = DT @ wD.T
        if self.Zr is None:
            return Gram(z1z1, z1D, DD)
        WZr = sp.diags(w) @ self.Zr
        z1r = np.asarray((self.Z1t @ WZr).todense()).reshape(self.m1, k1, self.q2)
        rr = np.asarray((self.Zr.T @ WZr).todense())
        rD = np.asarray(self.Zr.T @ wD.T)
        RR = np.block([[rr, rD], [rD.T, DD]])
        return Gram(z1z1, np.concatenate([z1r, z1D], axis=2), RR)

    def scale_columns(self, M: Array, theta: Array) -> Array:
        """M with its first q2 columns (the terms after the first) times Lambda_r."""
        rt = self.reterms
        out = np.array(M, dtype=float)
        lead = out.shape[:-1]
        for i in range(1, len(rt.terms)):
            t = rt.terms[i]
            T = t.T(rt.theta_of(theta, i))
            sl = slice(rt.u_offsets[i] - self.q1, rt.u_offsets[i + 1] - self.q1)
            block = out[..., sl].reshape(*lead, t.n_levels, t.k)
            out[..., sl] = (block @ T).reshape(*lead, -1)
        return out


class BlockedFactor:
    """L of ``M = [Zt D]'W[Zt D] + diag(I, 0)`` at theta; D's last column is the
    right-hand side, the ``n_coef`` before it are coefficients (X)."""

    def __init__(self, structure: Structure, theta: Array, gram: Gram) -> None:
        s = structure
        self.s = s
        T1 = s.reterms.terms[0].T(s.reterms.theta_of(theta, 0))
        A11 = T1.T @ gram.z1z1 @ T1 + np.eye(s.k1)  # T' (Z1'WZ1)_j T + I, per level
        self.L11 = batched_cholesky(A11)
        C = s.scale_columns(T1.T @ gram.z1R, theta)  # Lambda_1' Z1'W [Zr Lambda_r, D]
        self.Ct = lower_solve(self.L11, C)  # L21' per level (m1,k1,pR)
        Cf = self.Ct.reshape(s.q1, -1)
        RR = s.scale_columns(s.scale_columns(gram.RR, theta).T, theta)
        RR[np.arange(s.q2), np.arange(s.q2)] += 1.0
        S = RR - Cf.T @ Cf
        if not np.all(np.isfinite(S)):
            raise np.linalg.LinAlgError("the penalized system is not finite")
        na = S.shape[0] - 1  # all but the right-hand side
        self.n_coef = na - s.q2
        self.L22 = np.linalg.cholesky(S[:na, :na]) if na else np.zeros((0, 0))
        self.l2 = sla.solve_triangular(self.L22, S[:na, na], lower=True) if na else np.zeros(0)
        self.r2 = float(S[na, na] - self.l2 @ self.l2)  # penalized residual sum of squares
        d22 = np.diag(self.L22)
        # log det(Lambda'Z'WZLambda + I) and log det(R_X' R_X)
        self.logdet_L = float(
            2.0 * np.sum(np.log(np.diagonal(self.L11, axis1=1, axis2=2)))
            + 2.0 * np.sum(np.log(d22[: s.q2]))
        )
        self.logdet_RX = float(2.0 * np.sum(np.log(d22[s.q2 :])))

    def solve(self) -> tuple[Array, Array]:
        """(u, coefficients): back substitution with the last row of L."""
        s = self.s
        x2 = sla.solve_triangular(self.L22.T, self.l2, lower=False) if self.l2.size else np.zeros(0)
        rhs1 = self.Ct[:, :, -1] - (self.Ct[:, :, :-1] @ x2 if x2.size else 0.0)
        x1 = upper_solve(self.L11, rhs1[:, :, None])[:, :, 0]
        return np.concatenate([x1.ravel(), x2[: s.q2]]), x2[s.q2 :]

    def solve_system(self, rhs: Array) -> Array:
        """M_aa^-1 rhs, M_aa the system without its right-hand side column: the random
        effects' block A = Lambda'Z'WZ Lambda + I, bordered by X when the factor has
        coefficient columns (length q, or q + n_coef)."""
        s = self.s
        na = self.L22.shape[0]
        Cta = self.Ct[:, :, :na]
        y1 = lower_solve(self.L11, rhs[: s.q1].reshape(s.m1, s.k1, 1))
        if not na:
            return upper_solve(self.L11, y1).ravel()
        y2 = sla.solve_triangular(
            self.L22, rhs[s.q1 :] - Cta.reshape(s.q1, na).T @ y1.ravel(), lower=True
        )
        x2 = sla.solve_triangular(self.L22.T, y2, lower=False)
        x1 = upper_solve(self.L11, y1 - (Cta @ x2)[:, :, None])
        return np.concatenate([x1.ravel(), x2])

    def fixed_cov_unscaled(self) -> Array:
        """(R_X' R_X)^-1, the fixed effects' covariance without sigma^2."""
        RXt = self.L22[self.s.q2 :, self.s.q2 :]
        inv = sla.solve_triangular(RXt, np.eye(RXt.shape[0]), lower=True)
        return inv.T @ inv

    # --- entries of A^-1, A = Lambda'Z'WZ Lambda + I (the random-effect block) ---------
    @cached_property
    def _L22r(self) -> Array:
        return np.asarray(self.L22[: self.s.q2, : self.s.q2], dtype=np.float64)

    @cached_property
    def _M(self) -> Array:
        """A11^-1 A12 = L11^-T L21', (q1 x q2)."""
        s = self.s
        return upper_solve(self.L11, self.Ct[:, :, : s.q2]).reshape(s.q1, s.q2)

    @cached_property
    def inv_rr(self) -> Array:
        """(A^-1)_22 = S_rr^-1, dense q2 x q2."""
        Linv = sla.solve_triangular(self._L22r, np.eye(self.s.q2), lower=True)
        return Linv.T @ Linv

    @cached_property
    def inv_1r(self) -> Array:
        """(A^-1)_12 = -A11^-1 A12 S_rr^-1, dense q1 x q2."""
        return -self._M @ self.inv_rr

    @cached_property
    def inv11(self) -> Array:
        """Diagonal k1 x k1 blocks of (A^-1)_11 = A11^-1 + M S_rr^-1 M', per level."""
        s = self.s
        eye = np.broadcast_to(np.eye(s.k1), self.L11.shape)
        Linv = lower_solve(self.L11, np.array(eye))
        out = np.transpose(Linv, (0, 2, 1)) @ Linv
        if s.q2:
            W = sla.solve_triangular(self._L22r, self._M.T, lower=True)  # q2 x q1
            Wb = W.T.reshape(s.m1, s.k1, s.q2)
            out = out + Wb @ np.transpose(Wb, (0, 2, 1))
        return out

    def inverse_entries(self, i: IntArray, j: IntArray) -> Array:
        """Entries (A^-1)[i, j] for index arrays of equal shape (positions in u)."""
        s = self.s
        i, j = np.broadcast_arrays(i, j)
        out = np.zeros(i.shape)
        in1_i, in1_j = i < s.q1, j < s.q1
        both1 = in1_i & in1_j & (i // s.k1 == j // s.k1)
        out[both1] = self.inv11[i[both1] // s.k1, i[both1] % s.k1, j[both1] % s.k1]
        if s.q2:
            both2 = ~in1_i & ~in1_j
            out[both2] = self.inv_rr[i[both2] - s.q1, j[both2] - s.q1]
            a = in1_i & ~in1_j
            out[a] = self.inv_1r[i[a], j[a] - s.q1]
            b = ~in1_i & in1_j
            out[b] = self.inv_1r[j[b], i[b] - s.q1]
        return out
