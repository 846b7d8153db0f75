"""Negative binomial with theta by maximum likelihood, alternating with IRLS exactly as
``MASS::glm.nb``: a Poisson fit starts mu; then theta <- theta.ml(y, mu) and an IRLS
fit at that theta alternate until |dLoglik|/d1 + |dtheta|/d2 < tol."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from glmx.errors import ConvergenceWarning
from glmx.families.exponential import Poisson
from glmx.families.negbin import NegativeBinomial, theta_info, theta_score
from glmx.solvers.irls import irls
from glmx.solvers.state import Array, IRLSInputs, IRLSResult


@dataclasses.dataclass(frozen=True)
class ThetaEstimate:
    theta: float
    se: float
    n_iter: int


THETA_MAX = 1e8  # beyond this the negative binomial is numerically the Poisson


def theta_ml(
    y: Array, mu: Array, w: Array, max_iter: int = 100, tol: float = 1e-10
) -> ThetaEstimate:
    """ML estimate of theta for fixed mu by Newton's method (MASS ``theta.ml``).

    Starts at theta = n / sum(w (y/mu - 1)^2) and iterates theta <- theta + score/info;
    the standard error is sqrt(1/info)."""
    n = float(np.sum(w))
    spread = float(np.sum(w * (y / mu - 1.0) ** 2))
    t0 = n / spread if spread > 0 else THETA_MAX
    delta = 1.0
    info = np.nan
    it = 0
    while it < max_iter and abs(delta) > tol * (1.0 + abs(t0)):
        it += 1
        t0 = abs(t0)
        info = theta_info(t0, y, mu, w)
        score = theta_score(t0, y, mu, w)
        if not (np.isfinite(info) and info > 0) or t0 >= THETA_MAX:
            # no overdispersion: the likelihood keeps rising towards the Poisson limit
            warnings.warn(
                f"negative binomial theta diverges (the data show no overdispersion); "
                f"theta is stopped at {min(t0, THETA_MAX):.4g}, where the model is "
                "practically Poisson",
                ConvergenceWarning,
                stacklevel=3,
            )
            t0 = min(t0, THETA_MAX)
            info = theta_info(t0, y, mu, w)
            break
        delta = score / info
        t0 = t0 + delta
    if it == max_iter:
        warnings.warn(
            "theta estimation reached its iteration limit", ConvergenceWarning, stacklevel=3
        )
    if t0 < 0:
        warnings.warn(
            "negative binomial theta estimate truncated at zero", ConvergenceWarning, stacklevel=3
        )
        t0 = 0.0
    if t0 > 0:
        info = theta_info(t0, y, mu, w)
    se = float(np.sqrt(1.0 / info)) if np.isfinite(info) and info > 0 else float("nan")
    return ThetaEstimate(theta=float(t0), se=se, n_iter=it)


def fit_negative_binomial(
    inp: IRLSInputs,
) -> tuple[IRLSResult, NegativeBinomial, ThetaEstimate, int]:
    """Alternate theta.ml and IRLS (glm.nb); returns the last fit, the family at the
    final theta, the theta estimate and the number of alternations."""
    fam = inp.family
    assert isinstance(fam, NegativeBinomial)
    wt = inp.total_weights
    if fam.estimate_theta:
        start_fit = irls(dataclasses.replace(inp, family=Poisson(link=fam.link)))
    else:
        start_fit = irls(inp)
    mu = start_fit.mu
    est = theta_ml(inp.y, mu, wt, tol=inp.tol)
    if not fam.estimate_theta:
        return start_fit, fam, est, 0
    current = fam.with_theta(est.theta)
    df_resid = float(np.sum(inp.freq_weights[inp.weights > 0])) - int((~start_fit.aliased).sum())
    d1 = np.sqrt(2.0 * max(1.0, df_resid))
    d2 = delta = 1.0

    def loglik(family: NegativeBinomial, mu: Array) -> float:
        return family.loglik(inp.y, mu, inp.weights, inp.freq_weights, 0.0)

    lm = loglik(current, mu)
    lm0 = lm + 2.0 * d1
    fit = start_fit
    n_alt = 0
    while n_alt < inp.max_iter and abs(lm0 - lm) / d1 + abs(delta) / d2 > inp.tol:
        n_alt += 1
        fit = irls(dataclasses.replace(inp, family=current, start=None, mustart=mu))
        t0 = current.theta
        est = theta_ml(inp.y, mu, wt, tol=inp.tol)  # at the previous mu, as glm.nb
        current = fam.with_theta(est.theta)
        mu = fit.mu
        assert t0 is not None
        delta = t0 - est.theta
        lm0, lm = lm, loglik(current, mu)
    if n_alt >= inp.max_iter:
        warnings.warn(
            "negative binomial: alternation limit reached before theta converged",
            ConvergenceWarning,
            stacklevel=3,
        )
    return fit, current, est, n_alt
