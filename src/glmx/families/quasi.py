"""Quasi-likelihood families: quasibinomial, quasipoisson and R's general
``quasi(link, variance)``.  Mean model and deviance as the likelihood families; the
dispersion is estimated (t tests) and there is no log-likelihood, so AIC is NaN."""

from __future__ import annotations

import numpy as np

from glmx.errors import FamilyError
from glmx.families.base import Array, Family
from glmx.families.exponential import Binomial, Gamma, Gaussian, InverseGaussian, Poisson
from glmx.families.links import Link


class _QuasiLikelihood(Family):
    """Mixin: the dispersion is estimated and there is no likelihood (AIC is NaN)."""

    fixed_dispersion = False
    is_quasi = True
    warn_noninteger = False

    def loglik(
        self, y: Array, mu: Array, weights: Array, freq_weights: Array, deviance: float
    ) -> float:
        return float("nan")


class QuasiBinomial(_QuasiLikelihood, Binomial):
    name = "quasibinomial"


class QuasiPoisson(_QuasiLikelihood, Poisson):
    name = "quasipoisson"


# variance name -> (a family with that variance and deviance, R's mustart rule)
_QUASI_VARIANCES: dict[str, type[Family]] = {
    "constant": Gaussian,
    "mu(1-mu)": Binomial,
    "mu": Poisson,
    "mu^2": Gamma,
    "mu^3": InverseGaussian,
}


class Quasi(Family):
    """R's ``quasi(link = "identity", variance = "constant")``.

    ``variance`` is one of ``"constant"``, ``"mu(1-mu)"``, ``"mu"``, ``"mu^2"``,
    ``"mu^3"``; the unit deviance is the matching quasi-deviance, as R's.
    """

    name = "quasi"
    default_link = "identity"
    is_quasi = True

    def __init__(self, link: str | Link | None = None, variance: str = "constant") -> None:
        if variance not in _QUASI_VARIANCES:
            raise FamilyError(
                f"unknown quasi variance {variance!r}; choose one of "
                f"{', '.join(repr(v) for v in _QUASI_VARIANCES)}"
            )
        super().__init__(link)
        self.variance_name = variance
        self._base = _QUASI_VARIANCES[variance](link=self.link)

    @property
    def concave(self) -> bool:
        return self._base.concave

    @property
    def constant_weights(self) -> bool:
        return self._base.constant_weights

    def variance(self, mu: Array) -> Array:
        return self._base.variance(mu)

    def unit_deviance(self, y: Array, mu: Array) -> Array:
        if self.variance_name == "mu^2":
            # R's quasi: pmax(-2 (log(y/mu) - (y - mu)/mu), 0) with log(1)=0 at y = 0
            return np.maximum(self._base.unit_deviance(y, mu), 0.0)
        return self._base.unit_deviance(y, mu)

    def starting_mu(self, y: Array, weights: Array) -> Array:
        if self.variance_name == "mu(1-mu)":
            return np.clip(y, 0.001, 0.999)
        if self.variance_name == "constant":
            return np.array(y, dtype=float)
        return y + 0.1 * (y == 0)

    def valid_mu(self, mu: Array) -> bool:
        if self.variance_name == "mu(1-mu)":
            return bool(np.all((mu > 0) & (mu < 1)))
        if self.variance_name in ("mu", "mu^2", "mu^3"):
            return bool(np.all(mu > 0))
        return True

    def __repr__(self) -> str:
        return f"Quasi(link={self.link.name!r}, variance={self.variance_name!r})"
