"""Link functions g(mu) = eta, with inverse, derivative and a valid-eta check.

Each link follows R's ``make.link`` numerically, including its clamps in the tails, so
that fits agree with R to many digits and stay finite at |eta| of 40 or 700:
logit maps |eta| > 30 to DBL_EPSILON-distant probabilities, probit and cauchit clamp
eta at their quantile of DBL_EPSILON, cloglog caps eta at 700, log floors mu at
DBL_EPSILON.  ``mu_eta`` is d mu / d eta; ``deriv`` is d eta / d mu = 1 / mu_eta.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from glmx.errors import FamilyError, shown
from glmx.families.names import did_you_mean

EPS = float(np.finfo(float).eps)
_TINY = float(np.finfo(float).tiny)  # the smallest positive normal number
_LOGIT_THRESH = 30.0
_PROBIT_THRESH = float(-special.ndtri(EPS))  # R: -qnorm(.Machine$double.eps)
_CAUCHIT_THRESH = float(1.0 / np.tan(np.pi * EPS))  # R: -qcauchy(.Machine$double.eps)

Array = NDArray[np.float64]


class Link:
    """Base class of links.  A subclass implements ``link``, ``inverse`` and ``mu_eta``."""

    name: str = "link"

    def link(self, mu: ArrayLike) -> Array:
        """eta = g(mu)."""
        raise NotImplementedError

    def inverse(self, eta: ArrayLike) -> Array:
        """mu = g^{-1}(eta)."""
        raise NotImplementedError

    def mu_eta(self, eta: ArrayLike) -> Array:
        """d mu / d eta, evaluated at eta."""
        raise NotImplementedError

    def mu_eta_at(self, eta: Array, mu: Array) -> Array:
        """d mu / d eta at eta, given mu = g^{-1}(eta) already computed (a link whose
        derivative is a function of mu reuses it)."""
        return self.mu_eta(eta)

    def deriv(self, mu: ArrayLike) -> Array:
        """d eta / d mu = g'(mu)."""
        return 1.0 / self.mu_eta(self.link(mu))

    def valid_eta(self, eta: ArrayLike) -> bool:
        """Whether every eta lies in the link's domain (R's ``valideta``)."""
        return True

    def __call__(self, mu: ArrayLike) -> Array:
        return self.link(mu)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.__dict__.items()))))


def _arr(x: ArrayLike) -> Array:
    return np.asarray(x, dtype=float)


class Identity(Link):
    name = "identity"

    def link(self, mu: ArrayLike) -> Array:
        return _arr(mu).copy()

    def inverse(self, eta: ArrayLike) -> Array:
        return _arr(eta).copy()

    def mu_eta(self, eta: ArrayLike) -> Array:
        return np.ones_like(_arr(eta))


class Log(Link):
    name = "log"

    def link(self, mu: ArrayLike) -> Array:
        return np.log(_arr(mu))

    def inverse(self, eta: ArrayLike) -> Array:
        # mu = exp(eta), floored at the smallest positive normal number (R floors it at
        # eps, which makes every mean below 2.2e-16 wrong: responses near e^-300 fit
        # here); above 709.78 it overflows to inf, an invalid mean, as in R
        with np.errstate(over="ignore"):
            return np.maximum(np.exp(_arr(eta)), _TINY)

    def mu_eta(self, eta: ArrayLike) -> Array:
        return self.inverse(eta)

    def mu_eta_at(self, eta: Array, mu: Array) -> Array:
        return mu  # the same numbers as mu_eta(eta): d exp(eta) / d eta = exp(eta)


