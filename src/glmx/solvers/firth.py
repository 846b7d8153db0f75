"""Firth's bias-reduced binomial regression (Firth 1993; Kosmidis & Firth 2009).

The estimate solves the mean-bias-reducing adjusted score equations, brglm2's
``brglmFit(type = "AS_mean")``:

    U*(beta) = X' [w mu'(eta) (y - mu) / V(mu)  +  h mu''(eta) / (2 mu'(eta))] = 0

with w the prior times frequency weights, V(mu) = mu (1 - mu), and h the hat values of
the weighted design W^{1/2} X, W = w mu'^2 / V, computed row by row (no n x n matrix):
h_i = W_i x_i' (X'WX)^{-1} x_i.  For the logit link mu''/mu' = 1 - 2 mu, so

    U*(beta) = X' [w (y - mu) + h (1/2 - mu)]

is the gradient of Firth's penalized log-likelihood  l(beta) + 1/2 log|X'WX|  (Jeffreys'
prior); for other links the adjusted score removes the O(1/n) bias of the ML estimate but
is not the gradient of a penalized likelihood.  Frequency weights and binomial trials
enter only through w: a row with weight w stands for w identical Bernoulli rows.

Iteration (modified Fisher scoring, the IRLS of the adjusted working response
z = eta - offset + (y - mu) / mu' + h mu'' / (2 mu' W)):

    beta <- beta + delta,   J delta = U*(beta)

with J = X'WX (brglm2) for the other links, and for the logit link the Jacobian of U* at
fixed hat values, J = X' diag((w + h) mu (1 - mu)) X (the information of logistf's pseudo
data: weights w + h, response (w y + h/2) / (w + h)), which damps the oscillation Fisher
steps show when the penalty dominates (separated data); the fixed point is the same.  The
step is halved while the fitted values are invalid or the fit gets worse: for the logit
link "worse" means a lower penalized log-likelihood; for other links, a larger scaled
adjusted score U*' (X'WX)^{-1} U* (brglm2 halves on the size of the step likewise).
Convergence: every coefficient moves by less than ``tol`` times (|beta_j| + se_j) in the
step computed at the new estimate, with se_j = sqrt([(X'WX)^{-1}]_jj), a scale-free rule.
Starting values are brglm2's: the ML fit to the response adjusted towards 1/2 by p/n
pseudo-observations, which is finite even for separated data.

Standard errors are those of logistf and brglm2: (X'WX)^{-1} at the final estimate.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from scipy import linalg

from glmx.design.matrix import DenseDesign, DesignMatrix, SparseDesign, as_design
from glmx.errors import BoundaryWarning, ConvergenceError, ConvergenceWarning, FamilyError
from glmx.families.exponential import Binomial
from glmx.families.links import Link, Logit, get_link
from glmx.solvers.irls import irls
from glmx.solvers.linalg import factorize
from glmx.solvers.state import Array, FitLog, IRLSInputs, IRLSResult

MAX_HALVINGS = 30
MAX_HALVINGS_AS = 12  # brglm2's max_step_factor, for the links without an objective

# mu''(eta) / mu'(eta) for each binomial link, in closed form (stable in the tails)
_D2_OVER_D1: dict[str, Callable[[Array, Array], Array]] = {
    "logit": lambda eta, mu: 1.0 - 2.0 * mu,
    "probit": lambda eta, mu: -eta,
    "cauchit": lambda eta, mu: -2.0 * eta / (1.0 + eta**2),
    "cloglog": lambda eta, mu: -np.expm1(np.minimum(eta, 700.0)),
    "loglog": lambda eta, mu: np.expm1(-np.maximum(eta, -700.0)),
    "log": lambda eta, mu: np.ones_like(eta),
}


@dataclass(frozen=True)
class _Point:
    """Everything the iteration needs at one beta (kept columns only in ``R``/``scale``).

    Cholesky of the information on the kept columns: X'WX = D R'R D, D = diag(scale)."""

    beta: Array
    eta: Array
    mu: Array
    W: Array
    R: Array
    scale: Array
    hat: Array
    score: Array  # adjusted score U*, length p (0 on aliased columns)
    delta: Array  # the scoring step on the free columns (0 elsewhere)
    se: Array  # sqrt(diag((X'WX)^{-1})) on the free columns (0 elsewhere)
    merit: float  # penalized log-likelihood (logit), else -U*' delta


def _problem(inp: IRLSInputs) -> tuple[Link, Callable[[Array, Array], Array]]:
    fam = inp.family
    if not isinstance(fam, Binomial) or fam.name != "binomial":
        raise FamilyError(f"Firth regression is for the binomial family, not {fam.name}")
    ratio = _D2_OVER_D1.get(fam.link.name)
    if ratio is None:
        raise FamilyError(
            f"Firth regression has no bias adjustment for the {fam.link.name!r} link; "
            f"use one of {', '.join(_D2_OVER_D1)}"
        )
    return fam.link, ratio


def _times(X: DesignMatrix, M: Array) -> Array:
    """X @ M for a p x k matrix M (n x k result), column by column for other backends."""
    if isinstance(X, (DenseDesign, SparseDesign)):
        return np.asarray(X.X @ M)
    return np.column_stack([X.matvec(M[:, c]) for c in range(M.shape[1])])


def _cholesky(G: Array) -> tuple[Array, Array]:
    """G = D R'R D with D = diag(sqrt(diag G)) (R upper triangular)."""
    scale = np.sqrt(np.diag(G))
    try:
        R = linalg.cholesky(G / np.outer(scale, scale), lower=False, check_finite=True)
    except (linalg.LinAlgError, ValueError):
        raise ConvergenceError(
            "the Fisher information became singular during the Firth iteration; "
            "check the design for (nearly) collinear columns"
        ) from None
    return R, scale


