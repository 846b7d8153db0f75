"""Weighted least squares by a Householder QR of sqrt(W) X, for nearly collinear designs.

The normal equations square the condition number of X: a column whose residual after
projecting on the earlier columns is 1e-8 of its norm (x^2 beside x for x in 1000..1001)
is lost in X'WX's rounding and looks aliased.  R's ``glm.fit`` decides aliasing on the QR
of the weighted design instead (LINPACK ``dqrdc2``): column j is aliased when its residual
norm after the kept earlier columns is below ``tol`` times its own norm, with
``tol = min(1e-7, epsilon / 1000)``; aliased columns move to the end, so later columns are
tested against the kept ones only.  The same rule is applied here, and the step is the
least-squares solution R^{-1} Q' sqrt(W) c, accurate to cond(X) rather than cond(X)^2.
Used when the Gram's factorization finds a column aliased or nearly so and the dense
weighted copy of X is small (see :data:`MAX_ELEMENTS`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import linalg

from glmx.solvers.linalg import Factorization
from glmx.solvers.state import Array

MAX_ELEMENTS = 10_000_000  # n p of the dense weighted copy (80 MB)
# a Gram pivot (squared residual ratio, unit-diagonal scaling) below this asks for the QR
NEAR_ALIASED = 1e-8


def needs_qr(fac: Factorization) -> bool:
    """Whether the Gram's factorization dropped a column or kept one nearly dependent."""
    if fac.aliased.any():
        return True
    return bool(fac.R.size) and float(np.min(np.diag(fac.R)) ** 2) < NEAR_ALIASED


# below this a residual ratio is rounding of the QR itself (about 450 eps): an exact
# dependency (a spline basis summing to the intercept) must not survive a tiny tol
_RATIO_FLOOR = 1e-13


def r_tolerance(tol: float) -> float:
    """R's QR tolerance for glm.fit's epsilon (glmx's tol), not below the rounding floor."""
    return max(min(1e-7, tol / 1000.0), _RATIO_FLOOR)


def weighted_qr(
    X: Array, W: Array, r: Array, tol: float, kept: NDArray[np.bool_] | None
) -> tuple[Factorization, Array, Array]:
    """(X'WX factored, the least-squares step, X'Wr) for the weighted problem
    min || sqrt(W) (r - X delta) ||; aliasing by R's rule unless ``kept`` is given."""
    sw = np.sqrt(W)
    A = X * sw[:, None]
    c = sw * r
    norms = np.sqrt(np.einsum("ij,ij->j", A, A))
    if not (np.all(np.isfinite(norms)) and np.all(np.isfinite(c))):
        raise FloatingPointError("the weighted design or response is not finite")
    p = X.shape[1]
    if kept is None:
        cols = [j for j in range(p) if norms[j] > 0 and np.isfinite(norms[j])]
        while True:
            Q, R = linalg.qr(A[:, cols], mode="economic", check_finite=False)
            # columns past the n-th have no diagonal: dependent on the earlier ones
            ratio = np.zeros(len(cols))
            ratio[: min(R.shape)] = np.abs(np.diag(R)) / norms[cols][: min(R.shape)]
            small = np.flatnonzero(ratio < tol)
            if small.size == 0:
                break
            del cols[int(small[0])]  # the first dependent column, as dqrdc2
        kept = np.zeros(p, dtype=bool)
        kept[cols] = True
    else:
        cols = list(np.flatnonzero(kept))
        Q, R = linalg.qr(A[:, cols], mode="economic", check_finite=False)
    qc = Q.T @ c
    step = np.zeros(p)
    step[cols] = linalg.solve_triangular(R, qc, check_finite=False)
    rhs = A.T @ c  # X'W r
    d = norms[cols]
    scale = np.ones(p)
    scale[cols] = d
    return Factorization(R / d[None, :], scale, kept.copy()), step, rhs
