"""Checks at a mixed model's optimum: lme4's ``checkConv`` and fitted values at the edge.

Each check warns with a glmx warning, and the messages are kept on the fit.  ``converged``
stays True only where the optimizer stopped on its criterion and the derivatives there
describe a minimum: a large scaled gradient or a Hessian that is not positive definite
makes it False.  A very large Hessian eigenvalue ratio warns, as lme4, without changing
it.  Fitted probabilities (or Poisson means) numerically at the edge of their range mean
infinite fixed-effect estimates: there is no maximum to certify, so ``converged`` is False,
with a :class:`~glmx.errors.SeparationWarning` (a :class:`~glmx.errors.ConvergenceWarning`
when every row is at the edge, as for a response that is 0 in every row).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from glmx.errors import BoundaryWarning, ConvergenceWarning, SeparationWarning
from glmx.families.base import Family
from glmx.mixed.certify import OptimizerInfo
from glmx.mixed.optimize import (
    CONVERGENCE_ADVICE,
    SINGULAR_TOL,
    UNIDENTIFIABLE,
    convergence_messages,
    is_singular,
)
from glmx.mixed.reterms import ReTerms

Array = NDArray[np.float64]

SINGULAR_MESSAGE = (
    "boundary (singular) fit: a random-effect variance is estimated as zero (or a "
    "correlation as +-1); consider simplifying the random-effect structure (see "
    "'Singular fits' in docs/mixed-models.md)"
)
_SINGULAR_TAIL = (
    "; the maximum lies on the boundary of the parameter space (restarts from other "
    "starts reach no better point); consider simplifying the random-effect structure (see "
    "'Singular fits' in docs/mixed-models.md)"
)
# R's glm.fit: a fitted probability within 10 eps of 0 or 1 is "numerically 0 or 1"
_EDGE = 10.0 * float(np.finfo(float).eps)


@dataclass(frozen=True)
class Checks:
    singular: bool
    converged: bool
    messages: tuple[str, ...]


def boundary_parameters(theta: Array, rt: ReTerms, tol: float = SINGULAR_TOL) -> list[str]:
    """What sits on the boundary, in lme4's names of the variance components: a standard
    deviation at 0 (``sd_x|g = 0``) or a correlation at +-1 (``cor_x.(Intercept)|g = +1``);
    a larger singular covariance matrix is named with the column it makes dependent."""
    out: list[str] = []
    for i, t in enumerate(rt.terms):
        T = t.T(rt.theta_of(theta, i))
        cols = [str(c) for c in t.columns]
        for j in range(t.k):
            if T[j, j] >= tol:
                continue
            if np.max(np.abs(T[j, :j]), initial=0.0) < tol:
                out.append(f"sd_{cols[j]}|{t.group} = 0")
                continue
            S = T @ T.T
            sd = np.sqrt(np.maximum(np.diag(S), 1e-300))
            corr = S[j, :j] / (sd[j] * sd[:j])
            m = int(np.argmax(np.abs(corr)))
            if t.k == 2 or abs(abs(corr[m]) - 1.0) < 1e-3:
                out.append(f"cor_{cols[j]}.{cols[m]}|{t.group} = {'+1' if corr[m] > 0 else '-1'}")
            else:
                out.append(
                    f"the covariance of ({' + '.join(cols)} | {t.group}) is singular: "
                    f"{cols[j]} is a combination of the others"
                )
    return out


def singular_message(theta: Array, rt: ReTerms | None) -> str:
    names = boundary_parameters(theta, rt) if rt is not None else []
    if not names:
        return SINGULAR_MESSAGE
    return "boundary (singular) fit: " + ", ".join(names) + _SINGULAR_TAIL


def check_optimum(
    theta: Array,
    lower: Array,
    gradient: Array | None,
    hessian: Array | None,
    n_theta: int,
    converged: bool,
    rt: ReTerms | None = None,
    info: OptimizerInfo | None = None,
) -> Checks:
    """lme4's checkConv: singular fits warn (and skip the rest), else gradient/Hessian
    (skipped when there are no derivatives, as for nagq = 0); and the optimizer's
    certificate (:mod:`glmx.mixed.certify`): no certificate, no convergence."""
    messages: list[str] = []
    singular = is_singular(theta, lower)
    if info is not None and not info.certified:
        converged = False
        msg = (
            "the optimizer's end point is not a certified optimum "
            f"({info.message}; {len(info.attempts)} runs)"
        )
        warnings.warn(msg + CONVERGENCE_ADVICE, ConvergenceWarning, stacklevel=4)
        messages.append(msg)
    if singular:
        msg = singular_message(theta, rt)
        warnings.warn(msg, BoundaryWarning, stacklevel=4)
        messages.append(msg)
    elif gradient is not None and hessian is not None:
        if not (np.all(np.isfinite(gradient)) and np.all(np.isfinite(hessian))):
            found = ["the deviance's derivatives at the optimum are not finite"]
        else:
            found = convergence_messages(gradient, hessian, n_theta)
        for m in found:
            warnings.warn(m + CONVERGENCE_ADVICE, ConvergenceWarning, stacklevel=4)
            messages.append(m)
            converged = converged and m.startswith(UNIDENTIFIABLE)
    if not converged and not messages:
        msg = "the optimizer stopped before convergence"
        warnings.warn(msg + CONVERGENCE_ADVICE, ConvergenceWarning, stacklevel=4)
        messages.append(msg)
    return Checks(singular, converged, tuple(messages))


def check_fitted(family: Family, y: Array, weights: Array, mu: Array, response: str) -> Checks:
    """Fitted means numerically at the edge of their range (binomial 0 or 1, Poisson 0),
    as R's glm.fit warns."""
    pos = weights > 0
    y, mu = y[pos], mu[pos]
    if family.name == "binomial":
        edge = ((mu < _EDGE) & (y == 0)) | ((mu > 1.0 - _EDGE) & (y == 1))
    elif family.name == "poisson":
        edge = (mu < _EDGE) & (y == 0)
    else:
        return Checks(False, True, ())
    if not edge.any():
        return Checks(False, True, ())
    if edge.all():
        what = (
            f"is {float(y[0]):g} in every row"
            if np.ptp(y) == 0
            else "is fitted exactly in every row (by the offset or a separating predictor)"
        )
        msg = (
            f"the response {response!r} {what}: the fixed-effect estimates are infinite "
            "or undetermined, and the fit has not converged"
        )
        warnings.warn(msg, ConvergenceWarning, stacklevel=4)
        return Checks(False, False, (msg,))
    kind = "probabilities numerically 0 or 1" if family.name == "binomial" else "means 0"
    msg = (
        f"fitted {kind} in {int(edge.sum())} row(s) (separation): some fixed-effect "
        "estimates are infinite, so the fit has not converged and their values and "
        "standard errors are not meaningful; "
        "consider dropping or merging the predictors that separate the response"
    )
    warnings.warn(msg, SeparationWarning, stacklevel=4)
    return Checks(False, False, (msg,))