class Logit(Link):
    name = "logit"

    def link(self, mu: ArrayLike) -> Array:
        return special.logit(_arr(mu))

    def inverse(self, eta: ArrayLike) -> Array:
        # R: exp(eta) / (1 + exp(eta)) with exp(eta) clamped to [eps, 1/eps] beyond |eta| > 30
        e = self._clamped_exp(eta)
        den = e + 1.0
        return np.divide(e, den, out=den)

    def mu_eta(self, eta: ArrayLike) -> Array:
        # exp(eta) / (1 + exp(eta))^2, eps beyond |eta| > 30
        eta = _arr(eta)
        e = np.exp(np.clip(eta, -_LOGIT_THRESH, _LOGIT_THRESH))
        den = e + 1.0
        den *= den
        np.divide(e, den, out=e)
        if e.size and np.max(np.abs(eta)) > _LOGIT_THRESH:
            e[np.abs(eta) > _LOGIT_THRESH] = EPS
        return e

    @staticmethod
    def _clamped_exp(eta: ArrayLike) -> Array:
        """exp(eta) as R's logit link: eps below eta = -30, 1/eps above 30 (each step in
        place: at a million rows a fresh temporary costs as much as the arithmetic)."""
        eta = _arr(eta)
        e = np.exp(np.clip(eta, -_LOGIT_THRESH, _LOGIT_THRESH))
        if e.size and np.max(np.abs(eta)) > _LOGIT_THRESH:
            e[eta < -_LOGIT_THRESH] = EPS
            e[eta > _LOGIT_THRESH] = 1.0 / EPS
        return e


class Probit(Link):
    name = "probit"

    def link(self, mu: ArrayLike) -> Array:
        return special.ndtri(_arr(mu))

    def inverse(self, eta: ArrayLike) -> Array:
        return special.ndtr(np.clip(_arr(eta), -_PROBIT_THRESH, _PROBIT_THRESH))

    def mu_eta(self, eta: ArrayLike) -> Array:
        # max(phi(eta), eps)
        return np.maximum(np.exp(-0.5 * _arr(eta) ** 2) / np.sqrt(2 * np.pi), EPS)


class Cauchit(Link):
    name = "cauchit"

    def link(self, mu: ArrayLike) -> Array:
        return np.tan(np.pi * (_arr(mu) - 0.5))

    def inverse(self, eta: ArrayLike) -> Array:
        eta = np.clip(_arr(eta), -_CAUCHIT_THRESH, _CAUCHIT_THRESH)
        return 0.5 + np.arctan(eta) / np.pi

    def mu_eta(self, eta: ArrayLike) -> Array:
        return np.maximum(1.0 / (np.pi * (1.0 + _arr(eta) ** 2)), EPS)


class CLogLog(Link):
    name = "cloglog"

    def link(self, mu: ArrayLike) -> Array:
        return np.log(-np.log1p(-_arr(mu)))

    def inverse(self, eta: ArrayLike) -> Array:
        # 1 - exp(-exp(eta)), kept inside [eps, 1 - eps]
        mu = -np.expm1(-np.exp(np.minimum(_arr(eta), 700.0)))
        return np.clip(mu, EPS, 1.0 - EPS)

    def mu_eta(self, eta: ArrayLike) -> Array:
        # exp(eta) * exp(-exp(eta)), with eta capped at 700
        eta = np.minimum(_arr(eta), 700.0)
        with np.errstate(over="ignore"):
            out = np.exp(eta - np.exp(eta))
        return np.maximum(out, EPS)


class LogLog(Link):
    name = "loglog"

    def link(self, mu: ArrayLike) -> Array:
        return -np.log(-np.log(_arr(mu)))

    def inverse(self, eta: ArrayLike) -> Array:
        # exp(-exp(-eta)), kept inside [eps, 1 - eps]
        mu = np.exp(-np.exp(-np.maximum(_arr(eta), -700.0)))
        return np.clip(mu, EPS, 1.0 - EPS)

    def mu_eta(self, eta: ArrayLike) -> Array:
        eta = np.maximum(_arr(eta), -700.0)
        with np.errstate(over="ignore"):
            out = np.exp(-eta - np.exp(-eta))
        return np.maximum(out, EPS)


class Inverse(Link):
    name = "inverse"

    def link(self, mu: ArrayLike) -> Array:
        return 1.0 / _arr(mu)

    def inverse(self, eta: ArrayLike) -> Array:
        return 1.0 / _arr(eta)

    def mu_eta(self, eta: ArrayLike) -> Array:
        return -1.0 / _arr(eta) ** 2

    def valid_eta(self, eta: ArrayLike) -> bool:
        eta = _arr(eta)
        return bool(np.all(np.isfinite(eta)) and np.all(eta != 0))


