"""The IRLS driver: iteration, step-halving, the certificate, restarts and the
non-convergence warning, once for every fit (in memory, categorical, streamed).

A fit is a *problem* (:class:`Problem`) that evaluates points (coefficients to deviance
and validity) and the normal equations of a step from a point; the in-memory evaluator
(:mod:`glmx.solvers.points`) and the streamed one (:mod:`glmx.outofcore.streaming`) are
the two implementations.  The iteration is described in :mod:`glmx.solvers.irls`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from glmx.errors import BoundaryWarning, ConvergenceError, ConvergenceWarning
from glmx.families.base import Family
from glmx.solvers.certify import Certifier
from glmx.solvers.state import Array, Equations, FitLog

MAX_HALVINGS = 60
# halvings of a valid step that only raises the deviance: at 2^-30 of a descent direction
# the gain is below rounding, so the point the step started from is where IRLS stops
MAX_DESCENT_HALVINGS = 30
# whole Newton steps in a row that meet R's criterion without a small decrement: the
# estimates diverge (quadratic convergence would have certified them by then)
DIVERGING_STEPS = 10

# numerical failures inside a step (a singular or non-finite system); they end the run
# from this start, and a restart is tried
_NUMERICAL = (np.linalg.LinAlgError, FloatingPointError, ValueError, ZeroDivisionError)


@dataclass(frozen=True)
class Settings:
    """What the driver needs to know of a fit besides its points."""

    family: Family
    tol: float
    max_iter: int
    certify: bool = True  # False: R's criterion alone, no restarts (a start for a fit)
    start: Array | None = None
    null_start: Array | None = None  # the nested null model's coefficients (module irls)
    null_deviance: float | None = None
    # try every start, not only until one is certified (a likelihood that is not concave
    # in eta, on a problem small enough for it)
    explore: bool = False


class Problem(Protocol):
    """A fit's points and normal equations.  A point has ``beta`` (None at R's start),
    ``deviance``, ``valid`` and ``detached()`` (a copy out of shared buffers)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def newton_available(self) -> bool: ...

    @property
    def fisher_is_cheap(self) -> bool: ...

    def certifier(self) -> Certifier: ...

    def at(self, beta: Array) -> Any: ...

    def at_start(self, damped: bool = False) -> Any: ...

    def warm_start(self) -> Array | None: ...

    def least_squares_start(self, mean: bool = False) -> Array | None: ...

    def equations(
        self, pt: Any, kept: NDArray[np.bool_] | None = None, newton: bool = False
    ) -> Equations: ...

    def edge_fit(self, run: Run) -> Run | None: ...


@dataclass
class Run:
    """The outcome of IRLS from one start: the last point, the equations of the last
    step (R's covariance and weights come from them), and why it stopped."""

    point: Any
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
    at_edge: int = 0  # fitted values held at the edge of their range (module boundary)


