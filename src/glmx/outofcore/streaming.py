"""Streaming IRLS: R's ``glm.fit`` iteration with one pass over the chunks per step.

A pass at a point (coefficients beta, or R's ``mustart`` at the start) maps every chunk
to its partial sums and adds them up (:class:`Partials`): the deviance, whether eta and
mu are valid, and the next step's normal equations

    X'WX  and  X'W r  (X'W z at the start, z = eta - offset + r),
    W = w mu_eta^2 / V(mu),  r = (y - mu) / mu_eta.

So a step is: solve, then one pass at the new beta, which gives its deviance (accept or
halve, as :mod:`glmx.solvers.irls`) and, if accepted, the next normal equations.  A
halving costs one more pass.  No vector of length n is kept: memory is one chunk plus
p x p.  :func:`chunk_partials` (one chunk to its sums) and the sum of Partials are the
map and the reduction; a :class:`RowPasses` runs them, in a loop over chunks or as tasks
over the partitions of a Dask DataFrame (:mod:`glmx.outofcore.daskbackend`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar

import numpy as np

from glmx.design.matrix import as_design
from glmx.design.parallel import single_threaded_blas
from glmx.errors import ConvergenceError
from glmx.families.base import Family
from glmx.outofcore.chunkdesign import ChunkData
from glmx.solvers.elementwise import fitted_and_deviance, working_weights_and_residuals
from glmx.solvers.irls import MAX_HALVINGS, warn_outcome
from glmx.solvers.linalg import (
    EigenFactorization,
    Factorization,
    factorize,
    factorize_kept,
    gram_and_rmatvec,
)
from glmx.solvers.state import Array, FitLog, IRLSInputs

# a chunk's model rows and the design the fit uses for them (X, or a column of ones)
Design = Callable[[ChunkData], object]
# a chunk's starting means (R's mustart) when the fit starts without coefficients
StartMu = Callable[[ChunkData, IRLSInputs], Array]


class Summable(Protocol):
    def __add__(self: S, other: S, /) -> S: ...


S = TypeVar("S", bound=Summable)


class RowPasses(Protocol):
    """Runs passes over the data: ``map_sum(fn)`` applies ``fn`` to every chunk's model
    rows and returns the sum of the results (None when no chunk has rows).  The first
    pass also checks the values (response range, weights, design)."""

    def map_sum(self, fn: Callable[[ChunkData], S]) -> S | None: ...


@dataclass(frozen=True)
class Point:
    """Where a pass evaluates: coefficients ``beta`` (aliased columns 0), or None for
    the start, whose eta is g(mustart)."""

    beta: Array | None


@dataclass
class Partials:
    """Sums over rows of one pass; ``+`` adds two chunks' sums (the reduction)."""

    gram: Array
    rhs: Array
    deviance: float
    valid: bool
    n_rows: int
    n_positive: int  # rows with positive weight (R's nobs)
    sum_w: float  # sum of the prior weights
    sum_wy: float  # sum of w y (the null model's weighted mean)

    def __add__(self, other: Partials) -> Partials:
        return Partials(
            self.gram + other.gram,
            self.rhs + other.rhs,
            self.deviance + other.deviance,
            self.valid and other.valid,
            self.n_rows + other.n_rows,
            self.n_positive + other.n_positive,
            self.sum_w + other.sum_w,
            self.sum_wy + other.sum_wy,
        )


def chunk_inputs(data: ChunkData, X: object, family: Family) -> IRLSInputs:
    """glmx's per-row solver inputs for one chunk (unit frequency weights)."""
    n = data.y.shape[0]
    design = as_design(X)
    return IRLSInputs(design, data.y, data.weights, np.ones(n), data.offset, family)


def linear_predictor(
    inp: IRLSInputs, point: Point, start_mu: StartMu, data: ChunkData
) -> tuple[Array, Array]:
    """eta at the point (X beta + offset, or g(mustart)) and what the working response
    adds to the working residual (the offset-free eta at the start, 0 otherwise)."""
    if point.beta is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            eta = inp.family.link.link(start_mu(data, inp))
        return eta, eta - inp.offset
    return inp.X.matvec(point.beta) + inp.offset, np.zeros(0)


def chunk_partials(
    data: ChunkData, design: Design, family: Family, point: Point, start_mu: StartMu
) -> Partials:
    """One chunk's deviance, validity and normal equations at a point (the map)."""
    inp = chunk_inputs(data, design(data), family)
    eta, z_base = linear_predictor(inp, point, start_mu, data)
    mu, dev, valid = fitted_and_deviance(inp, eta)
    valid = valid and bool(np.all(np.isfinite(eta)))
    W, r = working_weights_and_residuals(inp, eta, mu)
    v = W * (z_base + r) if point.beta is None else W * r
    # X'WX and X'v of this chunk (p x p: the design's own blocked Gram, X'v in the same
    # pass over X where the design offers it)
    gram, rhs = gram_and_rmatvec(inp.X, W, v)
    w = data.weights
    return Partials(
        gram, rhs, dev, valid, eta.shape[0],
        int(np.count_nonzero(w > 0)), float(np.sum(w)), float(w @ data.y),
    )  # fmt: skip


