"""The maximum on the edge of the valid region: a constrained Newton method.

Some likelihoods that are concave in eta stay finite where the fitted means reach the
bound of their range, for the rows whose response sits at that bound:

    binomial (quasi-) with the log link      mu <= 1 (eta <= 0), rows with y = 1
    poisson (quasi-) with identity or sqrt   mu >= 0 (eta >= 0), rows with y = 0

There the maximum can lie on the edge (R's glm then stops with "algorithm stopped at
boundary value"): IRLS halves every step that crosses the edge and stalls short of it.
This module maximizes the likelihood subject to the edge, for those rows, kept a margin
inside it (1e-10 of the distance in eta to a typical mean, so that every fitted value is
valid; the deviance this costs is about 1e-10 of the deviance's gradient there):

    minimize  g'd + d'Hd / 2   subject to   s_i (eta_i + x_i'd) >= s_i eta_lim

(g, H: gradient and Hessian of half the deviance; s_i the side of the edge), a
quadratic program solved exactly as a least distance program by non-negative least
squares (Lawson and Hanson, 1974, ch. 23), then a line search on the deviance.  The
constraints are generated: those nearest the edge first, then any the step violates.
A point is certified when a whole step predicts a deviance gain below the Newton
certificate's (:mod:`glmx.solvers.certify`): it then satisfies the Karush-Kuhn-Tucker
conditions, and with a concave likelihood it is the constrained maximum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import linalg, optimize

from glmx.families.base import Family
from glmx.solvers.elementwise import observed_weights, working_weights_and_residuals
from glmx.solvers.state import Array, IRLSInputs

# the margin kept from the edge, relative to the distance in eta to a typical mean
MARGIN = 1e-10
# constraints in the first program (nearest the edge); more are added when violated
_POOL = 200
_MAX_ROUNDS = 30
_MAX_HALVINGS = 50


@dataclass(frozen=True)
class Edge:
    """The bound of the mean that a row with y at it can reach with a finite deviance."""

    mu: float  # the bound
    side: float  # +1: mu >= bound (eta >= g(bound)); -1: mu <= bound
    # the second derivative in eta of half the unit deviance of a row with y at the bound
    curvature: Callable[[Array], Array]


def _zero(eta: Array) -> Array:
    return np.zeros_like(eta)


def _two(eta: Array) -> Array:
    return np.full_like(eta, 2.0)


_EDGES: dict[tuple[str, str], Edge] = {
    ("binomial", "log"): Edge(1.0, -1.0, _zero),  # -log mu = -eta
    ("quasibinomial", "log"): Edge(1.0, -1.0, _zero),
    ("poisson", "identity"): Edge(0.0, 1.0, _zero),  # mu = eta
    ("quasipoisson", "identity"): Edge(0.0, 1.0, _zero),
    ("poisson", "sqrt"): Edge(0.0, 1.0, _two),  # mu = eta^2
    ("quasipoisson", "sqrt"): Edge(0.0, 1.0, _two),
}


def edge_of(family: Family) -> Edge | None:
    """The family and link's edge, or None when no maximum can lie on one."""
    return _EDGES.get((family.name, family.link.name))


@dataclass
class EdgeFit:
    beta: Array
    n_iter: int
    certified: bool
    at_edge: int  # rows whose mean is at the margin from the bound
    deviances: list[float]


class _Problem:
    """Half the deviance, its gradient and Hessian, and the edge constraints of a fit."""

    def __init__(self, inp: IRLSInputs, edge: Edge, kept: NDArray[np.bool_]) -> None:
        self.inp, self.edge, self.kept = inp, edge, kept
        wt = inp.total_weights
        used = wt > 0
        self.rows = np.flatnonzero(used & (inp.y == edge.mu))  # rows that can reach it
        link = inp.family.link
        # the margin, on the scale of eta: a fraction of the distance from the edge to a
        # typical mean (the weighted mean of y, or the middle of a bounded range)
        ybar = float(np.average(inp.y[used], weights=wt[used]))
        typical = 0.5 if edge.mu == 1.0 or ybar == edge.mu else ybar
        ends = link.link(np.array([edge.mu, typical]))
        self.margin = MARGIN * abs(float(ends[1] - ends[0]))
        self.eta_lim = float(ends[0]) + edge.side * self.margin
        self.X_edge = inp.X.rows(self.rows)[:, kept] if self.rows.size else None
        # a ridge for directions with no curvature (rows at the edge only), in each
        # column's units (1e-10 of its weighted sum of squares): the constraints stop it
        d = np.diag(inp.X.gram(wt))[kept]
        self.ridge = 1e-10 * np.maximum(d, np.finfo(float).tiny)

    def eta(self, beta: Array) -> Array:
        return self.inp.X.matvec(np.where(self.kept, beta, 0.0)) + self.inp.offset

    def deviance(self, eta: Array) -> tuple[float, Array, bool]:
        inp = self.inp
        fam = inp.family
        with np.errstate(all="ignore"):
            mu = fam.link.inverse(eta)
            ok = bool(fam.link.valid_eta(eta) and fam.valid_mu(mu))
            dev = float(inp.deviance(mu, 0, mu.shape[0])) if ok else np.inf
        return dev, mu, ok and np.isfinite(dev)

    def derivatives(self, eta: Array, mu: Array) -> tuple[Array, Array]:
        """The gradient and Hessian of half the deviance on the kept columns."""
        inp = self.inp
        W, r = working_weights_and_residuals(inp, eta, mu)
        g = -inp.X.rmatvec(W * r)[self.kept]
        h = observed_weights(inp, eta, mu, W, out=np.empty_like(W))
        bad = ~np.isfinite(h) | (h < 0)  # rounding near the edge: Fisher's weight
        h[bad] = W[bad]
        h[self.rows] = inp.total_weights[self.rows] * self.edge.curvature(eta[self.rows])
        H = inp.X.gram(h)[np.ix_(self.kept, self.kept)]
        H[np.diag_indices_from(H)] += self.ridge
        return g, H

    def slack(self, eta: Array) -> Array:
        """s (eta - eta_lim) >= 0 for the rows that can reach the edge."""
        return self.edge.side * (eta[self.rows] - self.eta_lim)


