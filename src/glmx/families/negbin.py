"""Negative binomial family (R's ``MASS::negative.binomial`` / ``glm.nb``).

Var(y) = mu + mu^2 / theta.  With ``theta=None`` the fit estimates theta by maximum
likelihood jointly with the coefficients, as ``MASS::glm.nb`` (see
:mod:`glmx.solvers.negbin`); with a number, theta is fixed, as R's
``glm(family = negative.binomial(theta))``.  The log-likelihood and its theta
derivatives keep their precision as theta grows (they tend to the Poisson ones).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import special

from glmx.errors import FamilyError, shown
from glmx.families.base import Array, Family, finite_within
from glmx.families.exponential import kl_poisson, non_negative
from glmx.families.links import Link


class NegativeBinomial(Family):
    default_link = "log"
    allowed_links = ("log", "sqrt", "identity")
    concave_links = ("log",)  # y eta - (y + theta) log(exp(eta) + theta)
    fixed_dispersion = True

    def __init__(self, theta: float | None = None, link: str | Link | None = None) -> None:
        if theta is not None and not (
            isinstance(theta, (int, float, np.number)) and np.isfinite(theta) and theta > 0
        ):
            raise FamilyError(
                f"negative binomial theta must be a positive number, got {shown(theta)}"
            )
        self.theta = None if theta is None else float(theta)  # before the link check's message
        super().__init__(link)
        # glm.nb counts theta in AIC when it is estimated
        self.n_scale_params = 1 if theta is None else 0
        self.estimate_theta = theta is None

    @property
    def name(self) -> str:  # type: ignore[override]
        if self.theta is None:
            return "Negative Binomial"
        return f"Negative Binomial({round(self.theta, 4)})"  # MASS: format(round(theta, 4))

    def with_theta(self, theta: float) -> NegativeBinomial:
        """A copy of this family at a given theta (keeps whether theta was estimated)."""
        fam = NegativeBinomial(theta, link=self.link)
        fam.n_scale_params = self.n_scale_params
        fam.estimate_theta = self.estimate_theta
        return fam

    def _theta(self) -> float:
        if self.theta is None:
            raise FamilyError("negative binomial theta is not set yet (it is estimated by the fit)")
        return self.theta

    def variance(self, mu: Array) -> Array:
        return mu + mu**2 / self._theta()

    def unit_deviance(self, y: Array, mu: Array) -> Array:
        # 2 (y log(max(1, y)/mu) - (y + theta) log((y + theta)/(mu + theta)))
        # = 2 (K(y, mu) - K(y + theta, mu + theta)) with K(a, b) = a log(a/b) - (a - b),
        # the stable form of glmx.families.exponential.kl_poisson (y log 1 = 0 at y = 0)
        th = self._theta()
        y, mu = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(mu, dtype=float))
        out = 2.0 * (kl_poisson(y, mu) - kl_poisson(y + th, mu + th))
        # where theta is small next to the means the two K's are nearly equal and their
        # difference is rounding of their size: the same deviance as
        # y (log1p(theta/mu) - log1p(theta/y)) - theta log1p((y - mu)/(mu + theta))
        big = mu > 1e3 * th
        if np.any(big):
            yb, mb = y[big], mu[big]
            with np.errstate(divide="ignore", invalid="ignore"):
                lead = np.where(yb > 0, yb * (np.log1p(th / mb) - np.log1p(th / yb)), 0.0)
            out = np.array(out)
            out[big] = 2.0 * (lead - th * np.log1p((yb - mb) / (mb + th)))
        return np.maximum(out, 0.0)

    def loglik(
        self, y: Array, mu: Array, weights: Array, freq_weights: Array, deviance: float
    ) -> float:
        return float(np.sum(weights * freq_weights * log_pmf(self._theta(), y, mu)))

    def invalid_response(self, y: Array, weights: Array) -> tuple[NDArray[np.bool_], str] | None:
        return non_negative(y)

    def starting_mu(self, y: Array, weights: Array) -> Array:
        return y + (y == 0) / 6.0

    def valid_mu(self, mu: Array) -> bool:
        return finite_within(mu, 0.0)

    def __repr__(self) -> str:
        return f"NegativeBinomial(theta={self.theta!r}, link={self.link.name!r})"


# Large theta: the terms of the log-likelihood and of its theta derivatives are O(1) or
# O(log theta) each, while their sums per observation are O(1/theta), O(1/theta^2) and
# O(1/theta^3).  Written in differences that are small themselves, with the asymptotic
# series of log Gamma, digamma and trigamma for the part that would cancel, they keep
# their relative precision up to theta ~ 1e12 (the Poisson limit).
_SERIES_THETA = 20.0  # the series below are accurate to 2e-15 for arguments >= 20


def _stirling(z: Any) -> Any:
    """log Gamma(z) - ((z - 1/2) log z - z + log(2 pi) / 2), for z >= 20."""
    r = 1.0 / (z * z)
    return (1 / 12 - r * (1 / 360 - r * (1 / 1260 - r / 1680))) / z


def _digamma_tail(z: Any) -> Any:
    """digamma(z) - (log z - 1/(2z)), for z >= 20."""
    r = 1.0 / (z * z)
    return -r * (1 / 12 - r * (1 / 120 - r * (1 / 252 - r * (1 / 240 - r / 132))))


def _trigamma_tail(z: Any) -> Any:
    """trigamma(z) - (1/z + 1/(2 z^2)), for z >= 20."""
    r = 1.0 / (z * z)
    return (1 / 6 - r * (1 / 30 - r * (1 / 42 - r * (1 / 30 - r * 5 / 66)))) / (z * z * z)


def _lgamma_ratio(theta: float, y: Array) -> Array:
    """log Gamma(theta + y) - log Gamma(theta) - y log(theta)."""
    if theta < _SERIES_THETA:
        return np.asarray(special.gammaln(theta + y) - special.gammaln(theta) - y * np.log(theta))
    z = theta + y
    return np.asarray((z - 0.5) * np.log1p(y / theta) - y + (_stirling(z) - _stirling(theta)))


def log_pmf(theta: float, y: Array, mu: Array) -> Array:
    """The negative binomial log probability of each y, as
    lgamma(theta + y) - lgamma(theta) - lgamma(y + 1) + theta log(theta / (theta + mu))
    + y log(mu / (theta + mu)), written so that it tends to the Poisson log probability
    without cancellation as theta grows."""
    return np.asarray(
        _lgamma_ratio(theta, y)
        - special.gammaln(y + 1.0)
        + special.xlogy(y, mu)
        - (theta + y) * np.log1p(mu / theta)
    )


def _log1p_minus(u: Array, ratio: Array) -> Array:
    """log1p(u) - u, given also ratio = 1 + u computed from its own terms: a series for
    small |u| (no cancellation), log(ratio) near u = -1 (theta + y << theta + mu)."""
    with np.errstate(divide="ignore"):
        out = np.where(u < -0.5, np.log(ratio), np.log1p(u)) - u
    small = np.abs(u) < 0.01
    if np.any(small):
        us = u[small]
        out[small] = -(us * us) * (
            1 / 2
            - us * (1 / 3 - us * (1 / 4 - us * (1 / 5 - us * (1 / 6 - us * (1 / 7 - us / 8)))))
        )
    return np.asarray(out)


def theta_score(theta: float, y: Array, mu: Array, w: Array) -> float:
    """d loglik / d theta at fixed mu (MASS ``theta.ml``'s score,
    sum w (digamma(theta + y) - digamma(theta) + log(theta) + 1 - log(theta + mu)
    - (y + theta) / (mu + theta)))."""
    u = (y - mu) / (mu + theta)
    if theta < _SERIES_THETA:
        dig = special.digamma(theta + y) - special.digamma(theta) - np.log1p(y / theta)
    else:
        z = theta + y
        dig = y / (2.0 * theta * z) + (_digamma_tail(z) - _digamma_tail(theta))
    # log(theta + y) - log(theta + mu) - (y - mu)/(theta + mu) = log1p(u) - u
    return float(np.sum(w * (dig + _log1p_minus(u, (theta + y) / (theta + mu)))))


def theta_info(theta: float, y: Array, mu: Array, w: Array) -> float:
    """- d^2 loglik / d theta^2 at fixed mu (MASS ``theta.ml``'s information,
    sum w (trigamma(theta) - trigamma(theta + y) - 1/theta + 2/(mu + theta)
    - (y + theta)/(mu + theta)^2))."""
    z = theta + y
    b = theta + mu
    # -1/z + 2/b - z/b^2 = -(y - mu)^2 / (z b^2)
    quad = -((y - mu) ** 2) / (z * b * b)
    if theta < _SERIES_THETA:
        tri = special.polygamma(1, theta) - special.polygamma(1, z) - y / (theta * z)
    else:
        # trigamma(theta) - trigamma(z) - (1/theta - 1/z)
        tri = y * (2.0 * theta + y) / (2.0 * theta**2 * z**2) + (
            _trigamma_tail(theta) - _trigamma_tail(z)
        )
    return float(np.sum(w * (tri + quad)))
