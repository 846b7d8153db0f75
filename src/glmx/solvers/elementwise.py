"""The per-row work of IRLS (fitted means, the deviance, working weights and residuals)
in cache-sized row blocks, the blocks shared among the threads of the design passes.

Each family/link formula is a chain of numpy operations; on whole columns every link of
the chain streams n values through memory and allocates a fresh n-vector.  On blocks of
BLOCK_ROWS rows the temporaries stay in the cache and are reused.  Blocks start at
multiples of BLOCK_ROWS whatever the number of threads and their sums are taken in row
order, so results do not depend on the thread count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np

from glmx.design.parallel import map_slices, row_slices
from glmx.solvers.state import Array, IRLSInputs

T = TypeVar("T")

BLOCK_ROWS = 16_384
# a block's work counts as this many columns when deciding whether to use the threads
_WIDTH = 8


def over_blocks(n: int, fn: Callable[[int, int], T]) -> list[T]:
    """fn(lo, hi) for every row block, in row order.  numpy's floating-point errors are
    ignored inside (overflow to inf, log(0): the callers check the results); numpy's
    error state is per thread, so it is set in each worker."""

    def part(lo: int, hi: int) -> list[T]:
        with np.errstate(all="ignore"):
            return [fn(a, min(a + BLOCK_ROWS, hi)) for a in range(lo, hi, BLOCK_ROWS)]

    out: list[T] = []
    for chunk in map_slices(part, row_slices(n, _WIDTH, align=BLOCK_ROWS)):
        out.extend(chunk)
    return out


def fitted_and_deviance(
    inp: IRLSInputs, eta: Array, out: Array | None = None
) -> tuple[Array, float, bool]:
    """mu = g^{-1}(eta) (written into ``out`` when given), the total deviance, and
    whether eta and mu are valid (R's ``valideta`` and ``validmu``)."""
    fam = inp.family
    mu = np.empty_like(eta) if out is None else out

    def block(lo: int, hi: int) -> tuple[float, bool]:
        e = eta[lo:hi]
        m = fam.link.inverse(e)
        mu[lo:hi] = m
        return inp.deviance(m, lo, hi), fam.link.valid_eta(e) and fam.valid_mu(m)

    parts = over_blocks(eta.shape[0], block)
    dev = float(np.sum([d for d, _ in parts]))
    return mu, dev, all(ok for _, ok in parts)


def total_deviance(inp: IRLSInputs, mu: Array) -> float:
    """The deviance at the means mu, block by block (as IRLS computes it)."""
    parts = over_blocks(mu.shape[0], lambda lo, hi: inp.deviance(mu[lo:hi], lo, hi))
    return float(np.sum(parts))


def working_weights_and_residuals(
    inp: IRLSInputs, eta: Array, mu: Array, out: tuple[Array, Array] | None = None
) -> tuple[Array, Array]:
    """W = w mu_eta^2 / V(mu) and r = (y - mu) / mu_eta; both 0 where w = 0 or mu_eta = 0
    (written into ``out`` when given)."""
    W, r = (np.empty_like(eta), np.empty_like(eta)) if out is None else out

    fam = inp.family
    wt, y = inp.total_weights, inp.y

    def block(lo: int, hi: int) -> None:
        m = mu[lo:hi]
        d = fam.link.mu_eta_at(eta[lo:hi], m)
        Wb, rb = W[lo:hi], r[lo:hi]
        # W = d (d / V): no overflow where d^2 and V overflow together (log link, mu
        # near 1e154 and beyond)
        V = fam.variance(m)
        np.divide(d, V, out=Wb)
        Wb *= d
        odd = ~np.isfinite(V) | (V <= 0.0)
        if odd.any():  # V over- or underflowed: W = exp(2 log|d| - log V)
            Wb[odd] = np.exp(2.0 * np.log(np.abs(d[odd])) - fam.log_variance(m[odd]))
        if not inp.unit_weights:
            Wb *= wt[lo:hi]
        np.subtract(y[lo:hi], m, out=rb)
        rb /= d
        bad = d == 0
        if not inp.all_weights_positive:
            bad |= wt[lo:hi] <= 0
        if bad.any():
            Wb[bad] = 0.0
            rb[bad] = 0.0

    over_blocks(eta.shape[0], block)
    return W, r


# relative step of the central difference for a'(eta) below: truncation error h^2 and
# rounding error eps / h balance near 1e-5 (relative error about 1e-10)
_DIFF_STEP = 1e-5


def observed_weights(inp: IRLSInputs, eta: Array, mu: Array, W: Array, out: Array) -> Array:
    """Newton's weights, the observed information's diagonal (into ``out``):

        W_obs = W - w (y - mu) a'(eta),   a(eta) = mu_eta(eta) / V(mu(eta)),

    with a' by a central difference (any family and link).  W_obs may be negative for
    some rows away from the optimum; it equals W for a canonical link (a is constant)."""
    fam = inp.family
    wt, y = inp.total_weights, inp.y

    def a(e: Array) -> Array:
        return fam.link.mu_eta(e) / fam.variance(fam.link.inverse(e))  # type: ignore[no-any-return]

    def block(lo: int, hi: int) -> None:
        e = eta[lo:hi]
        h = _DIFF_STEP * np.maximum(np.abs(e), 1.0)
        slope = (a(e + h) - a(e - h)) / (2.0 * h)
        retry = ~np.isfinite(slope)
        if retry.any():  # a link defined on half a line (sqrt, inverse): a relative step
            er = e[retry]
            hr = _DIFF_STEP * np.abs(er)
            slope[retry] = (a(er + hr) - a(er - hr)) / (2.0 * hr)
        slope[~np.isfinite(slope)] = 0.0  # Fisher's weight for that row
        ob = out[lo:hi]
        np.subtract(y[lo:hi], mu[lo:hi], out=ob)
        ob *= slope
        if not inp.unit_weights:
            ob *= wt[lo:hi]
        Wb = W[lo:hi]
        np.subtract(Wb, ob, out=ob)
        # rows whose observed weight vanishes (binomial with the log link at y = 1) come
        # out as rounding noise of either sign: zero them
        ob[(Wb == 0.0) | (np.abs(ob) <= 1e-10 * Wb)] = 0.0

    over_blocks(eta.shape[0], block)
    return out