def _least_distance(H: Array, g: Array, G: Array, h: Array) -> Array | None:
    """argmin g'd + d'Hd/2 subject to G d >= h (H positive definite), or None when the
    constraints are inconsistent: with H = LL', z = L'd + L^{-1} g, it is the least
    distance program min |z| s.t. (G L^{-T}) z >= h + G L^{-T} L^{-1} g, solved by
    non-negative least squares."""
    L = linalg.cholesky(H, lower=True)
    v = linalg.solve_triangular(L, g, lower=True)
    if G.shape[0] == 0:
        return linalg.solve_triangular(L.T, -v, lower=False)  # type: ignore[no-any-return]
    Gt = linalg.solve_triangular(L, G.T, lower=True).T
    ht = h + Gt @ v
    p = g.shape[0]
    if np.all(ht <= 0):
        z = np.zeros(p)
    else:
        E = np.vstack([Gt.T, ht[None, :]])
        f = np.zeros(p + 1)
        f[-1] = 1.0
        u, _ = optimize.nnls(E, f, maxiter=50 * E.shape[1])
        res = E @ u - f
        if abs(res[-1]) <= 1e-12:
            return None
        z = -res[:p] / res[-1]
    return linalg.solve_triangular(L.T, z - v, lower=False)  # type: ignore[no-any-return]


def _constrained_step(prob: _Problem, eta: Array, g: Array, H: Array) -> Array | None:
    """The step of the quadratic program, its constraints generated from the nearest."""
    if prob.X_edge is None:
        return _least_distance(H, g, np.empty((0, g.shape[0])), np.empty(0))
    slack = prob.slack(eta)
    G_all = prob.edge.side * prob.X_edge
    pool = np.argsort(slack)[:_POOL]
    for _ in range(_MAX_ROUNDS):
        d = _least_distance(H, g, G_all[pool], -slack[pool])
        if d is None:
            return None
        violated = np.flatnonzero(G_all @ d < -slack - 1e-12 * (1.0 + np.abs(slack)))
        violated = np.setdiff1d(violated, pool)
        if violated.size == 0:
            return d
        pool = np.union1d(pool, violated)
    return None


def fit_to_edge(
    inp: IRLSInputs,
    beta: Array,
    kept: NDArray[np.bool_],
    limit: Callable[[float, float], bool],
) -> EdgeFit | None:
    """Maximize the likelihood subject to the edge from coefficients ``beta`` (valid),
    by constrained Newton steps until ``limit(predicted gain, deviance)`` certifies a
    whole step; None when the family has no edge or no row can reach it."""
    edge = edge_of(inp.family)
    if edge is None:
        return None
    prob = _Problem(inp, edge, kept)
    if prob.rows.size == 0:
        return None
    b = np.where(kept, beta, 0.0)[kept]
    full = np.zeros_like(beta)

    def coefs(x: Array) -> Array:
        full[kept] = x
        return full.copy()

    eta = prob.eta(coefs(b))
    dev, mu, ok = prob.deviance(eta)
    if not ok:
        return None
    devs = [dev]
    for it in range(1, inp.max_iter + 1):
        g, H = prob.derivatives(eta, mu)
        try:
            d = _constrained_step(prob, eta, g, H)
        except (linalg.LinAlgError, ValueError, RuntimeError):
            d = None
        if d is None or not np.all(np.isfinite(d)):
            break
        gain = -2.0 * float(g @ d + 0.5 * d @ H @ d)  # the deviance a whole step gains
        # a point inside the margin is first moved out to it, whatever that costs
        inside = bool(np.any(prob.slack(eta) < -0.01 * prob.margin))
        step = 1.0
        for _ in range(_MAX_HALVINGS):
            eta_new = prob.eta(coefs(b + step * d))
            dev_new, mu_new, ok = prob.deviance(eta_new)
            if ok and (inside or dev_new <= dev + 1e-12 * (abs(dev) + 0.1)):
                break
            step /= 2.0
        else:
            return EdgeFit(coefs(b), it, limit(max(gain, 0.0), dev), _at_edge(prob, eta), devs)
        b, eta, dev, mu = b + step * d, eta_new, dev_new, mu_new
        devs.append(dev)
        if step == 1.0 and not inside and limit(max(gain, 0.0), dev):
            return EdgeFit(coefs(b), it, True, _at_edge(prob, eta), devs)
    return EdgeFit(coefs(b), len(devs) - 1, False, _at_edge(prob, eta), devs)


def _at_edge(prob: _Problem, eta: Array) -> int:
    """Rows whose linear predictor is at the margin (within 1% of it)."""
    return int(np.count_nonzero(prob.slack(eta) <= 0.01 * prob.margin))
