"""Iteratively reweighted least squares, as R's ``glm.fit``, with a certified answer.

Each iteration solves the normal equations of a step from the current point

    C delta = U,   U = X'W r,   W = w mu_eta^2 / V(mu),   r = (y - mu) / mu_eta,

where U is the score (times the dispersion) and C the curvature: Fisher's information
X'WX (Fisher scoring, R's iteration), or for a non-canonical link the observed
information X'W_obs X (Newton's method, see :func:`observed_weights`) when it is
positive definite, so that the last steps converge quadratically for every link.  The
step is halved when the deviance is not finite, when eta or mu leave their valid range
(both as R), and when the deviance increases (as ``glm2``).

Convergence (:mod:`glmx.solvers.certify`) needs R's criterion
|dev - dev_old| / (|dev| + 0.1) < tol and a small Newton decrement U' C^{-1} U of the
last step (the score scaled by the information: free of the units of X and y), so the
coefficients have stopped moving.  A fit that stops short of that (iteration cap,
exhausted halving, a failed factorization) or ends worse than the nested null model is
restarted from the null model's coefficients, from R's ``mustart`` and from a damped
start; the best fit is kept, and ``converged`` is True only for a certified one.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from glmx.errors import BoundaryWarning, ConvergenceError, ConvergenceWarning
from glmx.solvers.certify import Certifier
from glmx.solvers.points import Equations, Evaluator, Point
from glmx.solvers.state import Array, FitLog, IRLSInputs, IRLSResult
from glmx.solvers.warmstart import subsample_start

MAX_HALVINGS = 60

# numerical failures inside a step (a singular or non-finite system); they end the run
# from this start, and a restart is tried
_NUMERICAL = (np.linalg.LinAlgError, FloatingPointError, ValueError, ZeroDivisionError)


def _initial_point(ev: Evaluator, start: Array | None, mustart: Array | None = None) -> Point:
    """The point to start from: the given coefficients, or R's mustart."""
    inp = ev.inp
    fam = inp.family
    if start is not None:
        pt = ev.at(np.asarray(start, dtype=float))
        if not (pt.valid and np.isfinite(pt.deviance)):
            raise ConvergenceError(
                "the supplied start coefficients give invalid fitted values for the "
                f"{fam.name} family with the {fam.link.name} link; supply other starting values"
            )
        return pt
    if mustart is None:
        mustart = fam.starting_mu(inp.y, inp.weights) if inp.mustart is None else inp.mustart
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        eta = fam.link.link(mustart)
    pt = ev.at_eta(eta)  # R: mu <- linkinv(eta), devold
    if not (np.all(np.isfinite(eta)) and pt.valid and np.isfinite(pt.deviance)):
        raise ConvergenceError(
            f"cannot find valid starting values for the {fam.name} family with the "
            f"{fam.link.name} link; please give start= coefficients"
        )
    return pt


@dataclass
class Run:
    """The outcome of IRLS from one start: the last point, the equations of the last
    step (R's covariance and weights come from them), and why it stopped."""

    point: Point
    equations: Equations
    n_iter: int
    log: FitLog
    converged: bool
    boundary: bool
    reason: str  # why it stopped short ("" when converged)
    kept: NDArray[np.bool_]  # the estimable columns, found at the first step
    # the last step's decrement: when not negligible, the weights of the point it
    # started from are refreshed at the point it reached (see _result)
    stale: bool = False


