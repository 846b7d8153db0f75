"""The pass after convergence: the fit statistics R's ``glm``/``summary.glm`` report that
are sums over rows at the final estimates.

* the dispersion numerator sum(W r^2), with the working weights W of the last WLS step
  and the working residuals r at the estimates (R's ``summary.glm``);
* Pearson's chi^2, sum(w (y - mu)^2 / V(mu));
* the log-likelihood, the family's ``loglik`` summed over chunks, each chunk given its
  share of the total deviance (the families' ML scale estimates are the total deviance
  over the total count (gaussian) or total weight (Gamma, inverse gaussian), so each
  chunk's formula then uses the global scale);
* the null deviance at a constant mean (the weighted mean of y with an intercept, or
  g^{-1}(offset) without one);
* the smallest and largest deviance residual and the boundary counts of R's warnings.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from glmx.design.parallel import single_threaded_blas
from glmx.diagnostics.residuals import residuals
from glmx.families.base import Family
from glmx.families.exponential import Binomial, Gaussian, Poisson
from glmx.families.links import EPS
from glmx.outofcore.chunkdesign import ChunkData
from glmx.outofcore.streaming import (
    Design,
    Point,
    RowPasses,
    StartMu,
    chunk_inputs,
    linear_predictor,
)
from glmx.solvers.elementwise import working_weights_and_residuals
from glmx.solvers.state import Array


@dataclass
class FinalSums:
    """Sums of the statistics pass; ``+`` is the reduction."""

    dispersion_sum: float = 0.0
    pearson_chi2: float = 0.0
    loglik: float = 0.0
    null_deviance: float = 0.0
    min_residual: float = np.inf
    max_residual: float = -np.inf
    n_boundary: int = 0

    def __add__(self, other: FinalSums) -> FinalSums:
        return FinalSums(
            self.dispersion_sum + other.dispersion_sum,
            self.pearson_chi2 + other.pearson_chi2,
            self.loglik + other.loglik,
            self.null_deviance + other.null_deviance,
            min(self.min_residual, other.min_residual),
            max(self.max_residual, other.max_residual),
            self.n_boundary + other.n_boundary,
        )


@dataclass(frozen=True)
class FitTotals:
    """What the statistics pass needs from the fit: totals and the null model's mean."""

    deviance: float
    n_positive: int
    sum_w: float
    null_mu: float | None  # weighted mean of y, or None: mu = g^{-1}(offset)
    null_needed: bool  # False when the null deviance comes from a separate fit


def deviance_share(family: Family, data: ChunkData, totals: FitTotals) -> float:
    """The part of the total deviance that makes the chunk's loglik formula use the
    global ML scale: by count for the gaussian (n), by weight otherwise (sum w)."""
    w = data.weights
    if isinstance(family, Gaussian):
        return totals.deviance * float(np.count_nonzero(w > 0)) / totals.n_positive
    return totals.deviance * float(np.sum(w)) / totals.sum_w


def chunk_final_sums(
    data: ChunkData,
    design: Design,
    family: Family,
    beta: Array,
    last_point: Point,
    start_mu: StartMu,
    totals: FitTotals,
) -> FinalSums:
    """One chunk's statistics at the estimates (the map of the statistics pass)."""
    inp = chunk_inputs(data, design(data), family)
    y, w = data.y, data.weights
    with np.errstate(all="ignore"):
        eta = inp.X.matvec(beta) + inp.offset
        mu = family.link.inverse(eta)
        eta_last, _ = linear_predictor(inp, last_point, start_mu, data)
        W_last, _ = working_weights_and_residuals(inp, eta_last, family.link.inverse(eta_last))
        pos = W_last > 0
        r_work = residuals("working", family, y, mu, eta, w)
        pearson = residuals("pearson", family, y, mu, eta, w)
        dres = residuals("deviance", family, y, mu, eta, w)
    out = FinalSums(
        dispersion_sum=float(np.sum(W_last[pos] * r_work[pos] ** 2)),
        pearson_chi2=float(np.sum(pearson[w > 0] ** 2)),
        loglik=family.loglik(y, mu, w, np.ones_like(w), deviance_share(family, data, totals)),
        min_residual=float(np.min(dres)),
        max_residual=float(np.max(dres)),
        n_boundary=_boundary_count(family, mu, w),
    )
    if totals.null_needed:
        null_mu = (
            np.full_like(y, totals.null_mu)
            if totals.null_mu is not None
            else family.link.inverse(inp.offset)
        )
        out.null_deviance = inp.deviance(null_mu)
    return out


def _boundary_count(family: Family, mu: Array, w: Array) -> int:
    """Rows behind R's 'fitted probabilities numerically 0 or 1' / 'fitted rates
    numerically 0' warnings."""
    pos = w > 0
    if isinstance(family, Binomial):
        return int(np.count_nonzero((mu[pos] > 1 - 10 * EPS) | (mu[pos] < 10 * EPS)))
    if isinstance(family, Poisson):
        return int(np.count_nonzero(mu[pos] < 10 * EPS))
    return 0


def final_pass(
    rows: RowPasses,
    design: Design,
    family: Family,
    beta: Array,
    last_point: Point,
    start_mu: StartMu,
    totals: FitTotals,
) -> FinalSums:
    """The statistics pass: the sum of chunk_final_sums over every chunk."""
    fn = partial(
        chunk_final_sums, design=design, family=family, beta=beta, last_point=last_point,
        start_mu=start_mu, totals=totals,
    )  # fmt: skip
    with single_threaded_blas():  # as the IRLS passes
        out = rows.map_sum(fn)
    return FinalSums() if out is None else out


__all__ = ["FinalSums", "FitTotals", "chunk_final_sums", "final_pass"]
