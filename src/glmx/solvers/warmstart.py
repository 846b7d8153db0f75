"""Starting values for large fits from a fit on a random subsample.

IRLS from R's ``mustart`` needs 4-8 passes over X; started from the estimates of a
subsample of about 100,000 rows, which are within a few standard errors of the full
estimates, Newton-type IRLS meets R's criterion in about two full passes.  The estimate
is the same (the fixed point does not depend on the start), only the path is shorter.
Used for n >= WARM_START_MIN_ROWS when the user gave no start; any failure of the
subsample fit (separation, aliasing, no convergence) falls back to R's start.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from glmx.design.matrix import DenseDesign, SparseDesign
from glmx.errors import GlmxError
from glmx.solvers.state import Array, IRLSInputs

WARM_START_MIN_ROWS = 300_000
SUBSAMPLE_ROWS = 100_000


def subsample_start(inp: IRLSInputs) -> tuple[Array, Array | None] | None:
    """Coefficients from a fit to a random subsample, and for a dense or sparse design
    the subsample's information scaled to all rows (sum of weights / the subsample's),
    X'WX ~ (W_total / W_sub) X_s'W_s X_s: the first step from the start solves with it,
    a pass over X instead of a Gram.  None when not worth it."""
    n, p = inp.X.shape
    if n < WARM_START_MIN_ROWS or inp.start is not None or inp.mustart is not None:
        return None
    take_rows = getattr(inp.X, "take_rows", None)  # designs with structure keep it
    if not isinstance(inp.X, (DenseDesign, SparseDesign)) and take_rows is None:
        return None
    m = max(SUBSAMPLE_ROWS, 50 * p)
    if m > n // 2:
        return None
    rng = np.random.default_rng(20260101)
    idx = np.sort(rng.choice(n, size=m, replace=False))
    if isinstance(inp.X, (DenseDesign, SparseDesign)):
        X_sub = type(inp.X)(inp.X.X[idx], inp.X.column_names)
    else:
        assert take_rows is not None
        X_sub = take_rows(idx)
    sub = dataclasses.replace(
        inp,
        X=X_sub,
        y=inp.y[idx],
        weights=inp.weights[idx],
        freq_weights=inp.freq_weights[idx],
        offset=inp.offset[idx],
        tol=1e-5,  # a start: about a standard error of the full fit is close enough
        max_iter=25,
        certify=False,
    )
    from glmx.solvers.irls import irls  # the same solver, on the subsample

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = irls(sub)
    except GlmxError:
        return None
    if not res.converged or res.aliased.any() or not np.all(np.isfinite(res.coef)):
        return None  # e.g. a level absent from the subsample: start as R does
    information: Array | None = None
    if isinstance(inp.X, (DenseDesign, SparseDesign)):
        ratio = float(np.sum(inp.total_weights)) / float(np.sum(sub.total_weights))
        information = np.asarray(np.linalg.inv(res.cov_unscaled) * ratio, dtype=np.float64)
    return _refine_levels(inp, res.coef), information


def _refine_levels(inp: IRLSInputs, coef: Array) -> Array:
    """A subsample has few rows per level of a many-level factor, so its level effects are
    noisy: take one Newton step for them alone on all rows, the other coefficients fixed
    (the level block of X'WX is diagonal, so this is two grouped sums)."""
    step_for = getattr(inp.X, "level_newton_step", None)
    if step_for is None:
        return coef
    from glmx.solvers.elementwise import working_weights_and_residuals

    fam = inp.family
    eta = inp.X.matvec(coef) + inp.offset
    with np.errstate(all="ignore"):
        mu = fam.link.inverse(eta)
    if not (fam.link.valid_eta(eta) and fam.valid_mu(mu)):
        return coef
    W, r = working_weights_and_residuals(inp, eta, mu)
    out = coef.copy()
    out[inp.X.block] += step_for(W, r)  # type: ignore[attr-defined]
    return out
