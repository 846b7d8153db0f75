"""Frozen solver inputs, the iteration log and the solver's output."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from glmx.design.matrix import DesignMatrix
from glmx.families.base import DevianceFunction, Family
from glmx.solvers.linalg import EigenFactorization, Factorization
from glmx.vectors import is_constant

Array = NDArray[np.float64]


@dataclass(frozen=True)
class IRLSInputs:
    """Everything IRLS needs; never modified by the solver.

    ``weights`` are prior weights (R's), ``freq_weights`` case counts; the deviance and
    working weights use their product.  ``start`` are coefficients; ``mustart`` fitted
    means to start from (R's ``mustart``), used when ``start`` is None.
    """

    X: DesignMatrix
    y: Array
    weights: Array
    freq_weights: Array
    offset: Array
    family: Family
    start: Array | None = None
    mustart: Array | None = None
    tol: float = 1e-10
    max_iter: int = 100
    # the nested null model (intercept-only, or offset-only without an intercept): its
    # coefficients in this design and its deviance; a fit must do no worse (None: unknown)
    null_start: Array | None = None
    null_deviance: float | None = None
    # False: stop at R's criterion alone, with no restarts (a start for another fit)
    certify: bool = True

    @cached_property
    def total_weights(self) -> Array:
        if is_constant(self.freq_weights, 1.0):
            return self.weights
        if is_constant(self.weights, 1.0):
            return self.freq_weights
        return self.weights * self.freq_weights

    @cached_property
    def unit_weights(self) -> bool:
        """Whether every total weight is 1 (the default weights)."""
        return is_constant(self.total_weights, 1.0)

    @cached_property
    def all_weights_positive(self) -> bool:
        wt = self.total_weights
        return bool(np.all((wt[:1] if is_constant(wt) else wt) > 0))

    @cached_property
    def deviance(self) -> DevianceFunction:
        """(mu, lo=0, hi=None) -> the deviance of rows lo:hi (the family's, prepared once
        for this y)."""
        return self.family.deviance_function(self.y, self.total_weights)


@dataclass
class FitLog:
    """One entry per IRLS iteration: deviance after the step, step-halvings taken and
    the iteration's wall-clock seconds (the first counted from the log's creation, after
    the starting point: the set-up before the loop is not an iteration)."""

    deviance: list[float] = field(default_factory=list)
    halvings: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    _last: float = field(default_factory=time.perf_counter, repr=False, compare=False)

    def record(self, deviance: float, halvings: int) -> None:
        now = time.perf_counter()
        self.deviance.append(deviance)
        self.halvings.append(halvings)
        self.seconds.append(now - self._last)
        self._last = now


@dataclass(frozen=True)
class IRLSResult:
    """Estimates at the final iterate.

    ``coef`` has NaN for aliased columns.  As R's ``glm.fit``, ``working_weights`` W and
    ``cov_unscaled`` = (X'WX)^{-1} (kept columns) are those of the last WLS step, i.e. at
    the mu the last step started from; multiply by the dispersion for the covariance.
    """

    coef: Array
    aliased: NDArray[np.bool_]
    eta: Array
    mu: Array
    deviance: float
    working_weights: Array
    cov_unscaled: Array
    n_iter: int
    converged: bool
    boundary: bool
    log: FitLog


@dataclass(frozen=True)
class Equations:
    """The normal equations of the step from a point: ``fac`` factors the curvature
    (Fisher's X'WX, or for a Newton step the observed information X'W_obs X), ``rhs`` is
    X'Wc (``step``, when given, the step solved by a QR), ``W`` Fisher's working weights (R's, for the covariance; None for a streamed
    fit, which keeps no n-vector), ``newton`` whether ``fac`` is the observed information
    and ``at`` the point (a streamed fit's, whose pass holds the Grams)."""

    fac: Factorization | EigenFactorization
    rhs: Array
    W: Array | None
    newton: bool
    at: Any = None
    step: Array | None = None  # the step itself, when solved otherwise than by fac (QR)
