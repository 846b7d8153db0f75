"""IRLS at a point: the fit there (eta, mu, the deviance, validity) and the normal
equations of the step that starts from it.

A point costs one pass over X (X b) and one blocked pass for the means and the deviance;
its step costs a blocked pass for the working weights W and residuals r and one pass
over X for X'WX and X'Wc, c = r for a step from coefficients (beta <- beta + delta) and
R's working response z = eta - offset + r for the first step from ``mustart``.

The n-vectors are written into buffers kept for the whole fit: a fresh n-vector costs
page faults on its first touch (more than the arithmetic on it: about 60 ms for 1e7 rows
on the dev machine), and a fit needs about seven per iteration.  There is one set of
eta, mu, W and r.  Evaluating a candidate overwrites the eta and mu of the point the step
starts from: a step, its halvings and the convergence test need only that point's
coefficients and deviance, and a point's normal equations are formed before any
candidate of its step.  W and r are rewritten by every step (the last step's W is the
one R reports).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from glmx.design.matrix import DenseDesign
from glmx.errors import ConvergenceError
from glmx.solvers import qr
from glmx.solvers.boundary import fit_to_edge
from glmx.solvers.certify import Certifier
from glmx.solvers.driver import Run, Settings
from glmx.solvers.elementwise import (
    fitted_and_deviance,
    observed_weights,
    working_weights_and_residuals,
)
from glmx.solvers.linalg import (
    EigenFactorization,
    Factorization,
    factorize,
    factorize_design,
    factorize_kept,
    factorize_on,
    normal_equations,
    signed_gram,
)
from glmx.solvers.state import Array, Equations, IRLSInputs
from glmx.solvers.warmstart import subsample_start
from glmx.vectors import is_constant


@dataclass(frozen=True)
class Point:
    """The fit at coefficients ``beta`` (None: R's start, eta = g(mustart))."""

    beta: Array | None
    eta: Array
    mu: Array
    deviance: float
    valid: bool  # eta and mu in the family's range (R's valideta, validmu)

    def detached(self) -> Point:
        """The point with its own copies of eta and mu (out of the fit's buffers)."""
        return Point(self.beta, self.eta.copy(), self.mu.copy(), self.deviance, self.valid)


# a likelihood that is not concave is fitted from every start when n p is at most this
# (larger fits restart only when the first run is not certified)
EXPLORE_MAX_ELEMENTS = 2_000_000


class Evaluator:
    """Evaluates points and their normal equations for one IRLS fit (see module doc)."""

    def __init__(self, inp: IRLSInputs) -> None:
        self.inp = inp
        self.has_offset = not is_constant(inp.offset, 0.0) and bool(np.any(inp.offset != 0.0))
        self._eta_mu: tuple[Array, Array] | None = None
        self._W: Array | None = None
        self._r: Array | None = None
        self._W_obs: Array | None = None
        self._qr: bool | None = None  # solve by a QR of sqrt(W) X (decided at the first step)
        self._dense: Array | None = None
        # the subsample's scaled X'WX, for the first step from a warm start
        self._warm_information: Array | None = None
        # X'WX factored, for a family and link whose working weights never change
        self._fixed: Factorization | EigenFactorization | None = None

    @property
    def settings(self) -> Settings:
        inp = self.inp
        n, p = inp.X.shape
        explore = not inp.family.concave and n * p <= EXPLORE_MAX_ELEMENTS
        return Settings(
            inp.family, inp.tol, inp.max_iter, inp.certify, inp.start, inp.null_start,
            inp.null_deviance, explore,
        )  # fmt: skip

    def certifier(self) -> Certifier:
        return Certifier.for_inputs(self.inp)

    def warm_start(self) -> Array | None:
        """For a large fit, the estimates of a subsample fit (glmx.solvers.warmstart)."""
        warm = subsample_start(self.inp)
        if warm is None:
            return None
        coef, self._warm_information = warm
        return coef

    def _mustart(self) -> Array:
        """R's mustart: the given means, or the family's ``initialize`` expression."""
        inp = self.inp
        return inp.family.starting_mu(inp.y, inp.weights) if inp.mustart is None else inp.mustart

    def least_squares_start(self, mean: bool = False) -> Array | None:
        """The unweighted least-squares fit of g(mustart) - offset, or with ``mean`` of
        g(weighted mean of y) - offset (other starts for a likelihood that is not
        concave); None where the target is not finite."""
        inp = self.inp
        fam = inp.family
        mustart = self._mustart()
        if mean:
            wt = inp.total_weights
            mustart = np.full_like(inp.y, float(np.sum(wt * mustart) / np.sum(wt)))
        with np.errstate(all="ignore"):
            z = fam.link.link(mustart) - inp.offset
        if not np.all(np.isfinite(z)):
            return None
        ones = np.broadcast_to(1.0, z.shape)
        fac, rhs = normal_equations(inp.X, ones, z)
        return fac.solve(rhs)

    def at_start(self, damped: bool = False) -> Point:
        """R's start, eta = g(mustart); ``damped``: mustart halfway to its weighted mean.
        Raises ConvergenceError when it gives invalid fitted values."""
        inp = self.inp
        fam = inp.family
        mustart = self._mustart()
        if damped:
            wt = inp.total_weights
            mustart = (mustart + float(np.sum(wt * mustart) / np.sum(wt))) / 2.0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            eta = fam.link.link(mustart)
        pt = self.at_eta(eta)  # R: mu <- linkinv(eta), devold
        if not (np.all(np.isfinite(eta)) and pt.valid and np.isfinite(pt.deviance)):
            raise ConvergenceError(
                f"cannot find valid starting values for the {fam.name} family with the "
                f"{fam.link.name} link; please give start= coefficients"
            )
        return pt

    def at(self, beta: Array) -> Point:
        """The fit at coefficients beta (in the buffers of the previous point, whose eta
        and mu it overwrites)."""
        eta, mu = self._buffers()
        X = self.inp.X
        if isinstance(X, DenseDesign):
            X.matvec(beta, out=eta)
        else:
            eta[:] = X.matvec(beta)
        if self.has_offset:
            eta += self.inp.offset
        mu, dev, valid = fitted_and_deviance(self.inp, eta, out=mu)
        return Point(beta, eta, mu, dev, valid)

    def at_eta(self, eta: Array) -> Point:
        """The starting fit at eta = g(mustart), before there are coefficients (eta is
        copied into the buffers, which the first step's candidates then reuse)."""
        buf, mu = self._buffers()
        buf[:] = eta
        mu, dev, valid = fitted_and_deviance(self.inp, buf, out=mu)
        return Point(None, buf, mu, dev, valid)

    def _buffers(self) -> tuple[Array, Array]:
        """The fit's (eta, mu) buffers, made at the first call."""
        if self._eta_mu is None:
            n = self.inp.y.shape[0]
            self._eta_mu = (np.empty(n), np.empty(n))
        return self._eta_mu

    @property
    def newton_available(self) -> bool:
        """Whether Newton steps differ from Fisher scoring (the link is not canonical)."""
        return not self.inp.family.canonical

    @property
    def fisher_is_cheap(self) -> bool:
        """Whether Fisher's X'WX never changes (factored once): its steps cost a pass over X
        less than Newton's, so they are taken while they converge fast."""
        return self.inp.family.constant_weights

    def equations(
        self, pt: Point, kept: NDArray[np.bool_] | None = None, newton: bool = False
    ) -> Equations:
        """The factored normal equations of the step from pt (W is valid until the next
        call).  ``kept``: the estimable columns (found by the first call); a Newton step
        falls back to Fisher's when the observed information is not positive definite."""
        inp = self.inp
        if self._W is None:
            self._W, self._r = np.empty_like(pt.eta), np.empty_like(pt.eta)
        assert self._r is not None
        W, r = working_weights_and_residuals(inp, pt.eta, pt.mu, out=(self._W, self._r))
        if not float(np.max(W)) > 0.0:  # means where mu_eta vanishes everywhere: no step
            raise FloatingPointError("every working weight is 0 (or not finite) here")
        if pt.beta is None:  # R's first step regresses z = eta - offset + r
            r += pt.eta
            if self.has_offset:
                r -= inp.offset
        if self._qr:
            return self._qr_equations(W, r, kept)
        warm, self._warm_information = self._warm_information, None
        if warm is not None and pt.beta is not None:
            # the first step from a subsample's estimates, by the subsample's information:
            # a quasi-Newton step for a pass over X (the estimates are a few standard
            # errors off, so it lands about as close as a Newton step)
            r *= W
            return Equations(factorize(warm), inp.X.rmatvec(r), W, False)
        first = self._qr is None
        r_raw = r.copy() if first else r
        if newton and pt.beta is not None and kept is not None:
            if self._W_obs is None:
                self._W_obs = np.empty_like(pt.eta)
            fac_obs = self._observed_information(pt, W, kept, self._W_obs)
            if fac_obs is not None:
                r *= W
                return Equations(fac_obs, inp.X.rmatvec(r), W, True)
        r *= W  # c -> Wc, in place
        if self._fixed is not None:  # X'WX is the same at every point: only X'Wr
            return Equations(self._fixed, inp.X.rmatvec(r), W, False)
        fac, rhs = normal_equations(inp.X, W, r)
        if first:
            n, p = inp.X.shape
            own = getattr(inp.X, "factorize", None) is not None
            self._qr = (
                isinstance(fac, Factorization) and not own and n * p <= qr.MAX_ELEMENTS
                and qr.needs_qr(fac)
            )  # fmt: skip
            if self._qr:
                return self._qr_equations(W, r_raw, kept)
        if kept is not None and (fac.aliased & kept).any():
            # a column only looks aliased because extreme weights (fitted values at the
            # boundary) swamp the others: keep it and solve the ill-conditioned system
            return Equations(factorize_kept(inp.X.gram(W), kept), rhs, W, False)
        if inp.family.constant_weights and not self._qr:
            self._fixed = fac
        return Equations(fac, rhs, W, False)

    def _qr_equations(self, W: Array, r: Array, kept: NDArray[np.bool_] | None) -> Equations:
        """The step by a QR of the weighted design (glmx.solvers.qr): nearly collinear X."""
        if self._dense is None:
            X = self.inp.X
            self._dense = X.X if isinstance(X, DenseDesign) else X.rows(np.arange(X.shape[0]))
        fac, step, rhs = qr.weighted_qr(self._dense, W, r, qr.r_tolerance(self.inp.tol), kept)
        return Equations(fac, rhs, W, False, step=step)

    def _observed_information(
        self, pt: Point, W: Array, kept: NDArray[np.bool_], out: Array
    ) -> Factorization | EigenFactorization | None:
        """X'W_obs X factored on the kept columns, or None when it is not positive
        definite there (or, for a design with its own factorization, when a weight is
        negative)."""
        inp = self.inp
        W_obs = observed_weights(inp, pt.eta, pt.mu, W, out=out)
        if getattr(inp.X, "factorize", None) is not None:
            if float(np.min(W_obs)) < 0.0:
                return None
            fac = factorize_design(inp.X, W_obs)
            return fac if np.array_equal(fac.kept, kept) else None
        H = signed_gram(inp.X, W_obs)
        return None if H is None else factorize_on(H, kept)

    def edge_fit(self, run: Run) -> Run | None:
        """The constrained maximum when the likelihood's may be on the edge of the valid
        region (glmx.solvers.boundary), from where ``run`` stopped; None where no edge
        can hold it."""
        cert = self.certifier()
        beta = run.point.beta
        if beta is None:
            return None
        fit = fit_to_edge(self.inp, beta, run.kept, lambda g, d: cert.small(g, d, True))
        if fit is None:
            return None
        pt = self.at(fit.beta)
        log = run.log
        for dev in fit.deviances[1:]:
            log.record(dev, 0)
        reason = "" if fit.certified else "stopped short of the constrained maximum at the edge"
        eq = self.equations(pt, run.kept)
        return Run(pt, eq, run.n_iter + fit.n_iter, log, fit.certified, True, reason, run.kept,
                   at_edge=fit.at_edge)  # fmt: skip

    def fisher(self, eq: Equations) -> Factorization | EigenFactorization:
        """Fisher's X'WX factored at the point of ``eq`` (for a Newton step's covariance)."""
        if not eq.newton:
            return eq.fac
        if self._fixed is not None:
            return self._fixed
        assert eq.W is not None
        fac = factorize_design(self.inp.X, eq.W)
        if (fac.aliased & eq.fac.kept).any():
            return factorize_kept(self.inp.X.gram(eq.W), eq.fac.kept)
        return fac
