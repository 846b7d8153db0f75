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
    from scipy import optimize  # imported on use: it is slow to import

    use = weights > 0
    n = int(use.sum())
    if n == 0 or n > max_rows or not kept.any():  # no rows, or no columns (y ~ 0)
        return None
    idx = np.flatnonzero(use)
    A = X.rows(idx)[:, kept]
    yy = y[idx]
    ones, zeros = yy >= 1.0, yy <= 0.0
    inner = ~(ones | zeros)
    s = np.where(ones, 1.0, -1.0)[~inner]
    S = s[:, None] * A[~inner]  # rows s_i x_i'
    E = A[inner] if inner.any() else None
    p = A.shape[1]
    bounds = [(-1.0, 1.0)] * p
    eq = {"A_eq": E, "b_eq": np.zeros(E.shape[0])} if E is not None else {}
    scale = max(1.0, float(np.abs(A).max()))
    # complete separation: maximise the margin t with s_i x_i'b >= t, 0 <= t <= 1
    if E is None:
        res = optimize.linprog(
            np.r_[np.zeros(p), -1.0],
            A_ub=np.c_[-S, np.ones(S.shape[0])],
            b_ub=np.zeros(S.shape[0]),
            bounds=[*bounds, (0.0, 1.0)],
            method="highs",
        )
        if res.status == 0 and -res.fun > 1e-7 * scale:
            return _direction(X, kept, res.x[:p], A, complete=True)
    # quasi-complete: maximise sum_i s_i x_i'b with s_i x_i'b >= 0 (Konis 2007)
    res = optimize.linprog(
        -S.sum(axis=0), A_ub=-S, b_ub=np.zeros(S.shape[0]), bounds=bounds, method="highs", **eq
    )
    if res.status != 0 or -res.fun <= 1e-7 * scale:
        return None
    return _direction(X, kept, res.x, A, complete=False)


def _direction(
    X: DesignMatrix, kept: NDArray[np.bool_], b: Array, A: Array, complete: bool
) -> Separation:
    lin = A @ b
    on_plane = np.abs(lin) <= 1e-8 * np.abs(lin).max()
    names = [str(n) for n in np.asarray(X.column_names)[kept]]
    cols = [names[j] for j in np.flatnonzero(np.abs(b) > 1e-8)]
    # the intercept moves along with any separating predictor: name it only if alone
    named = [c for c in cols if c not in ("Intercept", "(Intercept)")] or cols
    return Separation(complete=complete, columns=named, n_separated=int((~on_plane).sum()))
