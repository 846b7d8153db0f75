"""Schur-complement updates of the blocked Cholesky: eliminating a stage s updates the
blocks to its right, ``A_ij -= L_is L_js'`` (i >= j > s), with D's rows ``L_Ds``.

A later stage's diagonal block stays block diagonal (the structure guarantees it), cross
blocks to a later stage stay sparse, and everything in the dense tail is updated in place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

if TYPE_CHECKING:
    from glmx.mixed.blocked import BlockedFactor

Array = NDArray[np.float64]


def diagonal_blocks(P: sp.spmatrix, m: int, k: int) -> Array:
    """The k x k diagonal blocks (m, k, k) of a block-diagonal sparse matrix."""
    if k == 1:
        return np.asarray(P.diagonal(), dtype=np.float64).reshape(m, 1, 1)
    coo = P.tocoo()
    out = np.zeros((m, k, k))
    keep = coo.row // k == coo.col // k
    r, c = coo.row[keep], coo.col[keep]
    np.add.at(out, (r // k, r % k, c % k), coo.data[keep])
    return out


def stage_update(
    f: BlockedFactor,
    diag: list[Array],
    cross: dict[tuple[int, int], sp.csr_matrix],
    ZD: list[Array],
    st: int,
    i: int,
) -> None:
    """Update the blocks of a later stage i after eliminating stage st (in place):
    A_ii -= L_i,st L_i,st', A_hi -= L_h,st L_i,st' (h > i), D_i -= L_D,st L_i,st'."""
    s = f.s
    Li = f.Lc[(i, st)]
    diag[i] = diag[i] - diagonal_blocks(Li @ Li.T, s.m[i], s.k[i])
    for h in range(i + 1, s.K):
        cross[(h, i)] = (cross[(h, i)] - f.Lc[(h, st)] @ Li.T).tocsr()
    Cf = f.Ct[st].reshape(-1, f.Ct[st].shape[2])
    ZD[i] = ZD[i] - np.asarray(Li @ Cf)


def dense_update(
    f: BlockedFactor, tail: Array, tb: Array, tbb: float, st: int, p: int
) -> tuple[Array, float]:
    """Update the dense tail (lower triangle, in place), its right-hand side column tb
    and corner tbb (returned) after eliminating stage st."""
    s = f.s
    if s.n_stages < s.K:  # Numba loads only for a model with a tail of crossed terms
        from glmx.mixed.kernels import subtract_outer_columns

    qs, qt = s.q_stages, s.q_tail
    tb = tb.copy()
    Cf = f.Ct[st].reshape(-1, f.Ct[st].shape[2])  # L_D,st', (q_st, pD)
    by_col = {i: f.Lc[(i, st)].tocsc() for i in range(s.n_stages, s.K)}
    for i in range(s.n_stages, s.K):
        Li = f.Lc[(i, st)]
        a = s.offsets[i] - qs
        Ci = by_col[i]
        for j in range(s.n_stages, i + 1):
            Cj = by_col[j]
            b = s.offsets[j] - qs
            subtract_outer_columns(
                Ci.indptr, Ci.indices, Ci.data, Cj.indptr, Cj.indices, Cj.data, a, b, i == j, tail
            )
        M = np.asarray(Li @ Cf)  # L_i,st L_D,st', (q_i, pD)
        tail[qt:, a : a + M.shape[0]] -= M[:, :p].T
        tb[a : a + M.shape[0]] -= M[:, p]
    G = Cf.T @ Cf  # L_D,st L_D,st'
    tail[qt:, qt:] -= G[:p, :p]
    tb[qt:] -= G[:p, p]
    return tb, float(tbb - G[p, p])