def _evaluate(
    inp: IRLSInputs,
    beta: Array,
    kept: NDArray[np.bool_],
    free: NDArray[np.bool_],
    link: Link,
    ratio: Callable[[Array, Array], Array],
) -> _Point | None:
    """The quantities at ``beta``; None where eta or mu leave their valid range."""
    fam = inp.family
    wt = inp.total_weights
    eta = inp.X.matvec(beta) + inp.offset
    with np.errstate(all="ignore"):
        mu = link.inverse(eta)
        if not (link.valid_eta(eta) and fam.valid_mu(mu)):
            return None
        d1 = link.mu_eta(eta)
        var = fam.variance(mu)
        # w mu' / V: the score weight of (y - mu); exactly w for the logit link
        sw = wt if isinstance(link, Logit) else np.where(wt > 0, wt * d1 / var, 0.0)
        W = sw * d1  # W = w mu'^2 / V
    if not np.all(np.isfinite(W)):
        return None
    G = inp.X.gram(W)
    R, scale = _cholesky(G[np.ix_(kept, kept)])
    # (X'WX)^{-1} = A A' with A = D^{-1} R^{-1}; h_i = W_i ||x_i' A||^2, row-wise
    A = np.zeros((beta.shape[0], R.shape[0]))
    A[kept] = linalg.solve_triangular(R, np.eye(R.shape[0]), lower=False) / scale[:, None]
    B = _times(inp.X, A)  # n x rank
    hat = W * np.einsum("ij,ij->i", B, B)
    score = inp.X.rmatvec(sw * (inp.y - mu) + 0.5 * hat * ratio(eta, mu))
    score[~kept] = 0.0
    delta, se = np.zeros_like(beta), np.zeros_like(beta)
    se[kept] = np.sqrt(np.sum(A[kept] ** 2, axis=1))
    if isinstance(link, Logit):
        # the Jacobian of U* with h held fixed: X' diag((w + h) mu (1 - mu)) X
        G = inp.X.gram(W + hat * mu * (1.0 - mu))
    if free.any():
        Rf, sf = _cholesky(G[np.ix_(free, free)])
        delta[free] = linalg.cho_solve((Rf, False), score[free] / sf) / sf
    if isinstance(link, Logit):
        # l + 1/2 log|X'WX| up to a constant: -D/2 + log|D R'R D|/2
        dev = fam.deviance(inp.y, mu, wt)
        merit = -0.5 * dev + float(np.sum(np.log(np.diag(R))) + np.sum(np.log(scale)))
    else:
        merit = -float(score @ delta)
    return _Point(beta, eta, mu, W, R, scale, hat, score, delta, se, merit)


