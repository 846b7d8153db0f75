"""Streamed IRLS: glmx's driver (:mod:`glmx.solvers.driver`) with one pass over the
chunks per point.

A pass at a point (coefficients beta, or R's ``mustart`` at the start) maps every chunk
to its partial sums and adds them up (:class:`Partials`): the deviance, whether eta and
mu are valid, and the normal equations of a step from it

    X'WX  and  X'W r  (X'W z at the start, z = eta - offset + r),
    W = w mu_eta^2 / V(mu),  r = (y - mu) / mu_eta,

with, for a non-canonical link, the observed information X'W_obs X for Newton's step.
So a step is: solve, then one pass at the new beta, which gives its deviance (accept or
halve) and, if accepted, the next normal equations; the iteration, certificate and
restarts are the in-memory fit's.  A halving costs one more pass.  No vector of length n
is kept: memory is one chunk plus p x p.  :func:`chunk_partials` (one chunk to its sums)
and the sum of Partials are the map and the reduction; a :class:`RowPasses` runs them, in
a loop over chunks or as tasks over the partitions of a Dask DataFrame
(:mod:`glmx.outofcore.daskbackend`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar

import numpy as np

from glmx.allocator import reuse_freed_memory
from glmx.design.matrix import as_design
from glmx.design.parallel import single_threaded_blas
from glmx.errors import ConvergenceError
from glmx.families.base import Family
from glmx.outofcore.chunkdesign import ChunkData
from glmx.solvers.certify import Certifier
from glmx.solvers.driver import Run, Settings, final_equations, solve
from glmx.solvers.elementwise import (
    fitted_and_deviance,
    observed_weights,
    working_weights_and_residuals,
)
from glmx.solvers.linalg import (
    EigenFactorization,
    Factorization,
    factorize,
    factorize_kept,
    factorize_on,
    gram_and_rmatvec,
    signed_gram,
)
from glmx.solvers.state import Array, Equations, FitLog, IRLSInputs

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
    # the observed information X'W_obs X (Newton's step; None for a canonical link or at
    # the start, or when a chunk could not form it)
    gram_obs: Array | None = None

    def __add__(self, other: Partials) -> Partials:
        obs = (
            None
            if self.gram_obs is None or other.gram_obs is None
            else self.gram_obs + other.gram_obs
        )
        return Partials(
            self.gram + other.gram,
            self.rhs + other.rhs,
            self.deviance + other.deviance,
            self.valid and other.valid,
            self.n_rows + other.n_rows,
            self.n_positive + other.n_positive,
            self.sum_w + other.sum_w,
            self.sum_wy + other.sum_wy,
            obs,
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
    gram_obs = None
    if point.beta is not None and not family.canonical:
        with np.errstate(all="ignore"):
            W_obs = observed_weights(inp, eta, mu, W, out=np.empty_like(W))
        gram_obs = signed_gram(inp.X, W_obs, max_negative=1.0)
    w = data.weights
    return Partials(
        gram, rhs, dev, valid, eta.shape[0],
        int(np.count_nonzero(w > 0)), float(np.sum(w)), float(w @ data.y), gram_obs,
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


@dataclass(frozen=True)
class PassPoint:
    """A point of the streamed fit: its coefficients and the sums of its pass (the
    deviance, validity and the normal equations of a step from it)."""

    beta: Array | None
    sums: Partials

    @property
    def deviance(self) -> float:
        return self.sums.deviance

    @property
    def valid(self) -> bool:
        return self.sums.valid and bool(np.isfinite(self.sums.deviance))

    def detached(self) -> PassPoint:
        return self  # no buffers


class PassEvaluator:
    """The driver's problem (glmx.solvers.driver.Problem) for a streamed fit: a point is
    one pass over the data, which also sums the normal equations of a step from it."""

    def __init__(
        self,
        rows: RowPasses,
        design: Design,
        family: Family,
        start_mu: StartMu,
        tol: float,
        max_iter: int,
        progress: Callable[[int, float], None] | None,
    ) -> None:
        self.rows, self.design, self.family, self.start_mu = rows, design, family, start_mu
        self._settings = Settings(family, tol, max_iter)
        self.progress = progress
        self.passes = 0
        self.totals: Partials | None = None

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def newton_available(self) -> bool:
        return not self.family.canonical

    @property
    def fisher_is_cheap(self) -> bool:
        # the in-memory fit's path (a pass costs the same either way)
        return self.family.constant_weights

    def certifier(self) -> Certifier:
        if self.totals is None:
            self.totals = self._pass(Point(None), self.start_mu)
        n, p = self.totals.n_positive, self.totals.rhs.shape[0]
        return Certifier(
            self._settings.tol,
            self.family.fixed_dispersion,
            max(float(n - p), 1.0),
        )

    def warm_start(self) -> Array | None:
        return None

    def least_squares_start(self, mean: bool = False) -> Array | None:
        return None

    def _pass(self, point: Point, start_mu: StartMu) -> Partials:
        sums = one_pass(self.rows, self.design, self.family, point, start_mu)
        self.passes += 1
        self.totals = sums
        return sums

    def at(self, beta: Array) -> PassPoint:
        pt = PassPoint(beta, self._pass(Point(beta), self.start_mu))
        if self.progress is not None:
            self.progress(self.passes, pt.deviance)
        return pt

    def at_start(self, damped: bool = False) -> PassPoint:
        """R's start (or halfway from mustart to the weighted mean of y)."""
        start_mu = self.start_mu
        if damped and self.totals is not None and self.totals.sum_w > 0:
            ybar = self.totals.sum_wy / self.totals.sum_w
            start_mu = partial(_damped_mu, start_mu=self.start_mu, ybar=ybar)
        pt = PassPoint(None, self._pass(Point(None), start_mu))
        if not pt.valid:
            raise ConvergenceError(
                f"cannot find valid starting values for the {self.family.name} family with "
                f"the {self.family.link.name} link"
            )
        return pt

    def edge_fit(self, run: Run) -> Run | None:
        """No constrained method over passes: a streamed fit stops where IRLS stops."""
        return None

    def equations(
        self, pt: PassPoint, kept: np.ndarray | None = None, newton: bool = False
    ) -> Equations:
        sums = pt.sums
        if newton and pt.beta is not None and kept is not None and sums.gram_obs is not None:
            fac_obs = factorize_on(sums.gram_obs, kept)
            if fac_obs is not None:
                return Equations(fac_obs, sums.rhs, None, True, pt)
        return Equations(self._fisher_factor(sums.gram, kept), sums.rhs, None, False, pt)

    def fisher(self, eq: Equations) -> Factorization | EigenFactorization:
        if not eq.newton:
            return eq.fac
        return self._fisher_factor(eq.at.sums.gram, eq.fac.kept)

    @staticmethod
    def _fisher_factor(gram: Array, kept: np.ndarray | None) -> Factorization | EigenFactorization:
        fac = factorize(gram)
        if kept is not None and (fac.aliased & kept).any():
            return factorize_kept(gram, kept)  # as irls: boundary weights
        return fac


