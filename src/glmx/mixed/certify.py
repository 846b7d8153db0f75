"""A certified optimum of a mixed model's deviance: checks where the optimizer stopped,
continuations and restarts.

An optimizer's stopping point is accepted only when the deviance there is certified as a
minimum over the feasible region of theta (each relative covariance factor T lower
triangular with a non-negative diagonal):

- in the free parameters (those off their bound), the gradient is small after scaling by
  the Hessian (lme4's ``checkConv``: |H^-1/2 g| below 0.002) and the Hessian is positive
  semi-definite;
- at a bound (a diagonal element of T at zero: a variance at 0, or a correlation at +-1),
  no step into the feasible region lowers the deviance.  T's column j can change sign
  without changing Sigma = T T' when T_jj = 0, and the two signs lead into opposite
  correlations as T_jj grows: both are probed.  The deviance depends on a lone standard
  deviation through its square near zero, so steps of a few sizes are probed rather than a
  derivative.

Where a check finds a better point, the optimizer continues from there.  A fit that ends on
a boundary is also restarted from other starts (lme4's default theta, a moment-based
variance decomposition, and the stopping point moved off the boundary with each sign of the
correlations): the best end point is kept, and every attempt is recorded.  Interior fits pay
only for the derivatives, which lme4's checks need anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from glmx.mixed.optimize import (
    GRAD_TOL,
    SINGULAR_TOL,
    OptimizeResult,
)
from glmx.mixed.reterms import ReTerms, lower_tri

Array = NDArray[np.float64]
Derivatives = Callable[[Array], tuple[Array, Array]]
Run = Callable[[Array], OptimizeResult]

PROBE_STEPS = (0.01, 0.1, 0.5)  # trial values of a diagonal element of T at its bound
LIFT = 0.5  # a diagonal element at its bound is restarted from here
MAX_CONTINUATIONS = 4


@dataclass(frozen=True)
class Attempt:
    """One run of the optimizer: where it started, where it ended."""

    start: str  # "default", "user", "moment", "off boundary", "off boundary, sign flipped",...
    objective: float
    n_feval: int
    boundary: tuple[str, ...]  # theta names at their bound where it ended


@dataclass(frozen=True)
class OptimizerInfo:
    """What the optimizer did (lme4's ``optinfo``): method, evaluations, every attempt,
    and whether the end point is a certified minimum."""

    method: str
    n_feval: int  # deviance evaluations by the optimizer, all attempts
    n_check: int  # deviance evaluations by the certificate (probes, derivatives)
    certified: bool
    message: str
    attempts: tuple[Attempt, ...]
    boundary: tuple[str, ...]  # theta names at their bound at the optimum

    @property
    def n_restarts(self) -> int:
        return len(self.attempts) - 1


@dataclass(frozen=True)
class Layout:
    """Where T's diagonal elements sit in theta, with the entries below each in its column;
    theta may be followed by free parameters (a GLMM's beta)."""

    n_theta: int
    names: tuple[str, ...]
    diagonals: tuple[tuple[int, tuple[int, ...]], ...]
    terms: tuple[tuple[int, ...], ...]  # theta indices of each term

    @classmethod
    def of(cls, rt: ReTerms) -> Layout:
        diagonals = []
        terms = []
        for i, t in enumerate(rt.terms):
            off = int(rt.theta_offsets[i])
            rows, cols = lower_tri(t.k)
            terms.append(tuple(range(off, off + t.n_theta)))
            for j in range(t.k):
                d = off + int(np.flatnonzero((rows == j) & (cols == j))[0])
                below = tuple(off + int(b) for b in np.flatnonzero((cols == j) & (rows > j)))
                diagonals.append((d, below))
        return cls(rt.n_theta, tuple(rt.theta_names), tuple(diagonals), tuple(terms))

    def at_bound(self, x: Array) -> list[int]:
        return [d for d, _ in self.diagonals if x[d] < SINGULAR_TOL]

    def boundary_names(self, x: Array) -> tuple[str, ...]:
        return tuple(self.names[d] for d in self.at_bound(x))

    def flip_column(self, x: Array, d: int) -> Array:
        z = x.copy()
        for d_, below in self.diagonals:
            if d_ == d:
                z[list(below)] *= -1.0
        return z

    def term_of(self, d: int) -> tuple[int, ...]:
        return next(t for t in self.terms if d in t)


def _better(f_new: float, f_old: float) -> bool:
    return f_new < f_old - 1e-10 * (abs(f_old) + 1.0)


def boundary_probe(fun: Callable[[Array], float], x: Array, fx: float, lay: Layout) -> Array | None:
    """A feasible point next to x with a lower deviance, stepping each diagonal element of T
    at its bound into the region (with T's column in either sign), or None."""
    for d in lay.at_bound(x):
        variants = [x]
        below = dict(lay.diagonals)[d]
        if below and np.any(np.abs(x[list(below)]) > 0):
            variants.append(lay.flip_column(x, d))
        for v in variants:
            for h in PROBE_STEPS:
                z = v.copy()
                z[d] = h
                if _better(fun(z), fx):
                    return z
    return None


def interior_step(x: Array, g: Array, H: Array, lower: Array, lay: Layout) -> Array | None:
    """A Newton step in the free parameters when lme4's scaled-gradient or Hessian check
    fails there (None when both hold): the certificate's test for an interior stop."""
    free = np.ones(x.size, dtype=bool)
    free[lay.at_bound(x)] = False
    if not free.any() or not (np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
        return None
    gf, Hf = g[free], H[np.ix_(free, free)]
    Hf = (Hf + Hf.T) / 2.0
    try:
        R = np.linalg.cholesky(Hf).T
        scaled = np.linalg.solve(R, gf)
        if np.max(np.minimum(np.abs(scaled), np.abs(gf))) <= GRAD_TOL:
            return None
        step = -np.linalg.solve(Hf, gf)
    except np.linalg.LinAlgError:  # not positive definite: a descent step along -g
        ev = np.linalg.eigvalsh(Hf)
        if ev[0] >= -1e-6 * max(abs(ev[-1]), 1.0) and np.max(np.abs(gf)) <= GRAD_TOL:
            return None
        step = -0.1 * gf / max(float(np.linalg.norm(gf)), 1e-12)
    z = x.copy()
    z[free] = x[free] + step
    return np.maximum(z, lower)


def restart_starts(x: Array, lay: Layout) -> list[tuple[str, Array]]:
    """The stopping point moved off the boundary (each diagonal element at its bound set to
    LIFT), as it is and with the other sign of the affected terms' correlations."""
    bound = lay.at_bound(x)
    if not bound:
        return []
    lifted = x.copy()
    lifted[bound] = LIFT
    flipped = lifted.copy()
    for d in bound:
        for i in lay.term_of(d):
            if i not in dict(lay.diagonals):
                flipped[i] = -flipped[i]
    out = [("off boundary", lifted)]
    if not np.array_equal(flipped, lifted):
        out.append(("off boundary, correlations of the other sign", flipped))
    column = lifted.copy()
    for d in bound:
        column = lay.flip_column(column, d)
    if not any(np.array_equal(column, s) for _, s in out):
        out.append(("off boundary, columns of T of the other sign", column))
    return out


@dataclass
class Certified:
    result: OptimizeResult
    info: OptimizerInfo
    gradient: Array | None
    hessian: Array | None


def certified_minimum(
    run: Run,
    fun: Callable[[Array], float],
    derivatives: Derivatives | None,
    x0: Array,
    lower: Array,
    lay: Layout,
    method: str,
    start_label: str = "default",
    other_starts: Callable[[Array], Sequence[tuple[str, Array]]] | None = None,
    first: OptimizeResult | None = None,
) -> Certified:
    """Run the optimizer from x0, then certify, continue and restart as the module says.

    ``run(x)`` optimizes from x; ``fun`` is the deviance (its calls here are the
    certificate's); ``derivatives(x)`` gives lme4's finite-difference gradient and Hessian
    (None: no interior check, as for lme4's nAGQ = 0).  ``other_starts`` are tried only
    when a fit ends on a boundary (made on demand from the best point so far); each is a
    full parameter vector.  ``first``: the first run's result when the caller made it."""
    n_check = 0

    def probe_fun(x: Array) -> float:
        nonlocal n_check
        n_check += 1
        return fun(x)

    attempts: list[Attempt] = []

    def attempt(label: str, x: Array) -> OptimizeResult:
        r = run(x)
        attempts.append(Attempt(label, float(r.fun), r.n_feval, lay.boundary_names(r.x)))
        return r

    if first is None:
        best = attempt(start_label, x0)
    else:
        best = first
        attempts.append(
            Attempt(start_label, float(first.fun), first.n_feval, lay.boundary_names(first.x))
        )
    restarted = False
    certified = False
    message = ""
    g: Array | None = None
    H: Array | None = None
    for _ in range(MAX_CONTINUATIONS + 1):
        if lay.at_bound(best.x) and not restarted:
            restarted = True
            more = other_starts(best.x) if other_starts is not None else []
            starts = [*more, *restart_starts(best.x, lay)]
            for label, s in starts:
                r = attempt(label, np.maximum(s, lower))
                if _better(r.fun, best.fun):
                    best = r
        z = boundary_probe(probe_fun, best.x, best.fun, lay)
        if z is None and derivatives is not None:
            g, H = derivatives(best.x)
            n_check += _deriv12_cost(best.x.size)
            step = interior_step(best.x, g, H, lower, lay)
            if step is not None:
                fz = probe_fun(step)
                z = step if _better(fz, best.fun) else best.x
                message = "scaled gradient or Hessian check failed at the optimizer's end point"
        if z is None:
            certified = True
            message = "certified: no feasible direction lowers the deviance"
            break
        r = attempt("continued from a better point found by the checks", z)
        if not _better(r.fun, best.fun) and r.fun >= best.fun:
            if np.array_equal(z, best.x):
                break  # a continuation from the stopping point itself found nothing
            # the probe's own point was better than where the run ended: keep that
        if r.fun < best.fun:
            best = r
        g = H = None
    if not certified and not message:
        message = "the certificate's continuations did not settle"
    info = OptimizerInfo(
        method=method,
        n_feval=sum(a.n_feval for a in attempts),
        n_check=n_check,
        certified=certified and best.converged,
        message=message if best.converged else best.message,
        attempts=tuple(attempts),
        boundary=lay.boundary_names(best.x),
    )
    return Certified(best, info, g, H)


def _deriv12_cost(nx: int) -> int:
    """Deviance evaluations of lme4's deriv12 (central differences, pairs for H)."""
    return 1 + 2 * nx + 4 * (nx * (nx - 1) // 2)
