"""The exponential-dispersion families of R's ``stats``: gaussian, binomial, poisson,
Gamma and inverse gaussian.  Formulas are R's ``family`` objects, term by term."""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import NDArray
from scipy import special

from glmx.errors import DataError, DataWarning
from glmx.families.base import Array, DevianceFunction, Family, any_block, finite_within
from glmx.vectors import is_constant

_SERIES_R = 1e-2  # below this |r| the series below are exact to rounding


def kl_poisson(y: Array, mu: Array) -> Array:
    """y log(y/mu) - (y - mu) (0 log 0 = 0), without cancellation where y is near mu.

    With r = (y - mu)/mu it equals mu ((1+r) log1p(r) - r), whose series
    sum_{k>=2} (-1)^k r^k / (k (k-1)) is used for small |r|; so deviance residuals of
    observations fitted almost exactly are not rounding noise of size sqrt(eps y)."""
    y, mu = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(mu, dtype=float))
    diff = y - mu
    # in place where possible: fresh n-vectors cost page faults as well as the arithmetic
    with np.errstate(divide="ignore", invalid="ignore"):
        # y log(y/mu) with 0 log 0 = 0 (as scipy's xlogy, which is ten times slower)
        out = np.divide(y, mu, out=np.empty(y.shape))
        out += y == 0.0  # log(1) = 0 where y = 0
        np.log(out, out=out)
        out *= y
        out -= diff
        r = np.divide(diff, mu, out=np.empty(y.shape))
        np.abs(r, out=r)
    small = np.flatnonzero(r < _SERIES_R)
    if small.size:
        rs = diff[small] / mu[small]
        series = rs**2 * (
            1 / 2 - rs * (1 / 6 - rs * (1 / 12 - rs * (1 / 20 - rs * (1 / 30 - rs / 42))))
        )
        out[small] = mu[small] * series
    return np.asarray(out)