def _damped_mu(data: ChunkData, inp: IRLSInputs, start_mu: StartMu, ybar: float) -> Array:
    return (start_mu(data, inp) + ybar) / 2.0


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
    """IRLS by glmx's driver (glmx.solvers.driver: the same iteration, certificate and
    restarts as an in-memory fit), one pass per point; ``progress(passes, deviance)`` is
    called after each pass at coefficients.  BLAS runs on one thread meanwhile (the passes' row blocks
    use the cores: :mod:`glmx.design.parallel`)."""
    reuse_freed_memory()  # chunk-sized temporaries reused, not faulted in
    ev = PassEvaluator(rows, design, family, start_mu, tol, max_iter, progress)
    run = solve(ev)
    eq = final_equations(ev, run)
    fac = ev.fisher(eq)
    beta = run.point.beta
    assert beta is not None
    return StreamingResult(
        coef=np.where(fac.aliased, np.nan, beta),
        aliased=fac.aliased,
        beta=beta,
        deviance=run.point.deviance,
        cov_unscaled=fac.inverse(),  # (X'WX)^{-1} where the covariance's weights are
        last_point=Point(eq.at.beta),
        totals=run.point.sums,
        n_iter=run.n_iter,
        n_passes=ev.passes,
        converged=run.converged,
        boundary=run.boundary,
        log=run.log,
    )


__all__ = [
    "Partials",
    "Point",
    "RowPasses",
    "StreamingResult",
    "chunk_partials",
    "one_pass",
    "streaming_irls",
]
