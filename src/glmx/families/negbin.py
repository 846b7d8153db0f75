"""Negative binomial family (R's ``MASS::negative.binomial`` / ``glm.nb``).

Var(y) = mu + mu^2 / theta.  With ``theta=None`` the fit estimates theta by maximum
likelihood alternating with IRLS exactly as ``MASS::glm.nb`` (see
:mod:`glmx.solvers.negbin`); with a number, theta is fixed, as R's
``glm(family = negative.binomial(theta))``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import special

from glmx.errors import FamilyError
from glmx.families.base import Array, Family, finite_within
from glmx.families.exponential import kl_poisson, non_negative
from glmx.families.links import Link


class NegativeBinomial(Family):
    default_link = "log"
    allowed_links = ("log", "sqrt", "identity")
    fixed_dispersion = True

    def __init__(self, theta: float | None = None, link: str | Link | None = None) -> None:
        if theta is not None and not (
            isinstance(theta, (int, float, np.number)) and np.isfinite(theta) and theta > 0
        ):
            raise FamilyError(f"negative binomial theta must be a positive number, got {theta!r}")
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
        return 2.0 * (kl_poisson(y, mu) - kl_poisson(y + th, mu + th))

    def loglik(
        self, y: Array, mu: Array, weights: Array, freq_weights: Array, deviance: float
    ) -> float:
        th = self._theta()
        term = (
            special.gammaln(th + y)
            - special.gammaln(th)
            - special.gammaln(y + 1.0)
            + th * np.log(th)
            + special.xlogy(y, mu + (y == 0))
            - (th + y) * np.log(th + mu)
        )
        return float(np.sum(weights * freq_weights * term))

    def invalid_response(self, y: Array, weights: Array) -> tuple[NDArray[np.bool_], str] | None:
        return non_negative(y)

    def starting_mu(self, y: Array, weights: Array) -> Array:
        return y + (y == 0) / 6.0

    def valid_mu(self, mu: Array) -> bool:
        return finite_within(mu, 0.0)

    def __repr__(self) -> str:
        return f"NegativeBinomial(theta={self.theta!r}, link={self.link.name!r})"


def theta_score(theta: float, y: Array, mu: Array, w: Array) -> float:
    """d loglik / d theta (MASS ``theta.ml``'s score)."""
    return float(
        np.sum(
            w
            * (
                special.digamma(theta + y)
                - special.digamma(theta)
                + np.log(theta)
                + 1.0
                - np.log(theta + mu)
                - (y + theta) / (mu + theta)
            )
        )
    )


def theta_info(theta: float, y: Array, mu: Array, w: Array) -> float:
    """- d^2 loglik / d theta^2 (MASS ``theta.ml``'s information)."""
    return float(
        np.sum(
            w
            * (
                -special.polygamma(1, theta + y)
                + special.polygamma(1, theta)
                - 1.0 / theta
                + 2.0 / (mu + theta)
                - (y + theta) / (mu + theta) ** 2
            )
        )
    )
