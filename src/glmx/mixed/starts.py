"""Starting values of theta from a moment-based variance decomposition.

From the residuals r of the fixed-effects least-squares fit (residual variance s2), each
random-effect term's coefficients are estimated level by level: the least-squares fit of r
on the term's columns within the level (levels with fewer rows than columns are skipped).
Their covariance across levels, less the average sampling covariance s2 (X_g'X_g)^-1, is
the method-of-moments estimate of Sigma; relative to s2, with its eigenvalues kept at
least a small fraction of its largest, its Cholesky factor is the start.  Crossed terms
each see the others as noise: the start is rough, which is all a restart needs.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from glmx.mixed.reterms import ReTerms, lower_tri

Array = NDArray[np.float64]

_FLOOR = 0.05  # smallest relative standard deviation of a start


def moment_start(rt: ReTerms, X: Array, y: Array) -> Array | None:
    """theta from per-level least squares on the fixed-effects residuals (None if it
    cannot be formed, as with a saturated fixed part)."""
    try:
        beta = np.linalg.lstsq(X, y, rcond=None)[0]
    except np.linalg.LinAlgError:
        return None
    r = y - X @ beta
    dof = max(len(y) - X.shape[1], 1)
    s2 = float(r @ r) / dof
    if not np.isfinite(s2) or s2 <= 0:
        return None
    parts = []
    for t in rt.terms:
        k = t.k
        coefs, covs = [], []
        order = np.argsort(t.codes, kind="stable")
        bounds = np.searchsorted(t.codes[order], np.arange(t.n_levels + 1))
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            rows = order[lo:hi]
            if rows.size <= k:
                continue
            Xg = t.X[rows]
            G = Xg.T @ Xg
            if np.linalg.cond(G) > 1e10:
                continue
            Gi = np.linalg.inv(G)
            coefs.append(Gi @ (Xg.T @ r[rows]))
            covs.append(Gi)
        if len(coefs) < 2:
            parts.append(np.where(lower_tri(k)[0] == lower_tri(k)[1], 1.0, 0.0))
            continue
        C = np.atleast_2d(np.cov(np.array(coefs).T)) - s2 * np.mean(covs, axis=0)
        C = (C + C.T) / 2.0 / s2
        w, V = np.linalg.eigh(C)
        w = np.maximum(w, max(_FLOOR**2, 1e-3 * max(w[-1], 0.0)))
        T = np.linalg.cholesky((V * w) @ V.T)
        rows_, cols_ = lower_tri(k)
        parts.append(T[rows_, cols_])
    theta = np.concatenate(parts)
    return theta if np.all(np.isfinite(theta)) else None
