"""Penalized iteratively reweighted least squares (PIRLS) for a GLMM's conditional modes.

Given theta (and beta, unless it is estimated jointly as in lme4's nAGQ = 0 stage), the
conditional modes minimize the penalized deviance::

    pdev(u) = -2 log p(y | eta) + ||u||^2,    eta = X beta + offset + Z Lambda u

Each iteration is one weighted penalized least squares solve with the blocked Cholesky
(Fisher weights W = w_prior mu'(eta)^2 / V(mu), working residual (y - mu) / mu'(eta)),
with step-halving when pdev does not decrease.  At the modes, the Laplace approximation is
``-2 log L = pdev(u_hat) + log|Lambda'Z'WZ Lambda + I|``.

``-2 log p(y | eta)`` keeps every constant (the binomial coefficients, log y!), so the
Laplace and quadrature log-likelihoods are on the full scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import special

from glmx.errors import FamilyError
from glmx.families.base import Family
from glmx.mixed.blocked import BlockedFactor, Structure

Array = NDArray[np.float64]

_CANONICAL = {("binomial", "logit"), ("poisson", "log")}
# halvings of a step before pdev counts as at its floor: a step of 2^-12 of the Newton
# step that still does not lower pdev leaves nothing above rounding to gain
MAX_HALVINGS = 12
_EPS = float(np.finfo(float).eps)


class RowModel:
    """Per-observation mathematics of the conditional distribution of y given eta."""

    def __init__(self, family: Family, y: Array, prior_weights: Array) -> None:
        if family.name not in ("binomial", "poisson"):
            raise FamilyError(
                f"mixed models with the {family.name} family are not available yet; "
                "use gaussian (a linear mixed model), binomial or poisson"
            )
        self.family = family
        self.y = y
        self.pw = prior_weights
        self.canonical = (family.name, family.link.name) in _CANONICAL
        if family.name == "binomial":  # log choose(m, k), m trials = prior weights
            m, k = np.round(prior_weights), np.round(prior_weights * y)
            self.log_const = (
                special.gammaln(m + 1) - special.gammaln(k + 1) - special.gammaln(m - k + 1)
            )
        else:
            self.log_const = -prior_weights * special.gammaln(y + 1.0)

    def minus2ll(self, eta: Array) -> Array:
        """-2 log p(y_i | eta_i) per row, every constant included."""
        y, pw = self.y, self.pw
        if self.canonical:  # log p = pw (y eta - b(eta)) + c, b = softplus or exp
            b = np.logaddexp(0.0, eta) if self.family.name == "binomial" else np.exp(eta)
            return -2.0 * (pw * (y * eta - b) + self.log_const)
        mu = self.family.link.inverse(eta)
        if self.family.name == "binomial":
            ll = pw * (special.xlogy(y, mu) + special.xlog1py(1.0 - y, -mu))
        else:
            ll = pw * (special.xlogy(y, mu) - mu)
        return -2.0 * (ll + self.log_const)

    def working(self, eta: Array) -> tuple[Array, Array, Array]:
        """mu, Fisher weights w and working residuals (y - mu) / mu'(eta)."""
        state = self.evaluate(eta, need_ll=False)
        return state.mu, state.w, state.wres

    def evaluate(self, eta: Array, need_ll: bool = True) -> RowState:
        """Everything PIRLS needs at eta, with one exp for the canonical links."""
        y, pw = self.y, self.pw
        if self.canonical and self.family.name == "binomial":
            e = np.exp(-np.abs(eta))
            p = 1.0 / (1.0 + e)  # mu where eta >= 0, 1 - mu where eta < 0
            ep = e * p
            mu = np.where(eta >= 0, p, ep)
            # mu (1 - mu) = e / (1 + e)^2 on both sides, not below R's floor for mu.eta
            var = np.maximum(ep * p, _EPS)
            m2ll = np.nan
            if need_ll:  # log p = pw (y eta - softplus(eta)) + c
                softplus = np.maximum(eta, 0.0) + np.log1p(e)
                m2ll = -2.0 * float(np.sum(pw * (y * eta - softplus) + self.log_const))
            return RowState(m2ll, mu, pw * var, (y - mu) / var)
        if self.canonical:  # poisson, log link
            mu = np.exp(np.minimum(eta, 700.0))
            m2ll = -2.0 * float(np.sum(pw * (y * eta - mu) + self.log_const)) if need_ll else 0.0
            dmu = np.maximum(mu, _EPS)  # R's floor for the log link's mu.eta
            return RowState(m2ll, mu, pw * dmu, (y - mu) / dmu)
        link = self.family.link
        mu = link.inverse(eta)
        dmu = link.mu_eta(eta)
        var = self.family.variance(mu)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            w = pw * dmu**2 / var
            wres = (y - mu) / dmu
            ok = np.isfinite(w) & np.isfinite(wres)
            w = np.where(ok, w, 0.0)
            wres = np.where(ok, wres, 0.0)
        m2ll = float(np.sum(self.minus2ll(eta))) if need_ll else 0.0
        return RowState(m2ll, mu, w, wres)

    def observed(self, eta: Array, state: RowState) -> Array | None:
        """Newton's weights for a non-canonical link, w - pw (y - mu) a'(eta) with
        a = mu'(eta) / V(mu) (a' by a central difference), or None where one is not
        positive (Fisher's weights are used then)."""
        link, fam = self.family.link, self.family

        def a(e: Array) -> Array:
            return link.mu_eta(e) / fam.variance(link.inverse(e))  # type: ignore[no-any-return]

        h = _DIFF_STEP * np.maximum(np.abs(eta), 1.0)
        with np.errstate(all="ignore"):
            slope = (a(eta + h) - a(eta - h)) / (2.0 * h)
            w_obs = state.w - self.pw * (self.y - state.mu) * slope
        used = state.w > 0
        if not (np.all(np.isfinite(w_obs[used])) and np.all(w_obs[used] > 0)):
            return None
        return np.where(used, w_obs, 0.0)


