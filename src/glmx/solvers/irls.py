"""Iteratively reweighted least squares, as R's ``glm.fit`` with a safety net.

Each iteration solves the weighted least squares problem of Fisher scoring

    (X'WX) delta = X'W r,   W = w mu_eta^2 / V(mu),   r = (y - mu) / mu_eta

and sets beta <- beta + delta (the same iterate as R's regression of the working
response z = eta - offset + r, written as an update so that rounding in X'WX does not
bias the fixed point).  The step is halved when the deviance is not finite, when eta or
mu leave their valid range (both as R), and when the deviance increases (as ``glm2``).
Convergence is R's: |dev - dev_old| / (|dev| + 0.1) < tol.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import NDArray

from glmx.errors import BoundaryWarning, ConvergenceError, ConvergenceWarning
from glmx.solvers.linalg import EigenFactorization, Factorization, factorize_kept
from glmx.solvers.points import Evaluator, Point
from glmx.solvers.state import Array, FitLog, IRLSInputs, IRLSResult
from glmx.solvers.warmstart import subsample_start

MAX_HALVINGS = 60


def _initial_point(ev: Evaluator, start: Array | None) -> Point:
    """The point to start from: the given coefficients, or R's mustart."""
    inp = ev.inp
    fam = inp.family
    if start is not None:
        pt = ev.at(np.asarray(start, dtype=float))
        if not pt.valid:
            raise ConvergenceError(
                "the supplied start coefficients give invalid fitted values for the "
                f"{fam.name} family with the {fam.link.name} link; supply other starting values"
            )
        return pt
    mustart = fam.starting_mu(inp.y, inp.weights) if inp.mustart is None else inp.mustart
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = fam.link.link(mustart)
    pt = ev.at_eta(eta)  # R: mu <- linkinv(eta), devold
    if not (np.all(np.isfinite(eta)) and pt.valid):
        raise ConvergenceError(
            f"cannot find valid starting values for the {fam.name} family with the "
            f"{fam.link.name} link; please give start= coefficients"
        )
    return pt


def _start(ev: Evaluator) -> tuple[Point, bool]:
    """R's starting point, or for a large fit the estimates of a subsample fit when
    they give valid fitted values; and whether the latter was used."""
    warm = subsample_start(ev.inp)
    if warm is not None:
        try:
            return _initial_point(ev, warm), True
        except ConvergenceError:
            pass
    return _initial_point(ev, ev.inp.start), False


# A warm-started fit needs fewer steps than R's, so with a linearly converging link
# (Fisher scoring with a non-canonical link) it can meet R's deviance criterion while the
# estimates still move at the 1e-8 level: it then takes up to this many more steps, until
# they stop moving.
EXTRA_WARM_STEPS = 3
WARM_COEF_TOL = 1e-7


def irls(inp: IRLSInputs) -> IRLSResult:
    """Fit by IRLS; see the module docstring for the iteration."""
    ev = Evaluator(inp)
    pt, warm = _start(ev)
    extra = 0
    log = FitLog()
    structural: NDArray[np.bool_] | None = None
    converged = boundary = False
    n_iter = 0
    for n_iter in range(1, inp.max_iter + 1):  # noqa: B007 - the count is reported
        fac: Factorization | EigenFactorization
        fac, rhs, W = ev.normal_equations(pt)
        if structural is None:
            structural = fac.aliased  # aliasing is a property of X, found at the start
        elif (fac.aliased & ~structural).any():
            # a column only looks aliased because extreme weights (fitted values at the
            # boundary) swamp the others: keep it and solve the ill-conditioned system
            fac = factorize_kept(inp.X.gram(W), ~structural)
        # the first step from mustart regresses z itself; later steps solve for the update
        beta_new = (0.0 if pt.beta is None else pt.beta) + fac.solve(rhs)
        beta_new[fac.aliased] = 0.0
        new, halvings, hit_boundary = _step(ev, beta_new, pt)
        assert new.beta is not None  # a step is always from coefficients
        boundary |= hit_boundary
        log.record(new.deviance, halvings)
        if abs(new.deviance - pt.deviance) / (abs(new.deviance) + 0.1) < inp.tol:
            moving = (
                warm
                and not inp.family.canonical  # Newton's method: no slow tail
                and pt.beta is not None
                and np.any(np.abs(new.beta - pt.beta) > WARM_COEF_TOL * (np.abs(new.beta) + 1e-3))
            )
            if not moving or extra >= EXTRA_WARM_STEPS:
                pt = new
                converged = True
                break
            extra += 1
        pt = new
    assert pt.beta is not None
    warn_outcome(converged, boundary, inp.max_iter, "give start= values, ")
    # as R: the covariance and dispersion use the weights of the last WLS step
    coef = np.where(fac.aliased, np.nan, pt.beta)
    return IRLSResult(
        coef=coef,
        aliased=fac.aliased,
        eta=pt.eta,
        mu=pt.mu,
        deviance=pt.deviance,
        working_weights=W,
        cov_unscaled=fac.inverse(),  # (X'WX)^{-1} of the last step
        n_iter=n_iter,
        converged=converged,
        boundary=boundary,
        log=log,
    )


def warn_outcome(converged: bool, boundary: bool, max_iter: int, advice: str = "") -> None:
    """R's warnings at the end of IRLS: no convergence, or a step kept at a boundary."""
    if not converged:
        warnings.warn(
            f"IRLS did not converge in {max_iter} iterations (last relative deviance "
            f"change above tol); raise max_iter, {advice}or check the model",
            ConvergenceWarning,
            stacklevel=4,
        )
    if boundary:
        warnings.warn(
            "IRLS stopped at a boundary value (steps were halved to keep the fitted values "
            "valid); the estimates may be on the edge of the parameter space",
            BoundaryWarning,
            stacklevel=4,
        )


def _step(ev: Evaluator, beta_new: Array, old: Point) -> tuple[Point, int, bool]:
    """Evaluate a step from ``old``, halving it toward old.beta while the deviance is not
    finite, eta/mu are invalid, or the deviance went up.  Returns the accepted point, the
    number of halvings and whether halving was needed for validity (R's boundary)."""
    beta = beta_new
    halvings = 0
    boundary = False
    while True:
        pt = ev.at(beta)
        bad = not np.isfinite(pt.deviance) or not pt.valid
        worse = (
            not bad
            and old.beta is not None
            and pt.deviance - old.deviance > 1e-12 * (abs(old.deviance) + 0.1)
        )
        if not (bad or worse):
            return pt, halvings, boundary
        if old.beta is None:
            raise ConvergenceError(
                "no valid set of coefficients has been found from the starting values: "
                "please supply start= coefficients"
            )
        if halvings >= MAX_HALVINGS:
            if bad:
                raise ConvergenceError(
                    "IRLS could not find a valid step (fitted values outside the family's "
                    "range); supply start= coefficients or use another link"
                )
            # no decrease possible: stay put, which signals convergence
            return ev.at(old.beta), halvings, boundary
        boundary |= bad
        beta = (beta + old.beta) / 2.0
        halvings += 1
