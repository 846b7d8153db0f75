"""A design with one many-level factor kept as integer codes: X = [D | C] in R's column order.

D (n x q) holds the dense columns (intercept, numeric terms, small factors) and C (n x m)
is a one-hot block, possibly weighted by a numeric column (the ``C(g):x`` interaction),
stored as ``codes`` (the block column of each row, -1 for none: the reference level of a
treatment-coded factor) and ``values`` (the row's entry, 1 for a main effect).  C is
never materialized.  The weighted Gram has the structure

    X'WX = [ D'WD   B       ]     B = D'WC : grouped sums of w v D over the levels
           [ B'     diag(c) ]     c_l = sum over the rows of level l of w v^2

and the normal equations are solved through the Schur complement of the diagonal block,

    S = D'WD - B diag(1/c) B',   x_D = S^{-1} (r_D - B r_C / c),   x_C = (r_C - B'x_D) / c,

so an iteration costs a pass over D plus O(q^2 m) instead of O(n (q + m)^2).

Aliasing follows R's in-order rule (``glmx.solvers.linalg``): a level without weight is a
zero column; dense columns before the block are judged among themselves, levels given
those columns and the earlier levels, dense columns after the block given everything
before them (the Schur complement pivots).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy import linalg

from glmx.design.matrix import DenseDesign
from glmx.solvers.linalg import RANK_TOL, factorize

Array = NDArray[np.float64]

# levels per chunk of the (levels x q x q) arrays of the sequential level-aliasing check
_LEVEL_CHUNK_DOUBLES = 2**22


class CategoricalDesign:
    """X with dense columns ``dense`` and one categorical block at columns
    ``start .. start + n_columns - 1``: row i has ``values[i]`` (1 when None) in block
    column ``codes[i]``, or nothing when ``codes[i] == -1``."""

    def __init__(
        self,
        dense: NDArray[np.floating],
        codes: NDArray[np.integer],
        n_columns: int,
        start: int,
        values: NDArray[np.floating] | None = None,
        column_names: list[str] | None = None,
    ) -> None:
        D = np.ascontiguousarray(dense, dtype=np.float64)
        n, q = D.shape
        m = int(n_columns)
        code = np.asarray(codes).ravel()
        if code.shape[0] != n or not 0 <= start <= q or m < 1:
            raise ValueError("codes must have one entry per row of dense, 0 <= start <= q")
        if code.size and (code.min() < -1 or code.max() >= m):
            raise ValueError(f"codes must lie in -1 .. {m - 1}")
        self.shape = (n, q + m)
        self.column_names = (
            list(column_names) if column_names is not None else [f"x{j}" for j in range(q + m)]
        )
        self.start, self.n_columns = int(start), m
        self.dense_positions: NDArray[np.intp] = np.r_[0:start, start + m : q + m]
        self.dense = DenseDesign(D, [self.column_names[j] for j in self.dense_positions])
        # internal codes: m is the "no column" slot, so gathers and bincounts need no mask
        idx_type = np.int32 if max(n, m) < 2**31 - 1 else np.int64
        self.codes: NDArray[Any] = np.where(code < 0, m, code).astype(idx_type)
        self.values = None if values is None else np.asarray(values, dtype=np.float64).ravel()
        self._indptr = np.arange(n + 1, dtype=idx_type)

    @property
    def block(self) -> slice:
        return slice(self.start, self.start + self.n_columns)

    # --- the DesignMatrix protocol -------------------------------------------------------
    def matvec(self, b: Array) -> Array:
        """X b = D b_D + v * b_C[code]."""
        b = np.asarray(b, dtype=np.float64)
        bc = np.append(b[self.block], 0.0)  # slot m: rows without a block column
        out = self.dense.matvec(b[self.dense_positions])
        t = bc[self.codes]
        if self.values is not None:
            t *= self.values
        out += t
        return out

    def rmatvec(self, r: Array) -> Array:
        """X'r: D'r and the per-level sums of v r."""
        out = np.empty(self.shape[1])
        out[self.dense_positions] = self.dense.rmatvec(r)
        out[self.block] = self._level_sums(r)
        return out

    def gram(self, w: Array) -> Array:
        """X'WX as a dense p x p matrix (for fallbacks; the solver uses factorize)."""
        Gd, B, c, _ = self._gram_blocks(w)
        d, blk = self.dense_positions, self.block
        G = np.zeros(self.shape[1:] * 2)
        G[np.ix_(d, d)] = Gd
        G[d, blk] = B
        G[blk, d] = B.T
        G[blk, blk] = np.diag(c)
        return G

    def rows(self, index: NDArray[np.intp]) -> Array:
        index = np.asarray(index)
        out = np.zeros((index.shape[0], self.shape[1]))
        out[:, self.dense_positions] = self.dense.X[index]
        code = self.codes[index]
        hit = np.flatnonzero(code < self.n_columns)
        v = 1.0 if self.values is None else self.values[index[hit]]
        out[hit, self.start + code[hit]] = v
        return out

    def column(self, j: int) -> Array:
        if self.start <= j < self.start + self.n_columns:
            on = self.codes == j - self.start
            return np.where(on, 1.0 if self.values is None else self.values, 0.0)
        return self.dense.X[:, int(np.searchsorted(self.dense_positions, j))].copy()

    # --- beyond the protocol -------------------------------------------------------------
    def to_sparse(self) -> sp.csr_matrix:
        """X as a CSR matrix: q + 1 stored entries per row (an explicit 0 for rows without
        a block column)."""
        n, q = self.dense.shape
        pre = self.start
        data = np.empty((n, q + 1))
        data[:, :pre], data[:, pre + 1 :] = self.dense.X[:, :pre], self.dense.X[:, pre:]
        on = self.codes < self.n_columns
        data[:, pre] = np.where(on, 1.0 if self.values is None else self.values, 0.0)
        cols = np.empty((n, q + 1), dtype=self.codes.dtype)
        cols[:] = np.append(self.dense_positions, 0).take(np.r_[0:pre, q, pre:q])
        cols[:, pre] = np.where(on, self.start + self.codes, self.start)
        indptr = np.arange(0, n * (q + 1) + 1, q + 1)
        return sp.csr_matrix((data.ravel(), cols.ravel(), indptr), shape=self.shape)

    def take_rows(self, index: NDArray[np.intp]) -> CategoricalDesign:
        """The design of a subset of rows (e.g. for a subsample warm start)."""
        code = self.codes[index].astype(np.int64)
        return CategoricalDesign(
            self.dense.X[index],
            np.where(code == self.n_columns, -1, code),
            self.n_columns,
            self.start,
            None if self.values is None else self.values[index],
            self.column_names,
        )

    def select_columns(self, cols: NDArray[np.intp]) -> CategoricalDesign | DenseDesign:
        """The design of columns ``cols`` (increasing), e.g. a sub-model for anova or a
        profile: still categorical when it keeps block columns, dense otherwise."""
        cols = np.asarray(cols, dtype=np.intp)
        names = [self.column_names[j] for j in cols]
        in_block = (cols >= self.start) & (cols < self.start + self.n_columns)
        dense_cols = np.searchsorted(self.dense_positions, cols[~in_block])
        D = self.dense.X[:, dense_cols]
        if not in_block.any():
            return DenseDesign(D, names)
        # old block column -> new block column (-1: dropped, the row has no entry)
        remap = np.full(self.n_columns + 1, -1)
        remap[cols[in_block] - self.start] = np.arange(int(in_block.sum()))
        start = int(np.argmax(in_block))
        return CategoricalDesign(
            D, remap[self.codes], int(in_block.sum()), start, self.values, names
        )

    def row_quadratic_form(self, V: Array, kept: NDArray[np.bool_]) -> Array:
        """x_i' V x_i for every row, V over the ``kept`` columns (e.g. the covariance):
        d'V_DD d + 2 v d'V_DC[:, l] + v^2 V_CC[l, l] in O(n q^2), never n x p (hat values,
        prediction standard errors)."""
        pos = np.flatnonzero(kept)
        d_in = np.flatnonzero(~((pos >= self.start) & (pos < self.start + self.n_columns)))
        c_in = np.flatnonzero((pos >= self.start) & (pos < self.start + self.n_columns))
        Dk = self.dense.X[:, np.searchsorted(self.dense_positions, pos[d_in])]
        out = np.einsum("ij,ij->i", Dk @ V[np.ix_(d_in, d_in)], Dk)
        # kept level of each row (slot -1: no kept column)
        slot = np.full(self.n_columns + 1, -1)
        slot[pos[c_in] - self.start] = np.arange(c_in.size)
        lev = slot[self.codes]
        on = np.flatnonzero(lev >= 0)
        v = 1.0 if self.values is None else self.values[on]
        cross = V[np.ix_(d_in, c_in)].T[lev[on]]  # rows: V_DC[:, l_i]
        out[on] += 2.0 * v * np.einsum("ij,ij->i", Dk[on], cross)
        out[on] += v * v * V[c_in, c_in][lev[on]]
        return out

    def factorize(self, W: Array) -> CategoricalFactorization:
        """Factor X'WX through the Schur complement of the diagonal block."""
        return _factorize(self, *self._gram_blocks(W)[:3])

    def factorize_rmatvec(self, W: Array, v: Array) -> tuple[CategoricalFactorization, Array]:
        """The factored X'WX and X'v, with D'v taken in the pass that forms D'WD."""
        Gd, B, c, Dv = self._gram_blocks(W, v)
        rhs = np.empty(self.shape[1])
        rhs[self.dense_positions] = Dv
        rhs[self.block] = self._level_sums(v)
        return _factorize(self, Gd, B, c), rhs

    def level_newton_step(self, W: Array, r: Array) -> Array:
        """(C'WC)^{-1} C'W r: the levels' weighted least-squares step with the other
        columns fixed (C'WC is diagonal); 0 for a level without weight."""
        wv = W if self.values is None else W * self.values
        c = self._level_sums(wv)
        s = self._level_sums(W * r)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(c > 0, s / c, 0.0)

    # --- the blocks of X'WX ----------------------------------------------------------------
    def _level_sums(self, r: Array) -> Array:
        """C'r: sum of v_i r_i over the rows of each level (a weighted bincount)."""
        wts = r if self.values is None else r * self.values
        sums = np.bincount(self.codes, weights=wts, minlength=self.n_columns + 1)
        return np.asarray(sums[:-1], dtype=np.float64)

    def _gram_blocks(
        self, w: Array, v: Array | None = None
    ) -> tuple[Array, Array, Array, Array | None]:
        """D'WD (q x q), B = D'WC (q x m), c = diag(C'WC) (m) and D'v (when v is given)."""
        wv = w if self.values is None else w * self.values
        c = self._level_sums(wv)
        # B' = C'WD: a CSC matrix with one entry w_i v_i per row i (column i) in row code_i;
        # the product walks D's rows once, adding into the level's row of B'
        n = self.shape[0]
        ct = sp.csc_matrix((wv, self.codes, self._indptr), shape=(self.n_columns + 1, n))
        Bt = np.asarray(ct @ self.dense.X)[:-1]
        Gd, Dv = self.dense.gram_rmatvec(w, v)
        return Gd, Bt.T, c, Dv