# relative step of the central difference for a'(eta) (rounding and truncation balance)
_DIFF_STEP = 1e-5


@dataclass(frozen=True)
class RowState:
    """-2 log p(y | eta) (summed), mu, Fisher weights and working residuals at eta."""

    m2ll: float
    mu: Array
    w: Array
    wres: Array


@dataclass(frozen=True)
class PirlsResult:
    u: Array
    beta: Array
    eta: Array  # linear predictor with the random effects
    mu: Array
    minus2ll: float  # -2 log p(y | u) at the modes
    factor: BlockedFactor  # at the modes' weights
    n_iter: int
    converged: bool

    @property
    def pdev(self) -> float:
        return self.minus2ll + float(self.u @ self.u)

    @property
    def laplace(self) -> float:
        """-2 log-likelihood by the Laplace approximation."""
        return self.pdev + self.factor.logdet_L


def pirls(
    structure: Structure,
    rows: RowModel,
    X: Array,
    offset: Array,
    theta: Array,
    beta: Array,
    u: Array,
    joint: bool = False,
    start_eta: Array | None = None,
    tol: float = 1e-10,
    max_iter: int = 60,
) -> PirlsResult:
    """Conditional modes u (and beta too when ``joint``) at theta.

    ``start_eta`` (joint only) starts from a linear predictor, such as the link of the
    family's starting means, instead of from (beta, u)."""
    s = structure
    p = X.shape[1]

    def eta_of(b: Array, v: Array) -> Array:
        return X @ b + offset + s.Zt_u(theta, v)

    eta = eta_of(beta, u) if start_eta is None else start_eta
    state = rows.evaluate(eta)
    pdev = state.m2ll + float(u @ u) if start_eta is None else np.inf
    DT = np.empty((p + 1 if joint else 1, X.shape[0]))  # the dense columns, as rows
    if joint:
        DT[:p] = X.T
    eta_fixed = X @ beta + offset
    converged = False
    it = 0
    newton = False  # the last system was Newton's (observed weights), not Fisher's
    while it < max_iter:
        it += 1
        # a non-canonical link takes Newton steps after the first (Fisher scoring alone
        # converges linearly, slowly where the random effects are large): same modes
        w, wres = state.w, state.wres
        obs = rows.observed(eta, state) if it > 1 and not rows.canonical else None
        newton = obs is not None
        if obs is not None:
            with np.errstate(all="ignore"):
                wres = np.where(obs > 0, state.w * state.wres / obs, 0.0)
            w = obs
        # working response, less what is held fixed: offset (and X beta for u alone)
        np.add(eta - (offset if joint else eta_fixed), wres, out=DT[-1])
        with np.errstate(over="ignore", invalid="ignore"):
            factor = BlockedFactor(s, theta, s.gram(w, DT))
        u_new, beta_new = factor.solve()
        du = u_new - u
        db = (beta_new - beta) if joint else np.zeros(p)
        size = max(float(np.max(np.abs(du), initial=0.0)), float(np.max(np.abs(db), initial=0.0)))
        if size < tol * (1.0 + float(np.max(np.abs(beta), initial=0.0))) and np.isfinite(pdev):
            converged = True
            break
        step = 1.0
        for _halving in range(MAX_HALVINGS):
            u_c = u + step * du
            b_c = beta + step * db if joint else beta
            eta_c = eta_of(b_c, u_c) if joint else eta_fixed + s.Zt_u(theta, u_c)
            state_c = rows.evaluate(eta_c)
            pdev_c = state_c.m2ll + float(u_c @ u_c)
            if pdev_c <= pdev + 1e-12 * abs(pdev) or not np.isfinite(pdev):
                break
            step /= 2.0
        else:  # no decrease along the Newton direction: pdev is at its floor
            converged = True
            break
        u, beta, eta, state, pdev = u_c, b_c, eta_c, state_c, pdev_c
    if not converged:  # the factor must be the one at the last modes' weights
        DT[-1] = 0.0
        with np.errstate(over="ignore", invalid="ignore"):
            factor = BlockedFactor(s, theta, s.gram(state.w, DT))
    elif newton:  # the Laplace approximation's factor has Fisher's weights at the modes
        np.add(eta - (offset if joint else eta_fixed), state.wres, out=DT[-1])
        with np.errstate(over="ignore", invalid="ignore"):
            factor = BlockedFactor(s, theta, s.gram(state.w, DT))
    return PirlsResult(u, beta, eta, state.mu, state.m2ll, factor, it, converged)