def _solve(
    inp: IRLSInputs,
    start: Array,
    kept: NDArray[np.bool_],
    free: NDArray[np.bool_],
) -> tuple[_Point, int, bool, bool, FitLog]:
    """Modified scoring from ``start`` over the ``free`` columns (the others stay fixed).
    Returns the final point, the iteration count, converged, boundary and the log."""
    link, ratio = _problem(inp)
    pt = _evaluate(inp, start, kept, free, link, ratio)
    if pt is None:
        raise ConvergenceError(
            f"the starting coefficients give invalid fitted values for the binomial family "
            f"with the {link.name} link; supply other start= values"
        )
    logit = isinstance(link, Logit)
    max_halvings = MAX_HALVINGS if logit else MAX_HALVINGS_AS
    log = FitLog()
    converged = boundary = False
    n_iter = 0
    for n_iter in range(1, inp.max_iter + 1):  # noqa: B007 - the count is reported
        if _small(pt, free, inp.tol):
            converged = True
            n_iter -= 1
            break
        step = pt.delta
        new: _Point | None = None
        halvings = 0
        while True:
            cand = _evaluate(inp, pt.beta + step, kept, free, link, ratio)
            if cand is None:
                boundary = True
            elif cand.merit >= pt.merit - 1e-12 * (abs(pt.merit) + 0.1):
                new = cand
                break
            elif not logit and halvings == max_halvings:
                new = cand  # as brglm2: without an objective, take the shortest step
                break
            if halvings == max_halvings:
                break
            step = step / 2.0
            halvings += 1
        if new is None:  # no better point along the step: numerically at the optimum
            converged = logit and _small(pt, free, 1e-6)
            break
        pt = new
        log.record(inp.family.deviance(inp.y, pt.mu, inp.total_weights), halvings)
    else:
        converged = _small(pt, free, inp.tol)
    return pt, n_iter, converged, boundary, log


def _small(pt: _Point, free: NDArray[np.bool_], tol: float) -> bool:
    """Whether the next scoring step moves every free coefficient by < tol (|b| + se)."""
    if not free.any():
        return True
    rel = np.abs(pt.delta[free]) / (np.abs(pt.beta[free]) + pt.se[free])
    return bool(np.all(rel < tol))