def _iterate(ev: Problem, pt: Any, cert: Certifier, kept: NDArray[np.bool_] | None) -> Run:
    """IRLS from ``pt`` until certified, the iteration cap, exhausted halving or a
    numerical failure.

    Newton steps (the observed information) are taken after whole steps; their decrement
    only proposes convergence, which Fisher's decrement at the point reached confirms
    (the observed information can be huge where the data are far from the fit, making its
    decrement small away from the optimum).  Newton is dropped for the rest of the run
    when it misleads so."""
    inp = ev.settings
    log = FitLog()
    boundary = False
    eq: Equations | None = None
    pending: Equations | None = None  # Fisher's equations at pt, already formed
    newton_ok = True  # the last step was taken whole (Newton near the optimum only)
    newton_trusted = ev.newton_available
    # with a fixed X'WX, Fisher's steps are taken until they converge slowly (the
    # decrement falls by less than 10x a step), then Newton's
    fisher_first, last_decrement = ev.fisher_is_cheap, np.inf
    flat = 0  # consecutive whole Newton steps with R's criterion met but no certificate
    pressed = 0  # consecutive steps halved for validity with R's criterion met

    def stop(at: Any, converged: bool, reason: str = "") -> Run:
        assert eq is not None and kept is not None
        return Run(at, eq, n_iter, log, converged, boundary, reason, kept)

    n_iter = 0
    for n_iter in range(1, inp.max_iter + 1):  # noqa: B007 - the count is reported
        newton = newton_trusted and newton_ok and pt.beta is not None and not fisher_first
        try:
            eq = pending if pending is not None else ev.equations(pt, kept, newton=newton)
        except _NUMERICAL as err:
            if eq is None:
                raise ConvergenceError(
                    f"the normal equations at the start could not be formed ({err}); "
                    "supply start= coefficients or check the data"
                ) from err
            return stop(pt, False, "stopped where the normal equations failed")
        pending = None
        if kept is None:
            kept = eq.fac.kept  # aliasing is a property of X, found at the start
        if pt.beta is not None and np.any(pt.beta[~kept] != 0.0):
            # a start with values on aliased columns: they are 0 in every later point
            beta0 = np.where(kept, pt.beta, 0.0)
            pt = ev.at(beta0)
            if not (pt.valid and np.isfinite(pt.deviance)):
                raise ConvergenceError(
                    "the start coefficients without their aliased columns give invalid "
                    "fitted values; supply other starting values"
                )
            eq = ev.equations(pt, kept, newton=False)
        delta = eq.step if eq.step is not None else eq.fac.solve(eq.rhs)
        # the first step from mustart regresses z itself; later steps solve for the update
        beta_new = (0.0 if pt.beta is None else pt.beta) + delta
        beta_new[eq.fac.aliased] = 0.0
        with np.errstate(over="ignore", invalid="ignore"):  # beyond the float range: inf
            decrement = None if pt.beta is None else float(eq.rhs @ delta)
        if decrement is not None and fisher_first and not eq.newton:
            fisher_first = decrement < 0.1 * last_decrement
            last_decrement = decrement
        try:
            new, halvings, hit_boundary = _step(ev, beta_new, pt)
        except _NUMERICAL:
            return stop(pt, False, "stopped where a step failed numerically")
        boundary |= hit_boundary
        log.record(new.deviance, halvings)
        if halvings > MAX_HALVINGS:  # no step lowers the deviance: pt is where it stops
            if eq.newton:
                newton_trusted = False  # try again from pt with Fisher's steps
                continue
            ok = decrement is not None and cert.at_noise_floor(decrement, pt.deviance)
            return stop(pt, ok, "" if ok else "stopped where step-halving ran out")
        changed = abs(new.deviance - pt.deviance) / (abs(new.deviance) + 0.1)
        newton_ok = halvings == 0
        proposed = changed < inp.tol and (
            not inp.certify
            or (
                halvings == 0
                and decrement is not None
                and cert.small(decrement, new.deviance, eq.newton or inp.family.canonical)
            )
        )
        pt = new
        # whole Newton-type steps that no longer change the deviance (R's criterion) but
        # are not small: the estimates run off to infinity (separation, a maximum at the
        # edge); after DIVERGING_STEPS of them the run stops, not converged
        exact = eq.newton or inp.family.canonical
        flat = flat + 1 if changed < inp.tol and halvings == 0 and exact and not proposed else 0
        if flat >= DIVERGING_STEPS:
            return stop(pt, False, "stopped where the estimates diverge (separation or an "
                        "optimum at the edge of the parameter space)")  # fmt: skip
        # steps halved to keep the fitted values valid that no longer change the deviance:
        # IRLS is pressed against the edge of the valid region (module boundary)
        pressed = pressed + 1 if hit_boundary and changed < inp.tol and not proposed else 0
        if pressed >= DIVERGING_STEPS:
            return stop(pt, False, "stopped at the edge of the valid region (steps halved to "
                        "keep the fitted values valid no longer lower the deviance)")  # fmt: skip
        if not proposed:
            continue
        if not eq.newton or not inp.certify:
            run = stop(pt, True)
            run.stale = decrement is not None and not cert.small(decrement, pt.deviance, False)
            return run
        try:
            check = ev.equations(pt, kept)  # Fisher's, at the point reached
        except _NUMERICAL:
            return stop(pt, False, "stopped where the normal equations failed")
        fisher_step = check.step if check.step is not None else check.fac.solve(check.rhs)
        fisher_decrement = float(check.rhs @ fisher_step)
        if cert.small(fisher_decrement, pt.deviance, False):
            eq = check  # the covariance at the point reached
            return stop(pt, True)
        pending, newton_trusted = check, False
    return stop(pt, False, f"did not converge in {inp.max_iter} iterations")