def kl_gamma(y: Array, mu: Array) -> Array:
    """(y - mu)/mu - log(y/mu) = r - log1p(r), by its series r^2/2 - r^3/3 + ... for small r."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (y - mu) / mu
        direct = r - np.log(np.where(y == 0, 1.0, y / mu))  # log(1) at y = 0, as R
    small = np.abs(r) < _SERIES_R
    if small.any():
        rs = r[small]
        direct = np.array(direct)
        direct[small] = rs**2 * (
            1 / 2 - rs * (1 / 3 - rs * (1 / 4 - rs * (1 / 5 - rs * (1 / 6 - rs / 7))))
        )
    return np.asarray(direct)


class Gaussian(Family):
    name = "gaussian"
    default_link = "identity"
    canonical_link = "identity"
    constant_weight_links = ("identity",)  # W = w
    allowed_links = ("inverse", "log", "identity")
    n_scale_params = 1

    def variance(self, mu: Array) -> Array:
        return np.ones_like(mu)

    def unit_deviance(self, y: Array, mu: Array) -> Array:
        return (y - mu) ** 2

    def loglik(
        self, y: Array, mu: Array, weights: Array, freq_weights: Array, deviance: float
    ) -> float:
        # -2 ll = n (log(2 pi dev / n) + 1) - sum(log w), sigma^2 = dev / n (ML).
        # R counts zero-weight rows in n and so returns -Inf; glmx leaves them out, which
        # is the log-likelihood of the same fit on the rows with positive weight.
        pos = weights > 0
        n = float(np.sum(freq_weights[pos]))
        sum_log_w = float(np.sum(freq_weights[pos] * np.log(weights[pos])))
        with np.errstate(divide="ignore"):  # an exact fit (deviance 0): +inf, as R
            return -0.5 * (n * (np.log(2 * np.pi * deviance / n) + 1.0) - sum_log_w)

    def starting_mu(self, y: Array, weights: Array) -> Array:
        if self.link.name in ("log", "inverse") and np.any(y <= 0):
            raise DataError(
                f"the gaussian family with the {self.link.name} link needs a positive "
                "response for its starting values; give start= coefficients"
            )
        return np.array(y, dtype=float)


class Binomial(Family):
    """Binomial: y a 0/1 response, or a proportion with the number of trials as weights."""

    name = "binomial"
    default_link = "logit"
    canonical_link = "logit"
    concave_links = ("probit", "cloglog", "loglog", "log")  # log-concave cdfs; log(mu)
    allowed_links = ("logit", "probit", "cloglog", "cauchit", "log", "loglog")
    fixed_dispersion = True
    warn_noninteger = True  # R warns of non-integer successes for binomial, not quasi

    def variance(self, mu: Array) -> Array:
        return mu * (1.0 - mu)

    def unit_deviance(self, y: Array, mu: Array) -> Array:
        # 2 (y log(y/mu) + (1-y) log((1-y)/(1-mu))); the linear terms of the two
        # Poisson-like pieces cancel, so each can be taken in its stable form
        return 2.0 * (kl_poisson(y, mu) + kl_poisson(1.0 - y, 1.0 - mu))

    def deviance_function(self, y: Array, weights: Array) -> DevianceFunction:
        if not np.all((y == 0.0) | (y == 1.0)):
            return super().deviance_function(y, weights)
        success = y == 1.0

        def deviance(mu: Array, lo: int = 0, hi: int | None = None) -> float:
            # a 0/1 response: d = -2 log(mu) for a success, -2 log(1 - mu) for a failure
            p = np.subtract(1.0, mu)
            np.copyto(p, mu, where=success[lo:hi])
            return -2.0 * float(weights[lo:hi] @ np.log(p, out=p))

        return deviance

    def loglik(
        self, y: Array, mu: Array, weights: Array, freq_weights: Array, deviance: float
    ) -> float:
        # sum f * log dbinom(round(m y), round(m), mu), m = trials (the prior weights)
        m = np.round(weights)
        k = np.round(weights * y)
        logpmf = (
            special.gammaln(m + 1)
            - special.gammaln(k + 1)
            - special.gammaln(m - k + 1)
            + special.xlogy(k, mu)
            + special.xlog1py(m - k, -mu)
        )
        return float(np.sum(np.where(weights > 0, freq_weights * logpmf, 0.0)))

    def invalid_response(self, y: Array, weights: Array) -> tuple[NDArray[np.bool_], str] | None:
        return (y < 0) | (y > 1), "a 0/1 response or a proportion in [0, 1]"

    def warn_response(self, y: Array, weights: Array, name: str) -> None:

        def fractional(lo: int, hi: int) -> bool:
            successes = weights[lo:hi] * y[lo:hi]
            return bool(np.any(np.abs(successes - np.round(successes)) > 1e-3))

        if self.warn_noninteger and any_block(y.shape[0], fractional):
            warnings.warn(
                f"non-integer number of successes in a binomial glm (response {name!r} "
                "times weights); use quasibinomial for non-count proportions",
                DataWarning,
                stacklevel=5,
            )

    def starting_mu(self, y: Array, weights: Array) -> Array:
        return (weights * y + 0.5) / (weights + 1.0)

    def valid_mu(self, mu: Array) -> bool:
        return finite_within(mu, 0.0, 1.0)


def _non_integer(y: Array) -> NDArray[np.bool_]:
    rounded = np.round(y)
    if np.array_equal(rounded, y):  # the usual case, in two passes
        return np.zeros(np.shape(y), dtype=bool)
    return np.abs(y - rounded) > 1e-7 * np.maximum(1.0, np.abs(y))


def non_negative(y: Array) -> tuple[NDArray[np.bool_], str]:
    return (y < 0) | ~np.isfinite(y), "non-negative counts"


def positive(y: Array) -> tuple[NDArray[np.bool_], str]:
    return (y <= 0) | ~np.isfinite(y), "a positive response"


class Poisson(Family):
    name = "poisson"
    default_link = "log"
    canonical_link = "log"
    concave_links = ("identity", "sqrt")  # y log(eta) - eta, 2 y log(eta) - eta^2
    constant_weight_links = ("sqrt",)  # W = w (2 eta)^2 / eta^2 = 4 w
    allowed_links = ("log", "identity", "sqrt")
    fixed_dispersion = True
    warn_noninteger = True

    def variance(self, mu: Array) -> Array:
        return np.array(mu, dtype=float)

    def unit_deviance(self, y: Array, mu: Array) -> Array:
        # 2 (y log(y/mu) - (y - mu))
        return 2.0 * kl_poisson(y, mu)

    def deviance_function(self, y: Array, weights: Array) -> DevianceFunction:
        # R's sum of dev.resids, grouped as 2 [sum w y log(y'/mu) - sum w y + sum w mu]
        # (y' = y with 1 for 0, so that 0 log 0 = 0): four passes over a block against a
        # dozen for kl_poisson's cancellation-free form, which single residuals need but a
        # total of n terms does not (its rounding is eps times sum w y)
        y_safe = np.where(y == 0.0, 1.0, y)
        unit = is_constant(weights, 1.0)
        wy = y if unit else weights * y

        def deviance(mu: Array, lo: int = 0, hi: int | None = None) -> float:
            ratio = np.divide(y_safe[lo:hi], mu)
            total = float(wy[lo:hi] @ np.log(ratio, out=ratio)) - float(np.sum(wy[lo:hi]))
            total += float(np.sum(mu)) if unit else float(weights[lo:hi] @ mu)
            return 2.0 * total

        return deviance

    def loglik(
        self, y: Array, mu: Array, weights: Array, freq_weights: Array, deviance: float
    ) -> float:
        if _non_integer(y).any():
            # R's dpois gives -Inf (AIC Inf) for non-integer counts; a NaN says it plainly.
            return float("nan")
        logpmf = special.xlogy(y, mu) - mu - special.gammaln(y + 1.0)
        return float(np.sum(weights * freq_weights * logpmf))

    def invalid_response(self, y: Array, weights: Array) -> tuple[NDArray[np.bool_], str] | None:
        return non_negative(y)

    def warn_response(self, y: Array, weights: Array, name: str) -> None:
        if self.warn_noninteger and any_block(
            y.shape[0], lambda lo, hi: bool(_non_integer(y[lo:hi]).any())
        ):
            warnings.warn(
                f"non-integer counts in poisson response {name!r}: the log-likelihood and "
                "AIC are not defined (NaN); quasipoisson fits the same mean model",
                DataWarning,
                stacklevel=5,
            )

    def starting_mu(self, y: Array, weights: Array) -> Array:
        return y + 0.1

    def valid_mu(self, mu: Array) -> bool:
        return finite_within(mu, 0.0)


class Gamma(Family):
    name = "Gamma"
    default_link = "inverse"
    canonical_link = "inverse"
    concave_links = ("log",)  # -y exp(-eta) - eta
    constant_weight_links = ("log",)  # W = w mu^2 / mu^2 = w
    allowed_links = ("inverse", "identity", "log")
    n_scale_params = 1

    def variance(self, mu: Array) -> Array:
        return mu**2

    def log_variance(self, mu: Array) -> Array:
        return 2.0 * np.log(mu)

    def unit_deviance(self, y: Array, mu: Array) -> Array:
        # -2 (log(y/mu) - (y - mu)/mu)
        return 2.0 * kl_gamma(y, mu)

    def loglik(
        self, y: Array, mu: Array, weights: Array, freq_weights: Array, deviance: float
    ) -> float:
        # R: disp = dev / sum(w); ll = sum w * log dgamma(y, 1/disp, scale = mu disp).
        # statsmodels uses the Pearson scale here and so reports a different AIC; glmx is R's.
        wt = weights * freq_weights
        disp = deviance / float(np.sum(wt))
        if disp == 0.0:  # an exact fit: R's dgamma(y, Inf, scale = 0) is NaN
            return np.nan
        shape = 1.0 / disp
        scale = mu * disp
        logpdf = (
            (shape - 1.0) * np.log(y) - y / scale - special.gammaln(shape) - shape * np.log(scale)
        )
        return float(np.sum(np.where(wt > 0, wt * logpdf, 0.0)))

    def invalid_response(self, y: Array, weights: Array) -> tuple[NDArray[np.bool_], str] | None:
        return positive(y)

    def valid_mu(self, mu: Array) -> bool:
        return finite_within(mu, 0.0)


class InverseGaussian(Family):
    name = "inverse.gaussian"
    default_link = "inverse_squared"
    canonical_link = "inverse_squared"
    concave_links = ("inverse",)  # -(y eta - 1)^2 / y
    allowed_links = ("inverse_squared", "inverse", "identity", "log")
    n_scale_params = 1

    def variance(self, mu: Array) -> Array:
        return mu**3

    def log_variance(self, mu: Array) -> Array:
        return 3.0 * np.log(mu)

    def unit_deviance(self, y: Array, mu: Array) -> Array:
        return (y - mu) ** 2 / (y * mu**2)

    def loglik(
        self, y: Array, mu: Array, weights: Array, freq_weights: Array, deviance: float
    ) -> float:
        # -2 ll = sum(w) (1 + log(2 pi dev / sum(w))) + 3 sum(w log y)
        wt = weights * freq_weights
        sw = float(np.sum(wt))
        pos = wt > 0
        with np.errstate(divide="ignore"):  # an exact fit (deviance 0): +inf, as R
            m2ll = sw * (1.0 + np.log(2 * np.pi * deviance / sw)) + 3.0 * np.sum(
                wt[pos] * np.log(y[pos])
            )
        return -0.5 * float(m2ll)

    def invalid_response(self, y: Array, weights: Array) -> tuple[NDArray[np.bool_], str] | None:
        return positive(y)

    def valid_mu(self, mu: Array) -> bool:
        return finite_within(mu, 0.0)