def one_pass(
    rows: RowPasses, design: Design, family: Family, point: Point, start_mu: StartMu
) -> Partials:
    """The sum of chunk_partials over every chunk: one pass over the data."""
    fn = partial(chunk_partials, design=design, family=family, point=point, start_mu=start_mu)
    total = rows.map_sum(fn)
    if total is None:
        raise ConvergenceError("the data yielded no rows to fit")
    return total


@dataclass(frozen=True)
class StreamingResult:
    """The streaming fit's estimates (as :class:`glmx.solvers.state.IRLSResult`, without
    the n-vectors): ``last_point`` is where the last WLS step's weights were computed
    (R's covariance and dispersion use them)."""

    coef: Array
    aliased: np.ndarray
    beta: Array  # coef with 0 for aliased columns
    deviance: float
    cov_unscaled: Array
    last_point: Point
    totals: Partials  # the last pass's sums (rows, weights)
    n_iter: int
    n_passes: int
    converged: bool
    boundary: bool
    log: FitLog


@single_threaded_blas()
def streaming_irls(
    rows: RowPasses,
    design: Design,
    family: Family,
    start_mu: StartMu,
    tol: float,
    max_iter: int,
    progress: Callable[[int, float], None] | None = None,
) -> StreamingResult:
    """R's IRLS from mustart, one pass per step (see the module docstring);
    ``progress(passes, deviance)`` is called after each step.  BLAS runs on one thread
    meanwhile (the passes' row blocks use the cores: :mod:`glmx.design.parallel`)."""
    passes = 1
    here = one_pass(rows, design, family, Point(None), start_mu)
    if not (np.isfinite(here.deviance) and here.valid):
        raise ConvergenceError(
            f"cannot find valid starting values for the {family.name} family with the "
            f"{family.link.name} link"
        )
    p = here.rhs.shape[0]
    point, dev_old = Point(None), here.deviance
    log = FitLog()
    structural = None
    converged = boundary = False
    n_iter = 0
    last_point = point
    fac: Factorization | EigenFactorization
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        fac = factorize(here.gram)
        if structural is None:
            structural = fac.aliased  # aliasing is a property of X, found at the start
        elif (fac.aliased & ~structural).any():
            fac = factorize_kept(here.gram, ~structural)  # as irls: boundary weights
        base = np.zeros(p) if point.beta is None else point.beta
        beta_new = base + fac.solve(here.rhs)
        beta_new[fac.aliased] = 0.0
        last_point = point
        beta, nxt, halvings, bad_steps, used = _step(
            rows, design, family, start_mu, beta_new, point.beta, dev_old
        )
        passes += used
        boundary |= bad_steps
        dev = nxt.deviance
        log.record(dev, halvings)
        point, here = Point(beta), nxt
        if progress is not None:
            progress(passes, dev)
        if abs(dev - dev_old) / (abs(dev) + 0.1) < tol:
            converged = True
            break
        dev_old = dev
    warn_outcome(converged, boundary, max_iter)
    assert point.beta is not None
    return StreamingResult(
        coef=np.where(fac.aliased, np.nan, point.beta),
        aliased=fac.aliased,
        beta=point.beta,
        deviance=here.deviance,
        cov_unscaled=fac.inverse(),  # (X'WX)^{-1} of the last step, as R
        last_point=last_point,
        totals=here,
        n_iter=n_iter,
        n_passes=passes,
        converged=converged,
        boundary=boundary,
        log=log,
    )


def _step(
    rows: RowPasses,
    design: Design,
    family: Family,
    start_mu: StartMu,
    beta_new: Array,
    coef_old: Array | None,
    dev_old: float,
) -> tuple[Array, Partials, int, bool, int]:
    """A pass at the new beta, halving toward ``coef_old`` (one more pass each) while
    the deviance is not finite, eta/mu are invalid or the deviance went up.  Returns
    beta, its pass, the halvings, whether any was for validity, and the passes used."""
    beta, halvings, boundary, used = beta_new, 0, False, 0
    while True:
        part = one_pass(rows, design, family, Point(beta), start_mu)
        used += 1
        dev = part.deviance
        bad = not np.isfinite(dev) or not part.valid
        worse = not bad and coef_old is not None and dev - dev_old > 1e-12 * (abs(dev_old) + 0.1)
        if not (bad or worse):
            return beta, part, halvings, boundary, used
        if coef_old is None:
            raise ConvergenceError(
                "no valid set of coefficients has been found from the starting values"
            )
        if halvings >= MAX_HALVINGS:
            if bad:
                raise ConvergenceError(
                    "IRLS could not find a valid step (fitted values outside the family's "
                    "range); try another link"
                )
            part = one_pass(rows, design, family, Point(coef_old), start_mu)
            return coef_old, part, halvings, boundary, used + 1
        boundary |= bad
        beta = (beta + coef_old) / 2.0
        halvings += 1


__all__ = [
    "Partials",
    "Point",
    "RowPasses",
    "StreamingResult",
    "chunk_partials",
    "one_pass",
    "streaming_irls",
]
