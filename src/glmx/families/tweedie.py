"""Tweedie family with R's ``statmod::tweedie`` semantics: V(mu) = mu^p.

p = 0 is gaussian, 1 poisson, 2 gamma, 3 inverse gaussian; 1 < p < 2 is the compound
Poisson-gamma distribution with an exact zero mass.  Powers in (0, 1) define no
distribution and are refused.  The link defaults to log (statmod's default is the
power link mu^(1-p)); any link may be given.  Like statmod, no likelihood is computed:
AIC is NaN.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from glmx.errors import FamilyError, shown
from glmx.families.base import Array, Family, finite_within
from glmx.families.links import Link


class Tweedie(Family):
    default_link = "log"

    def __init__(self, power: float = 1.5, link: str | Link | None = None) -> None:
        if (
            not isinstance(power, (int, float, np.number))
            or not np.isfinite(power)
            or 0 < power < 1
        ):
            raise FamilyError(
                f"tweedie power must be 0 or at least 1 (no distribution has 0 < p < 1), "
                f"got {shown(power)}"
            )
        self.power = float(power)
        super().__init__(link)

    @property
    def concave(self) -> bool:
        # with the log link, y mu^(1-p)/(1-p) - mu^(2-p)/(2-p) is concave in eta for 1 <= p <= 2
        return self.link.name == "log" and 1.0 <= self.power <= 2.0

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"Tweedie(p={self.power:g})"

    def variance(self, mu: Array) -> Array:
        return mu**self.power

    def log_variance(self, mu: Array) -> Array:
        return self.power * np.log(mu)

    def unit_deviance(self, y: Array, mu: Array) -> Array:
        # statmod: 2 (y theta - kappa) with theta, kappa the canonical pieces at y1 = y + 0.1[y=0]
        p = self.power
        y1 = y + 0.1 * (y == 0)
        if p == 1:
            theta = np.log(y1 / mu)
        else:
            theta = (y1 ** (1 - p) - mu ** (1 - p)) / (1 - p)
        if p == 2:
            kappa = np.log(y1 / mu)
        else:
            kappa = (y ** (2 - p) - mu ** (2 - p)) / (2 - p)
        return 2.0 * (y * theta - kappa)

    def invalid_response(self, y: Array, weights: Array) -> tuple[NDArray[np.bool_], str] | None:
        p = self.power
        if p == 0:
            return ~np.isfinite(y), "a finite response"
        if p < 2:
            return (y < 0) | ~np.isfinite(y), f"a non-negative response (power {p:g})"
        return (y <= 0) | ~np.isfinite(y), f"a positive response (power {p:g})"

    def starting_mu(self, y: Array, weights: Array) -> Array:
        return y + 0.1 * (y == 0)

    def valid_mu(self, mu: Array) -> bool:
        return finite_within(mu, None if self.power == 0 else 0.0)

    def __repr__(self) -> str:
        return f"Tweedie(power={self.power:g}, link={self.link.name!r})"
