"""Negative binomial with theta by maximum likelihood: the joint maximum over
(beta, theta), found on the profile likelihood in t = log(theta).

For a given theta, IRLS maximizes the likelihood over beta: l_p(t) is the profile
log-likelihood, and its derivative is exactly g(t) = theta * d loglik / d theta at the
profiled mu (the beta score is zero there).  The search

1. fits the Poisson model (theta = infinity) and starts at the theta maximizing the
   likelihood at its mu (``theta_ml``, MASS's estimate on the log scale, safeguarded);
2. steps uphill in t, by Newton steps with the information at fixed mu, growing, each
   IRLS fit warm-started from the nearest one, until g changes sign (a bracket of the
   maximum) or t reaches a limit;
3. closes the bracket with Brent's root finder on g (superlinear, never leaves it).

Where l_p still increases at theta = ``THETA_MAX`` the data show no overdispersion: the
maximum is the Poisson limit (l_p tends to the Poisson log-likelihood from below), and
the fit at ``THETA_MAX`` is that limit to rounding (its log-likelihood is the Poisson
one to ~1e-10).  l_p tends to -inf as theta -> 0 whenever a weighted y is positive, so
the maximum is never at theta = 0.  ``MASS::glm.nb`` alternates IRLS and ``theta.ml``
instead, which stalls on heavily zero-inflated counts and divides by a zero information
on under-dispersed ones; where it converges the two agree.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
from scipy import optimize

from glmx.errors import ConvergenceError, ConvergenceWarning
from glmx.families.exponential import Poisson
from glmx.families.negbin import NegativeBinomial, theta_info, theta_score
from glmx.solvers.irls import irls
from glmx.solvers.state import Array, IRLSInputs, IRLSResult


@dataclasses.dataclass(frozen=True)
class ThetaEstimate:
    theta: float
    se: float
    n_iter: int
    diverged: bool = False  # theta at THETA_MAX: no overdispersion, the Poisson limit


THETA_MAX = 1e10  # the Poisson limit: the likelihood there is Poisson's to ~1e-10
THETA_MIN = 1e-10
T_MAX, T_MIN = math.log(THETA_MAX), math.log(THETA_MIN)
SEARCH_TOL = 1e-10  # IRLS tolerance of the profile fits (at most the fit's own)
T_XTOL = 1e-10  # the bracket of the maximum in log(theta) at the end


def _theta_of(t: float) -> float:
    """theta = exp(t), exactly THETA_MAX and THETA_MIN at the ends of the range."""
    return THETA_MAX if t >= T_MAX else THETA_MIN if t <= T_MIN else math.exp(t)


def _no_overdispersion_warning(theta: float) -> None:
    warnings.warn(
        "negative binomial theta diverges (the data show no overdispersion): the "
        f"maximum likelihood is the Poisson limit, reported at theta = {theta:.4g}, "
        "with the Poisson log-likelihood",
        ConvergenceWarning,
        stacklevel=4,
    )


def _theta_se(theta: float, y: Array, mu: Array, w: Array) -> float:
    info = theta_info(theta, y, mu, w)
    return float(1.0 / math.sqrt(info)) if np.isfinite(info) and info > 0 else float("nan")


def _fixed_mu_max(y: Array, mu: Array, w: Array, max_iter: int, tol: float) -> tuple[float, int]:
    """The t = log(theta) maximizing the likelihood at fixed mu, within [T_MIN, T_MAX]:
    Newton's method in t, safeguarded by a bracket of the root of the t score
    h(t) = theta * score (bisection when a step leaves it); and the iterations taken."""
    pos = w > 0
    y, mu, w = y[pos], mu[pos], w[pos]
    n = float(np.sum(w))
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = float(np.sum(w * (y / mu - 1.0) ** 2))
    # MASS's start; y = mu exactly: no dispersion at all; a zero mean: a neutral start
    t = T_MAX if spread == 0 else math.log(n / spread) if spread < math.inf else 0.0
    t = min(max(t, T_MIN), T_MAX)
    lo, hi = T_MIN, T_MAX
    for it in range(1, max_iter + 1):
        th = _theta_of(t)
        h = th * theta_score(th, y, mu, w)
        if h > 0:
            lo = t
        else:
            hi = t
        if (h > 0 and t >= T_MAX) or (h <= 0 and t <= T_MIN):
            return t, it
        # dh/dt = h - theta^2 info
        dh = h - th * th * theta_info(th, y, mu, w)
        step = -h / dh if dh < 0 else (1.0 if h > 0 else -1.0)
        new = t + step
        if not lo < new < hi:
            new = 0.5 * (lo + hi)
        if abs(new - t) <= tol * (1.0 + abs(t)):
            return new, it
        t = new
    warnings.warn("theta estimation reached its iteration limit", ConvergenceWarning, stacklevel=3)
    return t, max_iter


def theta_ml(
    y: Array, mu: Array, w: Array, max_iter: int = 100, tol: float = 1e-10
) -> ThetaEstimate:
    """ML estimate of theta for fixed mu (MASS ``theta.ml``), by safeguarded Newton in
    log(theta); the standard error is sqrt(1/info).  When the likelihood increases up to
    THETA_MAX (no overdispersion at this mu) theta is THETA_MAX and ``diverged`` True."""
    t, it = _fixed_mu_max(y, mu, w, max_iter, tol)
    theta = _theta_of(t)
    diverged = t >= T_MAX
    return ThetaEstimate(theta, _theta_se(theta, y, mu, w), it, diverged)


@dataclasses.dataclass
class _Point:
    """The profile at one t: the IRLS fit at theta = exp(t), its log-likelihood, the
    profile derivative g = theta * score, and the warnings the fit gave."""

    t: float
    fit: IRLSResult
    loglik: float
    g: float
    caught: list[warnings.WarningMessage]


class _Profile:
    def __init__(self, inp: IRLSInputs, fam: NegativeBinomial, first: IRLSResult) -> None:
        self.inp = dataclasses.replace(inp, tol=min(inp.tol, SEARCH_TOL), mustart=None)
        self.fam = fam
        self.first = first
        self.points: list[_Point] = []
        self.n_fits = 0

    def warm(self, t: float) -> IRLSResult:
        if not self.points:
            return self.first
        return min(self.points, key=lambda p: abs(p.t - t)).fit

    def at(self, t: float) -> _Point:
        for p in self.points:
            if p.t == t:
                return p
        inp = self.inp
        theta = _theta_of(t)
        family = self.fam.with_theta(theta)
        near = self.warm(t)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                start = np.where(near.aliased, 0.0, near.coef)
                fit = irls(dataclasses.replace(inp, family=family, start=start))
            except ConvergenceError:  # the coefficients give invalid means: start from mu
                caught.clear()
                fit = irls(dataclasses.replace(inp, family=family, start=None, mustart=near.mu))
        self.n_fits += 1
        wt = inp.total_weights
        ll = family.loglik(inp.y, fit.mu, inp.weights, inp.freq_weights, 0.0)
        g = theta * theta_score(theta, inp.y, fit.mu, wt)
        if not (np.isfinite(ll) and np.isfinite(g)):
            raise ConvergenceError(
                f"negative binomial: the likelihood is not finite at theta = {theta:.4g}; "
                "check the data (extreme counts or fitted means)"
            )
        point = _Point(t, fit, ll, g, list(caught))
        self.points.append(point)
        return point


def _newton_step(prof: _Profile, p: _Point) -> float:
    """The Newton step in t for g, with the information at fixed mu (the profile's own
    curvature is smaller in size, so the step tends to fall short of the root); a unit
    step uphill where the curvature is not negative."""
    inp = prof.inp
    theta = _theta_of(p.t)
    dg = p.g - theta * theta * theta_info(theta, inp.y, p.fit.mu, inp.total_weights)
    return -p.g / dg if dg < 0 and np.isfinite(dg) else math.copysign(1.0, p.g)


def _search(prof: _Profile, t0: float, max_iter: int) -> tuple[_Point, bool, bool]:
    """The maximum of the profile: (the point, converged, diverged to THETA_MAX)."""
    p = prof.at(t0)
    limit = 2.0  # the largest step in t, doubled while the steps keep one direction
    for _ in range(max_iter):
        if p.g == 0.0:
            return p, True, False
        up = p.g > 0
        if up and p.t >= T_MAX:
            return p, True, True
        if not up and p.t <= T_MIN:  # l_p -> -inf as theta -> 0: not a maximum
            return p, False, False
        step = _newton_step(prof, p)
        if (step > 0) != up:
            step = math.copysign(1.0, p.g)
        # a bit past the Newton point, so that the next point likely brackets the root
        step = math.copysign(min(1.5 * abs(step) + 1e-3, limit), step)
        q = prof.at(min(max(p.t + step, T_MIN), T_MAX))
        if (q.g > 0) != up or q.g == 0.0:
            a, b = (p, q) if up else (q, p)  # g(a) > 0 >= g(b), a.t < b.t
            return _brent(prof, a, b, max_iter)
        limit *= 2.0
        p = q
    return p, False, False


def _brent(prof: _Profile, a: _Point, b: _Point, max_iter: int) -> tuple[_Point, bool, bool]:
    if b.g == 0.0:
        return b, True, False
    t, res = optimize.brentq(
        lambda t: prof.at(t).g,
        a.t,
        b.t,
        xtol=T_XTOL,
        rtol=4 * np.finfo(float).eps,
        maxiter=max_iter,
        full_output=True,
        disp=False,
    )
    # the root's point, or the better end of the last bracket when brentq returned an
    # end it did not evaluate again
    near = [p for p in prof.points if abs(p.t - t) <= 2 * T_XTOL * (1 + abs(t))]
    best = max(near or [prof.at(t)], key=lambda p: p.loglik)
    return best, bool(res.converged), False


def fit_negative_binomial(
    inp: IRLSInputs,
) -> tuple[IRLSResult, NegativeBinomial, ThetaEstimate, int]:
    """The joint maximum over (beta, theta) (or the fit at the given theta); returns the
    fit, the family at the final theta, the theta estimate and the number of IRLS fits
    of the theta search.  ``converged`` of the fit is True only at the joint maximum
    (or its Poisson limit): the IRLS fit converged and the theta score is zero within
    the bracket."""
    fam = inp.family
    assert isinstance(fam, NegativeBinomial)
    if not fam.estimate_theta:
        assert fam.theta is not None
        return irls(inp), fam, ThetaEstimate(fam.theta, float("nan"), 0), 0
    with warnings.catch_warnings():  # only a start: its own convergence does not matter
        warnings.simplefilter("ignore")
        try:
            poisson = irls(dataclasses.replace(inp, family=Poisson(link=fam.link)))
        except ConvergenceError:  # e.g. an identity link the Poisson fit cannot keep valid
            poisson = irls(dataclasses.replace(inp, family=fam.with_theta(1.0)))
    y, wt = inp.y, inp.total_weights
    if not np.any((y > 0) & (wt > 0)):
        # every count is zero: the fitted means go to 0, where theta leaves the likelihood
        prof = _Profile(inp, fam, poisson)
        p = prof.at(T_MAX)
        warnings.warn(
            "negative binomial: every count is zero, so theta cannot be estimated; the fit "
            f"is the Poisson one, reported at theta = {THETA_MAX:.4g}",
            ConvergenceWarning,
            stacklevel=3,
        )
        fit = dataclasses.replace(p.fit, converged=False)
        return fit, fam.with_theta(THETA_MAX), ThetaEstimate(THETA_MAX, float("nan"), 0, True), 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0, _ = _fixed_mu_max(y, poisson.mu, wt, inp.max_iter, SEARCH_TOL)
    prof = _Profile(inp, fam, poisson)
    best, converged, diverged = _search(prof, t0, inp.max_iter)
    for wmsg in best.caught:  # the warnings of the reported fit only
        warnings.warn_explicit(wmsg.message, wmsg.category, wmsg.filename, wmsg.lineno)
    theta = _theta_of(best.t)
    fit = best.fit
    if diverged:
        _no_overdispersion_warning(theta)
        se = float("nan")
    else:
        se = _theta_se(theta, y, fit.mu, wt)
        if not converged:
            warnings.warn(
                f"negative binomial: the theta search stopped at theta = {theta:.4g} "
                f"without reaching the maximum of the likelihood (score {best.g:.3g})",
                ConvergenceWarning,
                stacklevel=3,
            )
    converged = converged and fit.converged
    if converged != fit.converged:
        fit = dataclasses.replace(fit, converged=converged)
    est = ThetaEstimate(theta, se, prof.n_fits, diverged)
    return fit, fam.with_theta(theta), est, prof.n_fits
