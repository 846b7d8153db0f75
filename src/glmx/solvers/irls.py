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
from glmx.solvers.elementwise import fitted_and_deviance, working_weights_and_residuals
from glmx.solvers.linalg import (
    EigenFactorization,
    Factorization,
    factorize_kept,
    normal_equations,
)
from glmx.solvers.state import Array, FitLog, IRLSInputs, IRLSResult
from glmx.solvers.warmstart import subsample_start

MAX_HALVINGS = 60


def _initial_point(
    inp: IRLSInputs, start: Array | None
) -> tuple[Array | None, Array, Array, float]:
    """beta (None from R's mustart), eta, mu and the deviance to start from."""
    fam = inp.family
    if start is not None:
        beta = np.asarray(start, dtype=float)
        eta = inp.X.matvec(beta) + inp.offset
        mu, dev, valid = fitted_and_deviance(inp, eta)
        if not valid:
            raise ConvergenceError(
                "the supplied start coefficients give invalid fitted values for the "
                f"{fam.name} family with the {fam.link.name} link; supply other starting values"
            )
        return beta, eta, mu, dev
    mustart = fam.starting_mu(inp.y, inp.weights) if inp.mustart is None else inp.mustart
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = fam.link.link(mustart)
    mu, dev, valid = fitted_and_deviance(inp, eta)  # R: mu <- linkinv(eta), devold
    if not (np.all(np.isfinite(eta)) and valid):
        raise ConvergenceError(
            f"cannot find valid starting values for the {fam.name} family with the "
            f"{fam.link.name} link; please give start= coefficients"
        )
    return None, eta, mu, dev


def _start(inp: IRLSInputs) -> tuple[tuple[Array | None, Array, Array, float], bool]:
    """R's starting point, or for a large fit the estimates of a subsample fit when
    they give valid fitted values; and whether the latter was used."""
    warm = subsample_start(inp)
    if warm is not None:
        try:
            return _initial_point(inp, warm), True
        except ConvergenceError:
            pass
    return _initial_point(inp, inp.start), False


# A warm-started fit needs fewer steps than R's, so with a linearly converging link
# (Fisher scoring with a non-canonical link) it can meet R's deviance criterion while the
# estimates still move at the 1e-8 level: it then takes up to this many more steps, until
# they stop moving.
EXTRA_WARM_STEPS = 3
WARM_COEF_TOL = 1e-7


def irls(inp: IRLSInputs) -> IRLSResult:
    """Fit by IRLS; see the module docstring for the iteration."""
    p = inp.X.shape[1]
    (beta, eta, mu, dev_old), warm = _start(inp)
    extra = 0
    coef_old = beta
    log = FitLog()
    structural: NDArray[np.bool_] | None = None
    converged = boundary = False
    n_iter = 0
    for n_iter in range(1, inp.max_iter + 1):  # noqa: B007 - the count is reported
        W, r = working_weights_and_residuals(inp, eta, mu)
        if beta is None:
            # first step from mustart: regress z = eta - offset + r (R's working response)
            base = np.zeros(p)
            v = W * (eta - inp.offset + r)
        else:
            base = beta
            v = W * r
        fac: Factorization | EigenFactorization
        fac, rhs = normal_equations(inp.X, W, v)
        if structural is None:
            structural = fac.aliased  # aliasing is a property of X, found at the start
        elif (fac.aliased & ~structural).any():
            # a column only looks aliased because extreme weights (fitted values at the
            # boundary) swamp the others: keep it and solve the ill-conditioned system
            fac = factorize_kept(inp.X.gram(W), ~structural)
        beta_new = base + fac.solve(rhs)
        beta_new[fac.aliased] = 0.0
        beta, eta, mu, dev, halvings, hit_boundary = _step(inp, beta_new, coef_old, dev_old)
        boundary |= hit_boundary
        log.record(dev, halvings)
        if abs(dev - dev_old) / (abs(dev) + 0.1) < inp.tol:
            moving = (
                warm
                and not inp.family.canonical  # Newton's method: no slow tail
                and coef_old is not None
                and np.any(np.abs(beta - coef_old) > WARM_COEF_TOL * (np.abs(beta) + 1e-3))
            )
            if not moving or extra >= EXTRA_WARM_STEPS:
                converged = True
                break
            extra += 1
        dev_old = dev
        coef_old = beta
    assert beta is not None
    warn_outcome(converged, boundary, inp.max_iter, "give start= values, ")
    # as R: the covariance and dispersion use the weights of the last WLS step
    coef = np.where(fac.aliased, np.nan, beta)
    return IRLSResult(
        coef=coef,
        aliased=fac.aliased,
        eta=eta,
        mu=mu,
        deviance=dev,
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


def _step(
    inp: IRLSInputs, beta_new: Array, coef_old: Array | None, dev_old: float
) -> tuple[Array, Array, Array, float, int, bool]:
    """Evaluate a step, halving it toward ``coef_old`` while the deviance is not finite,
    eta/mu are invalid, or the deviance went up.  Returns the accepted beta, eta, mu,
    deviance, the number of halvings and whether halving was needed for validity (R's
    boundary)."""
    beta = beta_new
    halvings = 0
    boundary = False
    while True:
        eta = inp.X.matvec(beta) + inp.offset
        mu, dev, valid = fitted_and_deviance(inp, eta)
        bad = not np.isfinite(dev) or not valid
        worse = not bad and coef_old is not None and dev - dev_old > 1e-12 * (abs(dev_old) + 0.1)
        if not (bad or worse):
            break
        if coef_old is None:
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
            beta = coef_old  # no decrease possible: stay put, which signals convergence
            eta = inp.X.matvec(beta) + inp.offset
            mu, dev, _ = fitted_and_deviance(inp, eta)
            break
        boundary |= bad
        beta = (beta + coef_old) / 2.0
        halvings += 1
    return beta, eta, mu, dev, halvings, boundary
