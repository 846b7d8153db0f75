"""Detect (quasi-)complete separation in binomial models by linear programming.

Following Konis (2007): the MLE is infinite iff there is a direction b != 0 with
x_i'b >= 0 where y_i = 1, x_i'b <= 0 where y_i = 0, and x_i'b = 0 where 0 < y_i < 1.
We maximise sum_i s_i x_i'b (s_i = +1 / -1) over -1 <= b <= 1 subject to those
constraints; a positive optimum gives such a direction and its non-zero entries name the
predictors whose estimates diverge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import optimize

from glmx.design.matrix import DesignMatrix

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Separation:
    complete: bool  # every observation is separated (no x'b = 0 row with weight)
    columns: list[str]  # predictors whose coefficients go to +/- infinity
    n_separated: int  # observations with x'b != 0 along the direction


def detect_separation(
    X: DesignMatrix, y: Array, weights: Array, kept: NDArray[np.bool_], max_rows: int = 200_000
) -> Separation | None:
    """The separating direction, or None when the MLE exists (or the check is too big)."""
    use = weights > 0
    n = int(use.sum())
    if n == 0 or n > max_rows:
        return None
    idx = np.flatnonzero(use)
    A = X.rows(idx)[:, kept]
    yy = y[idx]
    ones, zeros = yy >= 1.0, yy <= 0.0
    s = np.where(ones, 1.0, np.where(zeros, -1.0, 0.0))
    inner = ~(ones | zeros)
    # maximise sum s_i x_i'b  <=>  minimise -(s'A) b ; s_i x_i'b >= 0 ; x_i'b = 0 inside
    c = -(s @ A)
    A_ub = -(s[~inner, None] * A[~inner])
    b_ub = np.zeros(A_ub.shape[0])
    A_eq = A[inner] if inner.any() else None
    b_eq = np.zeros(int(inner.sum())) if inner.any() else None
    res = optimize.linprog(
        c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=[(-1, 1)] * A.shape[1], method="highs"
    )
    if res.status != 0 or -res.fun <= 1e-7 * max(1.0, float(np.abs(A).max())):
        return None
    b = res.x
    lin = A @ b
    scale = np.abs(lin).max()
    on_plane = np.abs(lin) <= 1e-8 * scale
    names = np.asarray(X.column_names)[kept]
    cols = [str(names[j]) for j in np.flatnonzero(np.abs(b) > 1e-8)]
    return Separation(
        complete=not bool(on_plane[~inner].any()),
        columns=cols,
        n_separated=int((~on_plane).sum()),
    )
