"""Profile-likelihood confidence intervals (as ``MASS::confint.glm``).

For coefficient j, the signed root deviance

    z(b) = sign(b - beta_j) sqrt((D(b) - D) / phi)

uses D(b), the deviance with beta_j held at b (x_j b moved into the offset and the
other coefficients refitted), and phi the dispersion of the full fit.  The interval
solves z(b) = -/+ q with q the normal quantile, as MASS does (for estimated dispersion
too); MASS interpolates a spline through profile points, glmx finds the roots.

Where the profile levels off below the cut-off, the likelihood approaches its supremum as
the coefficient goes to infinity (separation in a binomial model, a zero-count level in a
Poisson one): that bound is -inf or +inf, with a warning, where R's spline gives NA.  A
bound that cannot be computed (no valid constrained fit) is NaN.

For a Firth fit (``method="firth"``, logit link) the intervals profile the penalized
log-likelihood pl(beta) = l(beta) + 1/2 log|X'WX|, as logistf does: with beta_j held at b
the other coefficients maximize pl, the penalty keeping the information matrix of the
full design, and the interval solves 2 (pl(beta_hat) - pl_j(b)) = chi2_1(level), i.e.
z(b) = sign(b - beta_j) sqrt(2 (pl(beta_hat) - pl_j(b))) = -/+ q.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import optimize, stats

from glmx.design.matrix import DenseDesign, DesignMatrix, SparseDesign
from glmx.errors import DataError, FamilyError, GlmxError, GlmxWarning, SeparationWarning
from glmx.families.exponential import Binomial
from glmx.families.links import Logit
from glmx.solvers.firth import firth_constrained, penalized_loglik
from glmx.solvers.irls import irls
from glmx.solvers.state import IRLSInputs

if TYPE_CHECKING:
    from glmx.results.glm import GLMResults


def _drop_column(X: DesignMatrix, j: int) -> tuple[DesignMatrix, np.ndarray]:
    keep = [k for k in range(X.shape[1]) if k != j]
    names = [X.column_names[k] for k in keep]
    if isinstance(X, DenseDesign):
        return DenseDesign(X.X[:, keep], names), X.X[:, j]
    if isinstance(X, SparseDesign):
        return SparseDesign(X.X[:, keep], names), X.column(j)
    full = X.rows(np.arange(X.shape[0]))
    return DenseDesign(full[:, keep], names), full[:, j]


def profile_confint(fit: GLMResults, level: float = 0.95) -> pd.DataFrame:
    """Profile intervals for every non-aliased coefficient: +-inf where the profile never
    reaches the cut-off, NaN where a bound cannot be computed."""
    if not 0 < level < 1:
        raise DataError(f"level must be in (0, 1), got {level!r}")
    raw = fit._fit
    q = float(stats.norm.ppf(0.5 + level / 2.0))
    phi = fit.dispersion
    kept = np.flatnonzero(~raw.aliased)
    # aliased columns stay out of every constrained fit
    X_kept = _subset(raw.X, kept)
    base = IRLSInputs(
        X=X_kept,
        y=raw.y,
        weights=raw.weights,
        freq_weights=raw.freq_weights,
        offset=raw.offset,
        family=raw.family,
        mustart=raw.mu,
        tol=min(raw.tol, 1e-10),
        max_iter=max(raw.max_iter, 100),
    )
    out = np.full((len(raw.coef), 2), np.nan)
    if raw.method == "firth":
        _penalized_profile(fit, base, kept, q, out)
        return pd.DataFrame(out, index=fit.coef.index, columns=["lower", "upper"])
    for pos, j in enumerate(kept):
        bhat, se = raw.coef[j], fit.se.iloc[j]
        if not (np.isfinite(se) and se > 0):
            continue
        X_j, x_j = _drop_column(X_kept, pos)

        def z(
            b: float, X_j: DesignMatrix = X_j, x_j: np.ndarray = x_j, bhat: float = bhat
        ) -> float:
            inp = dataclasses.replace(base, X=X_j, offset=raw.offset + b * x_j)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dev = raw.family.deviance(raw.y, irls(inp).mu, inp.total_weights)
            return float(np.sign(b - bhat) * np.sqrt(max(dev - raw.deviance, 0.0) / phi))

        for side, target in ((0, -q), (1, q)):
            out[j, side] = _root(z, bhat, se, target)
    _warn_unbounded(fit, out, level)
    return pd.DataFrame(out, index=fit.coef.index, columns=["lower", "upper"])


def _warn_unbounded(fit: GLMResults, out: np.ndarray, level: float) -> None:
    """One warning naming the coefficients whose profile never reaches the cut-off."""
    names = [str(n) for n, row in zip(fit.coef.index, out) if np.isinf(row).any()]
    if not names:
        return
    listed = ", ".join(repr(n) for n in names)
    msg = (
        f"the profile likelihood of {listed} never reaches the {level:.0%} cut-off, so "
        "the interval is unbounded (inf) on that side: the likelihood approaches its "
        "maximum as the estimate goes to infinity"
    )
    if isinstance(fit._fit.family, Binomial):
        warnings.warn(
            f"{msg} (separation); glmx.glm(..., method='firth') gives finite estimates "
            "and intervals",
            SeparationWarning,
            stacklevel=4,
        )
    else:
        warnings.warn(f"{msg}; the data do not bound that coefficient", GlmxWarning, stacklevel=4)


def _penalized_profile(
    fit: GLMResults, base: IRLSInputs, kept: np.ndarray, q: float, out: np.ndarray
) -> None:
    """Fill ``out`` (rows: coefficients) with profile penalized-likelihood intervals."""
    raw = fit._fit
    if not isinstance(raw.family.link, Logit):
        raise FamilyError(
            "profile penalized-likelihood intervals need the logit link (for the "
            f"{raw.family.link.name} link the Firth estimate maximizes no likelihood); "
            'use confint(method="wald")'
        )
    bhat = raw.coef[kept]
    X, y, w, f, off = base.X, raw.y, raw.weights, raw.freq_weights, raw.offset
    pl_max = penalized_loglik(X, y, w, f, off, bhat)
    fixed_inp = dataclasses.replace(base, start=None, mustart=None)
    for pos, j in enumerate(kept):
        se = fit.se.iloc[j]
        if not (np.isfinite(se) and se > 0):
            continue

        last = [bhat]  # warm start: the latest constrained fit of this coefficient

        def z(b: float, pos: int = pos, last: list[np.ndarray] = last) -> float:
            beta_b = firth_constrained(fixed_inp, pos, b, last[0])
            last[0] = beta_b
            pl_b = penalized_loglik(X, y, w, f, off, beta_b)
            return float(np.sign(b - bhat[pos]) * np.sqrt(max(2.0 * (pl_max - pl_b), 0.0)))

        for side, target in ((0, -q), (1, q)):
            out[j, side] = _root(z, bhat[pos], se, target)


def _subset(X: DesignMatrix, cols: np.ndarray) -> DesignMatrix:
    if len(cols) == X.shape[1]:
        return X
    names = [X.column_names[k] for k in cols]
    if isinstance(X, DenseDesign):
        return DenseDesign(X.X[:, cols], names)
    if isinstance(X, SparseDesign):
        return SparseDesign(X.X[:, cols], names)
    return DenseDesign(X.rows(np.arange(X.shape[0]))[:, cols], names)


def _root(z, bhat: float, se: float, target: float) -> float:  # noqa: ANN001
    """b on the side of ``target`` with z(b) = target.

    Steps out from the estimate, doubling, until z passes the target; where the
    constrained model has no valid fit (e.g. eta <= 0 for an inverse link) the step is
    shortened instead.  Each doubled step raises z^2 (the deviance) by about target^2 or
    more on a likelihood that curves as its Wald approximation; two steps in a row that
    raise it by less than ``_FLAT`` of that mean the profile has levelled off below the
    target (the supremum lies at infinity): +-inf.  NaN when no bound can be computed."""
    direction = np.sign(target)
    inner, z_inner, step = bhat, 0.0, abs(target) * se
    flat_steps = 0
    for _ in range(60):
        outer = inner + direction * step
        try:
            zo = z(outer)
        except GlmxError:
            step /= 2.0  # outside the valid region: approach its edge
            if step < 1e-10 * se:
                return float("nan")
            continue
        if direction * (zo - target) >= 0:
            lo, hi = min(inner, outer), max(inner, outer)
            tol = 1e-10 * max(1.0, abs(bhat)) + 1e-12 * se
            try:
                return float(optimize.brentq(lambda b: z(b) - target, lo, hi, xtol=tol))
            except (ValueError, GlmxError):
                return float("nan")
        rise = direction * (zo - z_inner) * abs(zo + z_inner)  # change of z^2 outwards
        flat_steps = flat_steps + 1 if rise <= _FLAT * target**2 else 0
        if flat_steps == 2:
            return float(direction * np.inf)
        inner, z_inner = outer, zo
        step *= 2.0
    return float("nan")


# a step outwards raising the squared profile statistic by less than this fraction of
# target^2 is flat: the Wald approximation predicts a rise of target^2 or more
_FLAT = 1e-6