def _step(ev: Problem, beta_new: Array, old: Any) -> tuple[Any, int, bool]:
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
        if halvings >= (MAX_HALVINGS if bad else MAX_DESCENT_HALVINGS):
            return ev.at(old.beta), MAX_HALVINGS + 1, boundary
        boundary |= bad
        beta = (beta + old.beta) / 2.0
        halvings += 1


def final_equations(ev: Problem, run: Run) -> Equations:
    """The equations the fit's covariance and working weights come from: as R's, those
    of the last step (at the point it started from), or, when Newton's last step started
    where the weights still differed by more than 1e-8, those at the point reached."""
    if run.stale and run.converged:
        return ev.equations(run.point, run.kept)
    return run.equations


def _initial_point(ev: Problem, start: Array | None, damped: bool = False) -> Any:
    """The point to start from: the given coefficients, or R's mustart (damped: halfway
    to the weighted mean)."""
    fam = ev.settings.family
    if start is None:
        return ev.at_start(damped)
    pt = ev.at(np.asarray(start, dtype=float))
    if not (pt.valid and np.isfinite(pt.deviance)):
        raise ConvergenceError(
            "the supplied start coefficients give invalid fitted values for the "
            f"{fam.name} family with the {fam.link.name} link; supply other starting values"
        )
    return pt


def _first_start(ev: Problem) -> tuple[Any, str]:
    """The given start, or a warm start (a subsample fit) when it gives valid fitted
    values, or R's mustart; and its description."""
    if ev.settings.start is not None:
        return _initial_point(ev, ev.settings.start), "the given start"
    warm = ev.warm_start()
    if warm is not None:
        try:
            return _initial_point(ev, warm), "a subsample fit"
        except ConvergenceError:
            pass
    return _initial_point(ev, None), "R's starting values"


def _restarts(ev: Problem, first: str) -> list[tuple[str, Callable[[], Any]]]:
    """The restarts, in order, each made when it is tried (points may share buffers):
    the nested null model's fit, R's mustart, and a damped start."""
    inp = ev.settings
    out: list[tuple[str, Callable[[], Any]]] = []
    if inp.null_start is not None:
        out.append(("the null model's fit", lambda: _initial_point(ev, inp.null_start)))
    if first != "R's starting values":
        out.append(("R's starting values", lambda: _initial_point(ev, None)))
    out.append(("a damped start", lambda: _initial_point(ev, None, damped=True)))
    if not inp.family.concave:
        for name, mean in (("a least-squares start", False), ("the mean's projection", True)):
            beta = ev.least_squares_start(mean)
            if beta is not None:
                out.append((name, partial(_initial_point, ev, beta)))
    return out


# perturbations of the best estimate tried for a likelihood that is not concave: relative
# scale, and a fixed seed so that a fit is reproducible
_PERTURBATIONS = (0.3, 1.0)
_SEED = 20261207


def _perturbed(ev: Problem, best: Run) -> list[tuple[str, Callable[[], Any]]]:
    """Starts around the best estimate (beta + s (|beta| + 0.1) N(0, 1) on kept columns)."""
    beta = best.point.beta
    if beta is None:
        return []
    rng = np.random.default_rng(_SEED)
    out: list[tuple[str, Callable[[], Any]]] = []
    for s in _PERTURBATIONS:
        b = beta + best.kept * s * (np.abs(beta) + 0.1) * rng.standard_normal(beta.shape)
        out.append((f"a perturbed start ({s:g})", partial(_initial_point, ev, b)))
    return out


def _detached(run: Run) -> Run:
    """The run with its own copies of the evaluator's buffers (a restart overwrites them)."""
    W = run.equations.W
    eq = dataclasses.replace(run.equations, W=None if W is None else W.copy())
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