def _start(inp: IRLSInputs) -> tuple[Array, NDArray[np.bool_]]:
    """brglm2's start: ML on y adjusted by a = p/n pseudo-observations at 1/2,
    y* = (w y + a/2) / (w + a) with weights w + a; and the aliased columns there."""
    n, p = inp.X.shape
    a = p / n
    wt = inp.total_weights
    adj = replace(
        inp,
        y=(wt * inp.y + 0.5 * a) / (wt + a),
        weights=wt + a,
        freq_weights=np.ones(n),
        start=None,
        mustart=None,
        max_iter=max(inp.max_iter, 100),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = irls(adj)
    if inp.start is None:
        return np.where(res.aliased, 0.0, res.coef), res.aliased
    beta = np.where(res.aliased, 0.0, np.asarray(inp.start, dtype=float))
    return beta, res.aliased


def firth(inp: IRLSInputs) -> IRLSResult:
    """Fit a binomial GLM by Firth's bias-reduced (adjusted score) estimator.

    See the module docstring for the equations, iteration and convergence rule.
    Aliased columns (found at the starting fit) get NaN coefficients, as in R.
    """
    _problem(inp)
    beta0, aliased = _start(inp)
    kept = ~aliased
    pt, n_iter, converged, boundary, log = _solve(inp, beta0, kept, kept)
    if not converged:
        warnings.warn(
            f"the Firth iteration did not converge in {inp.max_iter} iterations; "
            "raise max_iter or give start= values",
            ConvergenceWarning,
            stacklevel=3,
        )
    if boundary:
        warnings.warn(
            "Firth steps were halved to keep the fitted probabilities valid; the estimate "
            "may lie on the edge of the parameter space",
            BoundaryWarning,
            stacklevel=3,
        )
    inv_d = linalg.solve_triangular(pt.R, np.eye(pt.R.shape[0]), lower=False) / pt.scale[:, None]
    cov = inv_d @ inv_d.T  # (X'WX)^{-1} at the final estimate
    return IRLSResult(
        coef=np.where(aliased, np.nan, pt.beta),
        aliased=aliased,
        eta=pt.eta,
        mu=pt.mu,
        deviance=inp.family.deviance(inp.y, pt.mu, inp.total_weights),
        working_weights=pt.W,
        cov_unscaled=(cov + cov.T) / 2.0,
        n_iter=n_iter,
        converged=converged,
        boundary=boundary,
        log=log,
    )


def firth_constrained(inp: IRLSInputs, j: int, value: float, start: Array) -> Array:
    """The Firth estimate with coefficient ``j`` held at ``value`` (the other columns of
    ``inp.X`` free, none aliased): the maximizer of the penalized log-likelihood over them,
    with the penalty's information matrix that of the full design, as in logistf's
    profile penalized likelihood."""
    p = inp.X.shape[1]
    kept = np.ones(p, dtype=bool)
    free = kept.copy()
    free[j] = False
    beta = np.array(start, dtype=float)
    beta[j] = value
    pt, _, converged, _, _ = _solve(inp, beta, kept, free)
    if not converged:
        raise ConvergenceError(
            f"the constrained Firth fit with coefficient {inp.X.column_names[j]!r} at "
            f"{value:g} did not converge"
        )
    return pt.beta


def penalized_loglik(
    X: DesignMatrix | NDArray[np.floating],
    y: Array,
    weights: Array | None,
    freq_weights: Array | None,
    offset: Array | None,
    beta: Array,
    link: str | Link = "logit",
) -> float:
    """Firth's penalized log-likelihood  l(beta) + 1/2 log|X'WX|.

    l is the binomial log-likelihood with its constants, as R's ``logLik`` (``weights`` are
    trials for a proportion ``y``); W = w mu'^2 / (mu (1 - mu)).  NaN entries of ``beta``
    (aliased columns) are left out with their columns.  The logit-link Firth estimate
    maximizes it; for other links it is the Jeffreys-penalized likelihood, which brglm2's
    AS_mean estimate does not maximize.
    """
    design = as_design(X)
    n = design.shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    f = np.ones(n) if freq_weights is None else np.asarray(freq_weights, dtype=float)
    off = np.zeros(n) if offset is None else np.asarray(offset, dtype=float)
    b = np.asarray(beta, dtype=float)
    fam = Binomial(link=get_link(link))
    kept = np.isfinite(b)
    eta = design.matvec(np.where(kept, b, 0.0)) + off
    mu = fam.link.inverse(eta)
    wt = w * f
    W = wt * fam.link.mu_eta(eta) ** 2 / fam.variance(mu)
    G = design.gram(W)[np.ix_(kept, kept)]
    fac = factorize(G)
    if fac.aliased.any():  # singular information: the penalty is log 0
        return float("-inf")
    logdet = 2.0 * float(np.sum(np.log(np.diag(fac.R))) + np.sum(np.log(fac.scale)))
    loglik = fam.loglik(y, mu, w, f, fam.deviance(y, mu, wt))
    return loglik + 0.5 * logdet


__all__ = ["firth", "firth_constrained", "penalized_loglik"]
