"""Normal equations with in-order rank detection (R's ``dqrdc2`` rule, on the Gram).

Column j is *aliased* when its weighted residual norm after projecting on the kept
columns before it is tiny relative to its own norm:

    ||(I - P_{<j}) W^{1/2} x_j||^2 / ||W^{1/2} x_j||^2 < tol

which is R's criterion (on the squared ratio), so the same columns are dropped as by R's
``glm`` and get NaN coefficients.  On the Gram G = X'WX the squared ratio is the
Cholesky pivot of the unit-diagonal scaled G, which we read off directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import linalg
from scipy.linalg import lapack

Array = NDArray[np.float64]

# squared-norm ratio below which a column counts as a linear combination of earlier ones;
# the Gram squares the condition number, so this matches R's 1e-11 on the norm in spirit
# while staying clear of rounding noise in G (about 1e-16 relative).
RANK_TOL = 1e-10


class _KeptColumns:
    """Aliasing bookkeeping shared by the factorizations: ``kept`` marks estimable columns."""

    kept: NDArray[np.bool_]

    @property
    def aliased(self) -> NDArray[np.bool_]:
        return ~self.kept

    @property
    def rank(self) -> int:
        return int(self.kept.sum())


@dataclass(frozen=True)
class Factorization(_KeptColumns):
    """Cholesky factor of the scaled Gram on the kept (non-aliased) columns.

    G[kept][:, kept] = D R'R D with D = diag(scale[kept]).
    """

    R: Array
    scale: Array  # sqrt(diag(G)) for every column (0 for all-zero columns)
    kept: NDArray[np.bool_]

    def solve(self, rhs: Array) -> Array:
        """x with G x = rhs on the kept columns, 0 on aliased columns."""
        d = self.scale[self.kept]
        x = np.zeros(self.kept.shape[0])
        x[self.kept] = linalg.cho_solve((self.R, False), rhs[self.kept] / d) / d
        return x

    def inverse(self) -> Array:
        """(X'WX)^{-1} on the kept columns (rank x rank)."""
        d = self.scale[self.kept]
        if d.shape[0] == 0:  # no columns (y ~ 0): LAPACK refuses an empty matrix
            return np.zeros((0, 0))
        # (R'R)^{-1} from the Cholesky factor (LAPACK potri; its upper triangle)
        upper, info = lapack.dpotri(self.R, lower=0)
        if info != 0:
            raise np.linalg.LinAlgError(f"potri failed (info {info})")
        upper = np.triu(upper)
        inv = upper + upper.T
        inv.flat[:: inv.shape[0] + 1] *= 0.5  # the diagonal, counted twice
        with np.errstate(over="ignore"):  # columns on a 1e-150 scale: variances past 1e308
            inv /= d[:, None]
            inv /= d[None, :]
        return inv


@dataclass(frozen=True)
class EigenFactorization(_KeptColumns):
    """X'WX on columns known to be estimable, when extreme working weights make it too
    ill-conditioned for the in-order Cholesky (fitted values at the boundary): the
    eigendecomposition of the scaled Gram, with eigenvalues floored at p eps max, so
    steps stay finite and variances are honestly huge rather than NaN."""

    V: Array
    lam: Array
    scale: Array
    kept: NDArray[np.bool_]

    # columns on a tiny scale (1e-150) have variances beyond the floating-point range:
    # they overflow to inf, the honest value, without numpy's warning

    def solve(self, rhs: Array) -> Array:
        d = self.scale[self.kept]
        x = np.zeros(self.kept.shape[0])
        with np.errstate(over="ignore", invalid="ignore"):
            x[self.kept] = (self.V @ ((self.V.T @ (rhs[self.kept] / d)) / self.lam)) / d
        return x

    def inverse(self) -> Array:
        d = self.scale[self.kept]
        with np.errstate(over="ignore", invalid="ignore"):
            inv = (self.V / self.lam) @ self.V.T / np.outer(d, d)
            return (inv + inv.T) / 2.0


def factorize_kept(G: Array, kept: NDArray[np.bool_]) -> EigenFactorization:
    """Factor G on the given columns without dropping any (see EigenFactorization)."""
    idx = np.flatnonzero(kept)
    scale = np.sqrt(np.maximum(np.diag(G), 0.0))
    sub = scale[idx]
    sub = np.where(sub > 0, sub, 1.0)
    scale = scale.copy()
    scale[idx] = sub
    lam, V = linalg.eigh(G[np.ix_(idx, idx)] / np.outer(sub, sub))
    lam = np.maximum(lam, len(idx) * float(np.finfo(float).eps) * max(float(lam.max()), 1.0))
    return EigenFactorization(V, lam, scale, kept.copy())


def factorize_design(X: object, W: Array) -> Factorization:
    """Factor X'WX for a design: a design that knows its structure (e.g. categorical
    blocks) provides ``factorize(W)``; otherwise the dense Gram is factored."""
    own = getattr(X, "factorize", None)
    if own is not None:
        return own(W)  # type: ignore[no-any-return]
    return factorize(X.gram(W))  # type: ignore[attr-defined]


def normal_equations(X: object, W: Array, v: Array) -> tuple[Factorization, Array]:
    """The factored X'WX and X'v: in one pass over X when the design offers it."""
    structured = getattr(X, "factorize_rmatvec", None)
    if structured is not None:
        return structured(W, v)  # type: ignore[no-any-return]
    if getattr(X, "factorize", None) is None:
        G, rhs = gram_and_rmatvec(X, W, v)
        return factorize(G), rhs
    return factorize_design(X, W), X.rmatvec(v)  # type: ignore[attr-defined]


def gram_and_rmatvec(X: object, W: Array, v: Array) -> tuple[Array, Array]:
    """X'WX and X'v, in one pass over X when the design offers it (``gram_rmatvec``)."""
    both = getattr(X, "gram_rmatvec", None)
    if both is not None:
        return both(W, v)  # type: ignore[no-any-return]
    return X.gram(W), X.rmatvec(v)  # type: ignore[attr-defined]


def factorize(G: Array, tol: float = RANK_TOL) -> Factorization:
    """Factor G = X'WX, dropping columns that are (numerically) combinations of earlier ones."""
    p = G.shape[0]
    diag = np.diag(G).copy()
    scale = np.sqrt(np.maximum(diag, 0.0))
    # a column that is zero under the weights is aliased outright; any other scale is
    # kept (the scaled Gram below is free of the columns' units, 1e-150 as 1e150)
    nonzero = (scale > 0) & np.isfinite(scale)
    idx = np.flatnonzero(nonzero)
    Gs = G[np.ix_(idx, idx)] / np.outer(scale[idx], scale[idx])
    try:
        R = linalg.cholesky(Gs, lower=False, check_finite=False)
        if np.all(np.diag(R) ** 2 >= tol):
            kept = np.zeros(p, dtype=bool)
            kept[idx] = True
            return Factorization(R, scale, kept)
    except linalg.LinAlgError:
        pass
    return _factorize_in_order(Gs, idx, scale, p, tol)


def _factorize_in_order(
    Gs: Array, idx: NDArray[np.intp], scale: Array, p: int, tol: float
) -> Factorization:
    """Left-looking Cholesky that skips a column whose pivot falls below ``tol``."""
    m = Gs.shape[0]
    R = np.zeros((m, m))
    kept_local: list[int] = []
    for j in range(m):
        k = len(kept_local)
        if k:
            # r = R_kept^{-T} Gs[kept, j]; pivot = Gs[j, j] - ||r||^2
            r = linalg.solve_triangular(R[:k, :k], Gs[kept_local, j], trans="T", lower=False)
        else:
            r = np.zeros(0)
        pivot = Gs[j, j] - float(r @ r)
        if pivot < tol:
            continue
        R[:k, k] = r
        R[k, k] = np.sqrt(pivot)
        kept_local.append(j)
    k = len(kept_local)
    kept = np.zeros(p, dtype=bool)
    kept[idx[kept_local]] = True
    return Factorization(R[:k, :k].copy(), scale, kept)


def factorize_on(G: Array, kept: NDArray[np.bool_]) -> Factorization | None:
    """Cholesky of G on the given columns, or None when G is not positive definite there
    (an observed information away from the optimum)."""
    idx = np.flatnonzero(kept)
    diag = np.diag(G)[idx]
    if not (np.all(np.isfinite(G)) and np.all(diag > 0)):
        return None
    scale = np.ones(G.shape[0])
    scale[idx] = np.sqrt(diag)
    Gs = G[np.ix_(idx, idx)] / np.outer(scale[idx], scale[idx])
    try:
        R = linalg.cholesky(Gs, lower=False, check_finite=False)
    except linalg.LinAlgError:
        return None
    if idx.size and np.min(np.diag(R)) ** 2 < RANK_TOL:
        return None
    return Factorization(R, scale, kept.copy())


def signed_gram(X: object, w: Array, max_negative: float = 0.25) -> Array | None:
    """X' diag(w) X for weights of either sign: the Gram of the positive part less the
    Gram of the rows with negative weight (copied densely), or None when those are more
    than ``max_negative`` of the rows and their copy would be large."""
    neg = np.flatnonzero(w < 0)
    p = X.shape[1]  # type: ignore[attr-defined]
    if neg.size > max_negative * w.shape[0] and neg.size * p > 4_000_000:
        return None
    G = X.gram(np.maximum(w, 0.0))  # type: ignore[attr-defined]
    if neg.size:
        Xn = X.rows(neg)  # type: ignore[attr-defined]
        G = G - Xn.T @ (Xn * (-w[neg])[:, None])
    return G  # type: ignore[no-any-return]