def _iterate(ev: Evaluator, pt: Point, cert: Certifier, kept: NDArray[np.bool_] | None) -> Run:
    """IRLS from ``pt`` until certified, the iteration cap, exhausted halving or a
    numerical failure."""
    inp = ev.inp
    log = FitLog()
    boundary = False
    eq: Equations | None = None
    newton_ok = True  # the last step was taken whole (Newton near the optimum only)

    def stop(at: Point, converged: bool, reason: str = "") -> Run:
        assert eq is not None and kept is not None
        return Run(at, eq, n_iter, log, converged, boundary, reason, kept)

    n_iter = 0
    for n_iter in range(1, inp.max_iter + 1):  # noqa: B007 - the count is reported
        newton = ev.newton_available and newton_ok and pt.beta is not None
        try:
            eq = ev.equations(pt, kept, newton=newton)
        except _NUMERICAL:
            if eq is None:
                raise
            return stop(pt, False, "stopped where the normal equations failed")
        if kept is None:
            kept = eq.fac.kept  # aliasing is a property of X, found at the start
        delta = eq.fac.solve(eq.rhs)
        # the first step from mustart regresses z itself; later steps solve for the update
        beta_new = (0.0 if pt.beta is None else pt.beta) + delta
        beta_new[eq.fac.aliased] = 0.0
        decrement = None if pt.beta is None else float(eq.rhs @ delta)
        try:
            new, halvings, hit_boundary = _step(ev, beta_new, pt)
        except _NUMERICAL:
            return stop(pt, False, "stopped where a step failed numerically")
        boundary |= hit_boundary
        log.record(new.deviance, halvings)
        if halvings > MAX_HALVINGS:  # no step lowers the deviance: pt is where it stops
            ok = decrement is not None and cert.at_noise_floor(decrement, pt.deviance)
            return stop(pt, ok, "" if ok else "stopped where step-halving ran out")
        changed = abs(new.deviance - pt.deviance) / (abs(new.deviance) + 0.1)
        newton_ok = halvings == 0
        if changed < inp.tol and (
            not inp.certify
            or (
                halvings == 0
                and decrement is not None
                and cert.small(decrement, new.deviance, eq.newton or inp.family.canonical)
            )
        ):
            run = stop(new, True)
            run.stale = decrement is not None and not cert.small(decrement, new.deviance, False)
            return run
        pt = new
    return stop(pt, False, f"did not converge in {inp.max_iter} iterations")


def _step(ev: Evaluator, beta_new: Array, old: Point) -> tuple[Point, int, bool]:
    """Evaluate a step from ``old``, halving it toward old.beta while the deviance is not
    finite, eta/mu are invalid, or the deviance went up.  Returns the accepted point, the
    number of halvings (MAX_HALVINGS + 1 when none lowered the deviance: then the point
    returned is ``old`` re-evaluated) and whether halving was needed for validity (R's
    boundary)."""
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
            return ev.at(old.beta), MAX_HALVINGS + 1, boundary
        boundary |= bad
        beta = (beta + old.beta) / 2.0
        halvings += 1


def _first_start(ev: Evaluator) -> tuple[Point, str]:
    """The given start, or for a large fit the estimates of a subsample fit when they
    give valid fitted values, or R's mustart; and its description."""
    inp = ev.inp
    if inp.start is not None:
        return _initial_point(ev, inp.start), "the given start"
    warm = subsample_start(inp)
    if warm is not None:
        try:
            return _initial_point(ev, warm), "a subsample fit"
        except ConvergenceError:
            pass
    return _initial_point(ev, None), "R's starting values"


def _restarts(ev: Evaluator, first: str) -> list[tuple[str, Callable[[], Point]]]:
    """The restarts, in order, each made when it is tried (the points share the fit's
    buffers): the nested null model's fit, R's mustart, and a damped start (mustart
    halfway to the weighted mean)."""
    inp = ev.inp
    fam = inp.family
    out: list[tuple[str, Callable[[], Point]]] = []
    if inp.null_start is not None:
        out.append(("the null model's fit", lambda: _initial_point(ev, inp.null_start)))
    if first != "R's starting values":
        out.append(("R's starting values", lambda: _initial_point(ev, None)))

    def damped() -> Point:
        wt = inp.total_weights
        mustart = fam.starting_mu(inp.y, inp.weights) if inp.mustart is None else inp.mustart
        ybar = float(np.sum(wt * mustart) / np.sum(wt))
        return _initial_point(ev, None, (mustart + ybar) / 2.0)

    out.append(("a damped start", damped))
    return out


def _detached(run: Run) -> Run:
    """The run with its own copies of the evaluator's buffers (a restart overwrites them)."""
    eq = dataclasses.replace(run.equations, W=run.equations.W.copy())
    return dataclasses.replace(run, point=run.point.detached(), equations=eq)


def _lowest(run: Run, lowest: float) -> bool:
    """Whether no other start reached a lower deviance (to rounding)."""
    return run.point.deviance <= lowest + 1e-9 * (abs(lowest) + 0.1)


def _better(a: Run, b: Run | None, null_deviance: float | None) -> bool:
    """Whether run a beats run b: the lower deviance, a certified one among equals."""
    if b is None:
        return True
    if abs(a.point.deviance - b.point.deviance) <= 1e-9 * (abs(b.point.deviance) + 0.1):
        return _acceptable(a, null_deviance) and not _acceptable(b, null_deviance)
    return a.point.deviance < b.point.deviance


def _acceptable(run: Run, null_deviance: float | None) -> bool:
    """Certified, and no worse than the nested null model."""
    worse = null_deviance is not None and run.point.deviance > null_deviance + 1e-9 * (
        abs(null_deviance) + 0.1
    )
    return run.converged and not worse