@dataclass(frozen=True)
class CategoricalFactorization:
    """X'WX of a CategoricalDesign, factored on the kept columns.

    S = R'R scaled: S[kd][:, kd] = diag(sd) R'R diag(sd), B and c restricted to the kept
    dense columns and levels.  Same interface as ``glmx.solvers.linalg.Factorization``."""

    kept: NDArray[np.bool_]  # all p columns
    dense_idx: NDArray[np.intp]  # positions in X of the kept dense columns
    level_idx: NDArray[np.intp]  # positions in X of the kept levels
    R: Array
    sd: Array
    B: Array  # kept dense x kept levels
    c: Array  # kept levels

    @property
    def aliased(self) -> NDArray[np.bool_]:
        return ~self.kept

    @property
    def rank(self) -> int:
        return int(self.kept.sum())

    def solve(self, rhs: Array) -> Array:
        """x with X'WX x = rhs on the kept columns (block elimination), 0 on aliased ones."""
        u = rhs[self.level_idx] / self.c  # diag(c)^{-1} r_C
        y = rhs[self.dense_idx] - self.B @ u  # r_D - B c^{-1} r_C
        x_d = self._schur_solve(y)  # x_D = S^{-1} (r_D - B c^{-1} r_C)
        x = np.zeros(self.kept.shape[0])
        x[self.dense_idx] = x_d
        x[self.level_idx] = u - (self.B.T @ x_d) / self.c  # x_C = c^{-1} (r_C - B'x_D)
        return x

    def inverse(self) -> Array:
        """(X'WX)^{-1} on the kept columns (rank x rank), by the block formula

        [[S^-1, -S^-1 U], [-U'S^-1, diag(1/c) + U'S^-1 U]],  U = B diag(1/c).

        Dense, as the results need: 8 rank^2 bytes (72 MB at 3,000 levels, 800 MB at
        10,000).  ``inverse_diagonal`` and ``CategoricalDesign.row_quadratic_form`` give
        standard errors, hat values and prediction variances without it."""
        r = self.rank
        if self.R.shape[0] == 0:  # no dense column kept: the inverse is diag(1/c)
            return np.diag(1.0 / self.c)
        kept_pos = np.flatnonzero(self.kept)
        d_out = np.searchsorted(kept_pos, self.dense_idx)  # rows of the dense part
        lo = int(np.searchsorted(kept_pos, self.level_idx[0])) if self.c.size else 0
        L = self.c.shape[0]
        rinv = linalg.solve_triangular(self.R, np.eye(self.R.shape[0]), lower=False)
        # S^{-1} = diag(1/sd) R^{-1} R^{-T} diag(1/sd);  Z = R^{-T} diag(1/sd) U
        s_inv = (rinv @ rinv.T) / np.outer(self.sd, self.sd)
        Z = rinv.T @ (self.B / (self.sd[:, None] * self.c[None, :]))
        out = np.empty((r, r))
        out[np.ix_(d_out, d_out)] = s_inv
        cross = -(rinv @ Z) / self.sd[:, None]  # -S^{-1} U
        out[d_out, lo : lo + L] = cross
        out[lo : lo + L, d_out] = cross.T
        step = max(1, 2**21 // max(1, L))  # the level block in row chunks: no L x L temporary
        for a in range(0, L, step):
            b = min(a + step, L)
            blk = Z[:, a:b].T @ Z  # U'S^{-1}U, rows a..b-1
            blk[np.arange(b - a), np.arange(a, b)] += 1.0 / self.c[a:b]
            out[lo + a : lo + b, lo : lo + L] = blk
        return out

    def inverse_diagonal(self) -> Array:
        """diag((X'WX)^{-1}) on the kept columns in O(q^2 m), without the rank x rank
        inverse: diag(S^{-1}) and 1/c + colsum(Z^2) (for standard errors at many levels)."""
        if self.R.shape[0] == 0:
            return 1.0 / self.c
        rinv = linalg.solve_triangular(self.R, np.eye(self.R.shape[0]), lower=False)
        Z = rinv.T @ (self.B / (self.sd[:, None] * self.c[None, :]))
        out = np.empty(self.rank)
        kept_pos = np.flatnonzero(self.kept)
        out[np.searchsorted(kept_pos, self.dense_idx)] = np.sum(rinv**2, axis=1) / self.sd**2
        out[np.searchsorted(kept_pos, self.level_idx)] = 1.0 / self.c + np.sum(Z**2, axis=0)
        return out

    def _schur_solve(self, y: Array) -> Array:
        if self.R.shape[0] == 0:
            return np.zeros(0)
        return linalg.cho_solve((self.R, False), y / self.sd) / self.sd


def _factorize(
    X: CategoricalDesign, Gd: Array, B: Array, c: Array, tol: float = RANK_TOL
) -> CategoricalFactorization:
    pos = X.dense_positions
    q, m = B.shape
    pre = pos < X.start
    sd = np.sqrt(np.maximum(np.diag(Gd), 0.0))
    sc = np.sqrt(c)
    # zero columns under the weights are aliased outright (as linalg.factorize)
    lev = sc > 0
    dense_ok = sd > 0
    # 1. dense columns before the block: R's rule among themselves
    pre_idx = np.flatnonzero(pre)
    keep_d = np.zeros(q, dtype=bool)
    if pre_idx.size:
        keep_d[pre_idx[factorize(Gd[np.ix_(pre_idx, pre_idx)], tol).kept]] = True
    # 2. levels, given the kept earlier columns
    lev = _alias_levels(Gd, B, c, sd, keep_d, lev, tol)
    # 3. dense columns after the block: in order on the Schur complement
    Bk, ck = B[:, lev], c[lev]
    S = Gd - (Bk / ck) @ Bk.T
    cand = keep_d | (~pre & dense_ok)
    keep_d, R = _schur_in_order(S, sd, cand, pre, tol)
    kept = np.zeros(X.shape[1], dtype=bool)
    kept[pos[keep_d]] = True
    level_idx = X.start + np.flatnonzero(lev)
    kept[level_idx] = True
    return CategoricalFactorization(
        kept=kept,
        dense_idx=pos[keep_d],
        level_idx=level_idx,
        R=R,
        sd=sd[keep_d],
        B=np.ascontiguousarray(Bk[keep_d]),
        c=ck,
    )


def _alias_levels(
    Gd: Array,
    B: Array,
    c: Array,
    sd: Array,
    keep_pre: NDArray[np.bool_],
    lev: NDArray[np.bool_],
    tol: float,
) -> NDArray[np.bool_]:
    """Levels aliased by R's in-order rule given the kept dense columns P before the block.

    Level l's squared-norm ratio after projecting on P and the kept earlier levels is
    1 - b_l' M_l^{-1} b_l (scaled units: b_l = P'W C_l / (|P| |C_l|)), with
    M_l = P'WP - sum_{j < l kept} b_j b_j' the Schur complement of those levels.  When
    [P | C] has full rank no level is aliased; otherwise the ratios are evaluated for all
    levels at once (cumulative sums of b_j b_j'), the first one below tol is aliased, and
    the scan resumes after it (at most |P| times)."""
    P = np.flatnonzero(keep_pre)
    li = np.flatnonzero(lev)
    if P.size == 0 or li.size == 0:
        return lev
    sp_ = sd[P]
    A = Gd[np.ix_(P, P)] / np.outer(sp_, sp_)
    b = (B[np.ix_(P, li)] / sp_[:, None] / np.sqrt(c[li])).T  # levels x |P|
    M0 = A - b.T @ b
    try:
        Rm = linalg.cholesky(M0, lower=False, check_finite=False)
        if np.all(np.diag(Rm) ** 2 >= tol):
            return lev
    except linalg.LinAlgError:
        pass
    active = np.ones(li.size, dtype=bool)
    M = A.copy()  # Schur complement of the kept levels before the current chunk
    step = max(1, _LEVEL_CHUNK_DOUBLES // (P.size * P.size))
    a = 0
    while a < li.size:
        e = min(a + step, li.size)
        bb = b[a:e] * active[a:e, None]
        outer = bb[:, :, None] * bb[:, None, :]
        excl = np.cumsum(outer, axis=0) - outer  # sum over earlier levels of the chunk
        try:
            sol = np.linalg.solve(M[None] - excl, b[a:e, :, None])[..., 0]
        except np.linalg.LinAlgError:  # a singular M_l past the first aliased level
            if e - a > 1:
                step = max(1, (e - a) // 2)
                continue
            sol = np.full((1, P.size), np.inf)  # M_l singular: level l is in the span
        t = np.einsum("li,li->l", b[a:e], sol)
        bad = np.flatnonzero(active[a:e] & ~(1.0 - t >= tol))
        if bad.size:
            f = a + int(bad[0])
            active[f] = False
            M -= excl[f - a]  # levels a .. f-1 enter M; resume after f
            a = f + 1
        else:
            M -= excl[-1] + outer[-1]
            a = e
    out = lev.copy()
    out[li[~active]] = False
    return out


def _schur_in_order(
    S: Array, sd: Array, cand: NDArray[np.bool_], pre: NDArray[np.bool_], tol: float
) -> tuple[NDArray[np.bool_], Array]:
    """Cholesky of the scaled Schur complement over the candidate dense columns, in order;
    a column after the block is aliased when its pivot (its squared residual norm after
    everything before it, relative to its own) is below tol.  Columns before the block
    were judged already; they are dropped only if their pivot is not positive."""
    idx = np.flatnonzero(cand)
    if idx.size == 0:
        return cand.copy(), np.zeros((0, 0))
    Ss = S[np.ix_(idx, idx)] / np.outer(sd[idx], sd[idx])
    try:
        R = linalg.cholesky(Ss, lower=False, check_finite=False)
        piv = np.diag(R) ** 2
        if np.all(np.where(pre[idx], piv > 0, piv >= tol)):
            return cand.copy(), R
    except linalg.LinAlgError:
        pass
    k = idx.size
    R = np.zeros((k, k))
    kept: list[int] = []
    for jj in range(k):  # a loop over dense columns (q), not rows or levels
        r = (
            linalg.solve_triangular(R[: len(kept), : len(kept)], Ss[kept, jj], trans="T")
            if kept
            else np.zeros(0)
        )
        pivot = Ss[jj, jj] - float(r @ r)
        if pivot < (1e-300 if pre[idx[jj]] else tol):
            continue
        R[: len(kept), len(kept)] = r
        R[len(kept), len(kept)] = np.sqrt(pivot)
        kept.append(jj)
    keep = np.zeros(cand.shape[0], dtype=bool)
    keep[idx[kept]] = True
    return keep, R[: len(kept), : len(kept)].copy()