def solve(ev: Problem) -> Run:
    """IRLS from the first start, then the restarts when it is not certified (module
    irls), then the constrained method when the maximum may be on the edge of the valid
    region (module boundary); warns when no run is certified, and at a boundary."""
    inp = ev.settings
    first = "R's starting values"
    best: Run | None = None
    try:
        pt, first = _first_start(ev)
        best = _iterate(ev, pt, ev.certifier(), None)
    except ConvergenceError as err:
        if not inp.certify:
            raise
        failure: ConvergenceError | None = err
    else:
        failure = None
    tried, reason = [first], ""
    if inp.certify and best is not None and inp.explore:
        # a likelihood that is not concave in eta can have several local maxima: every
        # start is tried, and the fit is certified only if none goes lower
        best, tried, reason = _restarted(ev, ev.certifier(), best, first, None, every=True)
    elif inp.certify and (best is None or not _acceptable(best, inp.null_deviance)):
        if best is not None and _still_descending(best, inp.null_deviance):
            # the likelihood rises towards a limit at infinity (separation) or slowly:
            # another start would follow the same path
            best.converged, reason = False, best.reason
        else:
            best, tried, reason = _restarted(ev, ev.certifier(), best, first, failure)
    assert best is not None
    if reason and best.boundary:
        edge = ev.edge_fit(best)
        # a certified maximum at the margin kept from the edge may cost a deviance
        # below R's criterion over a stalled point nearer the edge
        if edge is not None and (
            edge.point.deviance <= best.point.deviance
            or (edge.converged and _lowest(edge, best.point.deviance))
        ):
            best = edge
            tried.append("the constrained maximum at the edge")
            reason = "" if edge.converged else edge.reason
    if reason:
        _warn_not_converged(tried, reason, best.point.deviance, inp.null_deviance)
    if best.at_edge and best.converged:
        warnings.warn(
            f"the maximum of the likelihood is on the edge of the valid region: "
            f"{best.at_edge} fitted value(s) at the bound of their range (R's glm stops "
            "there with 'algorithm stopped at boundary value'); their standard errors "
            "and those of the estimates they constrain are not reliable",
            BoundaryWarning,
            stacklevel=4,
        )
    elif best.boundary:
        warnings.warn(
            "IRLS stopped at a boundary value (steps were halved to keep the fitted values "
            "valid); the estimates may be on the edge of the parameter space",
            BoundaryWarning,
            stacklevel=4,
        )
    return best


def _still_descending(run: Run, null_deviance: float | None) -> bool:
    """A run stopped by the iteration cap whose last steps were whole and descending,
    better than the null model."""
    halvings = run.log.halvings[-5:]
    better = null_deviance is None or run.point.deviance <= null_deviance
    stalled = run.reason.startswith(("did not", "stopped where the estimates diverge"))
    return run.n_iter >= 5 and better and stalled and not any(halvings)


def _restarted(
    ev: Problem,
    cert: Certifier,
    best: Run | None,
    first: str,
    failure: ConvergenceError | None,
    every: bool = False,
) -> tuple[Run, list[str], str]:
    """The best of ``best`` and the restarts (tried in order until one is certified, or
    all of them with ``every``), the starts tried, and why the best is not certified
    ("" when it is): not certified, or another start went lower.  Re-raises ``failure``
    when no start gave any fit."""
    inp = ev.settings
    tried = [first]
    kept = None if best is None else best.kept
    if best is not None:
        best = _detached(best)
    lowest = np.inf if best is None else best.point.deviance
    starts = _restarts(ev, first)
    if every and best is not None:
        starts += _perturbed(ev, best)
    for name, make_start in starts:
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
        if not every and _acceptable(run, inp.null_deviance) and _lowest(run, lowest):
            return best, tried, ""  # type: ignore[return-value]
    if best is None:
        assert failure is not None
        raise failure
    if _acceptable(best, inp.null_deviance) and _lowest(best, lowest):
        return best, tried, ""
    if best.converged and not _lowest(best, lowest):
        reason = "reached a point that another start improves on"
    else:
        reason = best.reason or "ended worse than the null model"
    best.converged = False
    return best, tried, reason


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
        stacklevel=5,
    )