def irls(inp: IRLSInputs) -> IRLSResult:
    """Fit by IRLS; see the module docstring for the iteration, its certificate and the
    restarts."""
    ev = Evaluator(inp)
    cert = Certifier.for_inputs(inp)
    first = "R's starting values"
    best: Run | None = None
    try:
        pt, first = _first_start(ev)
        best = _iterate(ev, pt, cert, None)
    except ConvergenceError as err:
        if not inp.certify:
            raise
        failure: ConvergenceError | None = err
    else:
        failure = None
    if inp.certify and (best is None or not _acceptable(best, inp.null_deviance)):
        if best is not None and _still_descending(best, inp.null_deviance):
            # the likelihood rises towards a limit at infinity (separation) or slowly:
            # another start would follow the same path
            best.converged = False
            _warn_not_converged([first], best.reason, best.point.deviance, inp.null_deviance)
        else:
            best = _restarted(ev, cert, best, first, failure)
    assert best is not None
    if best.boundary:
        warnings.warn(
            "IRLS stopped at a boundary value (steps were halved to keep the fitted values "
            "valid); the estimates may be on the edge of the parameter space",
            BoundaryWarning,
            stacklevel=3,
        )
    return _result(ev, best)


def _still_descending(run: Run, null_deviance: float | None) -> bool:
    """A run stopped by the iteration cap whose last steps were whole and descending,
    better than the null model."""
    halvings = run.log.halvings[-5:]
    better = null_deviance is None or run.point.deviance <= null_deviance
    return run.n_iter >= 5 and better and run.reason.startswith("did not") and not any(halvings)


def _restarted(
    ev: Evaluator, cert: Certifier, best: Run | None, first: str, failure: ConvergenceError | None
) -> Run:
    """The best of ``best`` and the restarts (tried in order until one is certified);
    warns when none is.  Re-raises ``failure`` when no start gave any fit."""
    inp = ev.inp
    tried = [first]
    kept = None if best is None else best.kept
    if best is not None:
        best = _detached(best)
    lowest = np.inf if best is None else best.point.deviance
    for name, make_start in _restarts(ev, first):
        try:
            with np.errstate(all="ignore"):
                start = make_start()
        except (ConvergenceError, *_NUMERICAL):
            continue
        tried.append(name)
        try:
            run = _iterate(ev, start, cert, kept)
        except ConvergenceError:
            continue
        lowest = min(lowest, run.point.deviance)
        if _better(run, best, inp.null_deviance):
            best = _detached(run)
        if _acceptable(run, inp.null_deviance) and _lowest(run, lowest):
            return best  # type: ignore[return-value]
    if best is None:
        assert failure is not None
        raise failure
    if _acceptable(best, inp.null_deviance) and _lowest(best, lowest):
        return best
    best.converged = False
    reason = best.reason or "ended worse than the null model"
    _warn_not_converged(tried, reason, best.point.deviance, inp.null_deviance)
    return best


def _warn_not_converged(
    tried: list[str], reason: str, deviance: float, null_deviance: float | None
) -> None:
    null = "" if null_deviance is None else f", null deviance {null_deviance:.6g}"
    warnings.warn(
        f"IRLS {reason}. Tried {', '.join(tried)}; the best fit has "
        f"deviance {deviance:.6g}{null} and is not a certified maximum of the likelihood. "
        "Supply start= coefficients, raise max_iter, try another link, or check the data "
        "(extreme or separated values)",
        ConvergenceWarning,
        stacklevel=3,
    )


def _result(ev: Evaluator, run: Run) -> IRLSResult:
    """The fit's estimates; as R's, the covariance and working weights are those of the
    last step, i.e. at the point that step started from (Fisher's information there)."""
    pt = run.point
    assert pt.beta is not None
    if run.stale and run.converged:
        # Newton's last step left an exact point but started where the weights still
        # differ from its by more than 1e-8: R's covariance at the point reached
        run = dataclasses.replace(run, equations=ev.equations(pt, run.kept))
    fac = ev.fisher(run.equations)
    coef = np.where(fac.aliased, np.nan, pt.beta)
    return IRLSResult(
        coef=coef,
        aliased=fac.aliased,
        eta=pt.eta,
        mu=pt.mu,
        deviance=pt.deviance,
        working_weights=run.equations.W,
        cov_unscaled=fac.inverse(),  # (X'WX)^{-1} of the last step
        n_iter=run.n_iter,
        converged=run.converged,
        boundary=run.boundary,
        log=run.log,
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