class InverseSquared(Link):
    name = "inverse_squared"

    def link(self, mu: ArrayLike) -> Array:
        return 1.0 / _arr(mu) ** 2

    def inverse(self, eta: ArrayLike) -> Array:
        return 1.0 / np.sqrt(_arr(eta))

    def mu_eta(self, eta: ArrayLike) -> Array:
        # d/deta eta^(-1/2) = -1 / (2 eta^(3/2))
        return -1.0 / (2.0 * _arr(eta) ** 1.5)

    def valid_eta(self, eta: ArrayLike) -> bool:
        eta = _arr(eta)
        return bool(np.all(np.isfinite(eta)) and np.all(eta > 0))


class Sqrt(Link):
    name = "sqrt"

    def link(self, mu: ArrayLike) -> Array:
        return np.sqrt(_arr(mu))

    def inverse(self, eta: ArrayLike) -> Array:
        return _arr(eta) ** 2

    def mu_eta(self, eta: ArrayLike) -> Array:
        return 2.0 * _arr(eta)

    def valid_eta(self, eta: ArrayLike) -> bool:
        eta = _arr(eta)
        return bool(np.all(np.isfinite(eta)) and np.all(eta > 0))


class Power(Link):
    """eta = mu^p (p != 0); p = 0 is the log link, as in R's ``power()``."""

    def __init__(self, power: float = 1.0) -> None:
        if not np.isfinite(power):
            raise FamilyError(f"power link needs a finite exponent, got {shown(power)}")
        self.power = float(power)

    @property
    def name(self) -> str:  # type: ignore[override]
        return "log" if self.power == 0 else f"mu^{self.power:g}"

    def link(self, mu: ArrayLike) -> Array:
        if self.power == 0:
            return np.log(_arr(mu))
        return _arr(mu) ** self.power

    def inverse(self, eta: ArrayLike) -> Array:
        if self.power == 0:
            return Log().inverse(eta)
        with np.errstate(invalid="ignore"):
            return np.maximum(_arr(eta) ** (1.0 / self.power), EPS)

    def mu_eta(self, eta: ArrayLike) -> Array:
        if self.power == 0:
            return Log().mu_eta(eta)
        lam = self.power
        with np.errstate(invalid="ignore", divide="ignore"):
            return (1.0 / lam) * _arr(eta) ** (1.0 / lam - 1.0)

    def valid_eta(self, eta: ArrayLike) -> bool:
        eta = _arr(eta)
        if self.power == 0 or self.power == 1:
            return True
        return bool(np.all(np.isfinite(eta)) and np.all(eta > 0))

    def __repr__(self) -> str:
        return f"Power({self.power:g})"


_LINKS: dict[str, type[Link]] = {
    "identity": Identity,
    "log": Log,
    "logit": Logit,
    "probit": Probit,
    "cauchit": Cauchit,
    "cloglog": CLogLog,
    "loglog": LogLog,
    "inverse": Inverse,
    "inverse_squared": InverseSquared,
    "sqrt": Sqrt,
}
_ALIASES = {"1/mu^2": "inverse_squared", "1/mu": "inverse", "inverse.squared": "inverse_squared"}

LINK_NAMES = tuple(_LINKS)


def get_link(link: str | Link) -> Link:
    """A link object from a name (``"logit"``, R's ``"1/mu^2"``...) or a Link instance."""
    if isinstance(link, Link):
        return link
    if not isinstance(link, str):
        raise FamilyError(f"link must be a name or a glmx.links.Link, got {type(link).__name__}")
    key = _ALIASES.get(link, link)
    if key not in _LINKS:
        known = {**{n: n for n in _LINKS}, **_ALIASES}
        raise FamilyError(
            f"unknown link {link!r}{did_you_mean(link, known)}; known links: "
            f"{', '.join(LINK_NAMES)} or glmx.links.Power(p)"
        )
    return _LINKS[key]()


__all__ = [
    "Link",
    "Identity",
    "Log",
    "Logit",
    "Probit",
    "Cauchit",
    "CLogLog",
    "LogLog",
    "Inverse",
    "InverseSquared",
    "Sqrt",
    "Power",
    "get_link",
    "LINK_NAMES",
]
