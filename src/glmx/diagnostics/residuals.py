"""GLM residuals as R's ``residuals.glm``, one value per row (frequency weights are not
applied: a row standing for three cases has the residual of each of them).

:func:`residuals` gives the four types of R from (y, mu, eta, weights);
:func:`extra_residuals` the ones that need the fit's dispersion or theta: randomized
quantile residuals (``statmod::qresid``) and Anscombe residuals."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from scipy import special

from glmx.errors import DataError, FamilyError
from glmx.families.base import Family
from glmx.families.exponential import Binomial, Gamma, Gaussian, InverseGaussian, Poisson
from glmx.families.negbin import NegativeBinomial
from glmx.families.quasi import Quasi
from glmx.families.tweedie import Tweedie

if TYPE_CHECKING:
    from glmx.results.glm import GLMResults

Array = NDArray[np.float64]

RESIDUAL_TYPES = ("deviance", "pearson", "working", "response")


def residuals(kind: str, family: Family, y: Array, mu: Array, eta: Array, weights: Array) -> Array:
    """Residuals of one type; ``weights`` are the prior weights."""
    if kind == "response":
        return y - mu
    if kind == "working":
        # (y - mu) / (d mu / d eta)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (y - mu) / family.link.mu_eta(eta)
    if kind == "pearson":
        # (y - mu) sqrt(w) / sqrt(V(mu))
        with np.errstate(divide="ignore", invalid="ignore"):
            return (y - mu) * np.sqrt(weights) / np.sqrt(family.variance(mu))
    if kind == "deviance":
        # sign(y - mu) sqrt(w d(y, mu))
        d = family.deviance_residuals_sq(y, mu, weights)
        return np.sign(y - mu) * np.sqrt(np.maximum(d, 0.0))
    raise DataError(f"unknown residual type {kind!r}; choose one of {', '.join(RESIDUAL_TYPES)}")


# --- quantile and Anscombe residuals (fit-level: they need the dispersion or theta) ------

EXTRA_RESIDUAL_TYPES = ("quantile", "anscombe")
_TWEEDIE_BLOCK = 2**20  # rows x series terms per block of the compound Poisson-gamma CDF


def extra_residuals(fit: GLMResults, type: str, seed: int | None = None) -> Array:  # noqa: A002
    """Residuals that need more of the fit than (y, mu, eta, weights).

    ``"quantile"``: randomized quantile residuals (Dunn & Smyth 1996), as
    ``statmod::qresid``; ``seed`` seeds numpy's ``default_rng`` for the discrete families.
    ``"anscombe"``: Anscombe residuals (McCullagh & Nelder 1989, section 2.4.2).
    Rows with prior weight 0 get NaN (they have no distribution in the model).
    """
    if type == "quantile":
        r = quantile_residuals(fit, seed)
    elif type == "anscombe":
        r = anscombe_residuals(fit)
    else:
        known = ", ".join(RESIDUAL_TYPES + EXTRA_RESIDUAL_TYPES)
        raise DataError(f"unknown residual type {type!r}; choose one of {known}")
    return np.where(fit._fit.weights > 0, r, np.nan)


def _normal_score(cdf: Array, sf: Array) -> Array:
    """Phi^-1(F), from whichever of F and 1 - F is the small tail (no rounding to 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(cdf < 0.5, special.ndtri(cdf), -special.ndtri(sf))


def _randomized(cdfs: tuple[Array, Array, Array, Array], u: Array) -> Array:
    """Phi^-1 of a uniform draw between F(y-1) = a and F(y) = b, given
    cdfs = (a, b, 1 - a, 1 - b): p = a + (b - a) u, computed as 1 - p = sa - (sa - sb) u
    in the upper half so that the upper tail keeps its precision."""
    a, b, sa, sb = cdfs
    return _normal_score(a + (b - a) * u, sa - (sa - sb) * u)


def _variance_power(fam: Family) -> float | None:
    """p of a power variance V(mu) = mu^p, None for other variance functions."""
    if isinstance(fam, Tweedie):
        return fam.power
    for cls, p in ((Gaussian, 0.0), (Poisson, 1.0), (Gamma, 2.0), (InverseGaussian, 3.0)):
        if isinstance(fam, cls):
            return p
    return None


def _pearson_dispersion(fit: GLMResults) -> float:
    # statmod's sum(w (y - mu)^2 / V(mu)) / df.residual
    return fit.pearson_chi2 / fit.df_resid if fit.df_resid > 0 else float("nan")


def quantile_residuals(fit: GLMResults, seed: int | None = None) -> Array:
    """Randomized quantile residuals r = Phi^-1(F(y; mu, phi)), ``statmod::qresid``.

    Continuous families (deterministic): gaussian r = sqrt(w) (y - mu) / sqrt(phi) with
    R's dispersion; Gamma with shape w/phi and mean mu; inverse gaussian with dispersion
    phi/w (statmod leaves w out there); tweedie 1 < p < 2 by the compound Poisson-gamma
    series, a draw in [0, F(0)] at y = 0; tweedie p = 0, 2, 3 as gaussian, Gamma,
    inverse gaussian.  phi is statmod's: the Pearson estimate, except deviance / df for
    the inverse gaussian; w are the prior weights.
    Discrete families: Phi^-1 of a uniform draw between F(y - 1) and F(y), for poisson,
    binomial (w trials, y a proportion) and negative binomial (theta); prior weights
    other than binomial trials are not used, as statmod.
    """
    f = fit._fit
    fam = f.family
    y, mu, w = f.y, f.mu, f.weights
    if fam.is_quasi:
        raise FamilyError(
            f"quantile residuals need a distribution; the {fam.name} family is a "
            "quasi-likelihood (use deviance or pearson residuals, or fit a negative "
            "binomial instead of quasipoisson)"
        )
    u: Array = np.random.default_rng(seed).random(size=(y.shape[0],))
    if isinstance(fam, Binomial):
        return _randomized(_binomial_cdfs(np.round(w * y), np.round(w), mu), u)
    if isinstance(fam, Poisson):
        return _randomized(_poisson_cdfs(y, mu), u)
    if isinstance(fam, NegativeBinomial):
        return _randomized(_negbin_cdfs(y, mu, fit.theta), u)
    if isinstance(fam, Gaussian):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sqrt(w) * (y - mu) / np.sqrt(fit.dispersion)  # statmod's qres.default
    power = _variance_power(fam)
    if power is None:
        raise FamilyError(f"quantile residuals are not available for the {fam.name} family")
    phi = _pearson_dispersion(fit)
    if isinstance(fam, InverseGaussian) and fit.df_resid > 0:
        phi = fit.deviance / fit.df_resid  # statmod's qres.invgauss: deviance / df.residual
    with np.errstate(divide="ignore", invalid="ignore"):
        phi_w = phi / w  # each row's dispersion
        if power == 0.0:
            return (y - mu) / np.sqrt(phi_w)
        if power == 2.0:
            # y ~ Gamma(shape 1/phi_w, scale mu phi_w)
            x = y / (mu * phi_w)
            return _normal_score(special.gammainc(1 / phi_w, x), special.gammaincc(1 / phi_w, x))
        if power == 3.0:
            return _invgauss_score(y, mu, phi_w)
        if 1.0 < power < 2.0:
            cdf, sf, p0 = _tweedie_cdfs(y, mu, phi_w, power)
            at_zero = y == 0
            cdf = np.where(at_zero, u * p0, cdf)  # statmod: runif(0, F(0)) at y = 0
            return _normal_score(cdf, np.where(at_zero, 1.0 - cdf, sf))
    raise FamilyError(
        f"quantile residuals of the tweedie family need a CDF: available for power 0, "
        f"1 < p < 2, 2 and 3, not {power:g}"
    )


def _poisson_cdfs(y: Array, mu: Array) -> tuple[Array, Array, Array, Array]:
    """F(y-1), F(y), 1 - F(y-1), 1 - F(y) of Poisson(mu): F(k) = Q(k + 1, mu)."""
    k = np.floor(y)
    pos = k >= 1
    km1 = np.where(pos, k - 1, 0.0)
    a = np.where(pos, special.gammaincc(km1 + 1, mu), 0.0)
    sa = np.where(pos, special.gammainc(km1 + 1, mu), 1.0)
    return a, special.gammaincc(k + 1, mu), sa, special.gammainc(k + 1, mu)


def _binomial_cdfs(k: Array, n: Array, p: Array) -> tuple[Array, Array, Array, Array]:
    """F(k-1), F(k), 1 - F(k-1), 1 - F(k) of Binomial(n, p):
    F(j) = I_{1-p}(n - j, j + 1) and 1 - F(j) = I_p(j + 1, n - j) for 0 <= j < n."""

    def cdf_sf(j: Array) -> tuple[Array, Array]:
        inside = (j >= 0) & (j < n)
        js = np.where(inside, j, 0.0)
        ns = np.where(inside, n, 1.0)
        cdf = np.where(inside, special.betainc(ns - js, js + 1, 1 - p), (j >= n) * 1.0)
        sf = np.where(inside, special.betainc(js + 1, ns - js, p), (j < 0) * 1.0)
        return cdf, sf

    a, sa = cdf_sf(k - 1)
    b, sb = cdf_sf(k)
    return a, b, sa, sb


def _negbin_cdfs(y: Array, mu: Array, theta: float) -> tuple[Array, Array, Array, Array]:
    """F(y-1), F(y), 1 - F(y-1), 1 - F(y) of NB(mu, theta): with p = theta / (mu + theta),
    F(k) = I_p(theta, k + 1) and 1 - F(k) = I_{1-p}(k + 1, theta) (statmod's pbeta)."""
    k = np.floor(y)
    p = theta / (mu + theta)
    q = mu / (mu + theta)
    pos = k >= 1
    km1 = np.where(pos, k - 1, 0.0)
    a = np.where(pos, special.betainc(theta, km1 + 1, p), 0.0)
    sa = np.where(pos, special.betainc(km1 + 1, theta, q), 1.0)
    return a, special.betainc(theta, k + 1, p), sa, special.betainc(k + 1, theta, q)


def _invgauss_score(y: Array, mu: Array, phi: Array) -> Array:
    """Phi^-1(F(y)) for the inverse gaussian of mean mu and dispersion phi (shape
    lambda = 1/phi):  F = Phi(a) + e^{2 lambda/mu} Phi(-b), a = (y/mu - 1) sqrt(lambda/y),
    b = (y/mu + 1) sqrt(lambda/y); in logs, from the lower tail below mu and the upper
    tail 1 - F = Phi(-a) - e^{2 lambda/mu} Phi(-b) above it, as statmod's pinvgauss."""
    lam = 1.0 / phi
    s = np.sqrt(lam / y)
    a, b = (y / mu - 1.0) * s, (y / mu + 1.0) * s
    second = 2.0 * lam / mu + special.log_ndtr(-b)  # log of e^{2 lambda/mu} Phi(-b)
    log_cdf = np.logaddexp(special.log_ndtr(a), second)
    log_sf = special.log_ndtr(-a) + np.log1p(-np.exp(second - special.log_ndtr(-a)))
    return np.where(y < mu, special.ndtri_exp(log_cdf), -special.ndtri_exp(log_sf))


def _tweedie_cdfs(y: Array, mu: Array, phi: Array, p: float) -> tuple[Array, Array, Array]:
    """F(y), 1 - F(y) and F(0) of the tweedie (1 < p < 2): Y = sum of N ~ Poisson(lambda)
    gamma jumps of shape alpha and scale g, lambda = mu^(2-p) / (phi (2-p)),
    alpha = (2-p)/(p-1), g = phi (p-1) mu^(p-1), so that
    F(y) = e^-lambda + sum_{n>=1} P(N = n) P(Gamma(n alpha, g) <= y).
    The series runs over lambda -+ (10 sqrt(lambda) + 10), beyond which the Poisson
    mass is below 1e-20: exact to rounding."""
    y, mu, phi = np.broadcast_arrays(y, mu, phi)
    lam = mu ** (2 - p) / (phi * (2 - p))
    alpha = (2 - p) / (p - 1)
    x = y / (phi * (p - 1) * mu ** (p - 1))  # y / g
    half = np.ceil(10 * np.sqrt(lam) + 10)
    lo = np.maximum(1.0, np.floor(lam) - half)
    width = (np.floor(lam) + half - lo + 1).astype(np.int64)
    cdf = np.exp(-lam)
    sf = np.zeros_like(cdf)
    order = np.argsort(-width, kind="stable")  # widest first: similar widths share a block
    start = 0
    while start < order.size:
        rows = order[start : start + max(1, _TWEEDIE_BLOCK // int(width[order[start]]))]
        m = int(width[rows].max())
        n = lo[rows, None] + np.arange(m)[None, :]
        valid = np.arange(m)[None, :] < width[rows, None]
        log_pois = n * np.log(lam[rows, None]) - lam[rows, None] - special.gammaln(n + 1)
        pois = np.where(valid, np.exp(log_pois), 0.0)
        cdf[rows] += np.sum(pois * special.gammainc(n * alpha, x[rows, None]), axis=1)
        sf[rows] = np.sum(pois * special.gammaincc(n * alpha, x[rows, None]), axis=1)
        start += rows.size
    return cdf, sf, np.exp(-lam)


def anscombe_residuals(fit: GLMResults) -> Array:
    """Anscombe residuals r_A = sqrt(w) (A(y) - A(mu)) / (A'(mu) sqrt(V(mu))) with
    A(u) = int V(t)^(-1/3) dt (McCullagh & Nelder 1989, 2.4.2); not divided by the
    dispersion, like R's deviance and Pearson residuals.  They depend on the variance
    function only, so quasi families are covered by their variance.

    V = mu^p (gaussian 0, poisson 1, Gamma 2, inverse gaussian 3, tweedie p):
    r_A = (y^c - mu^c) / (c mu^(p/6)) with c = 1 - p/3, and (log y - log mu) / sqrt(mu)
    at p = 3.  Binomial: A(u) = B(2/3, 2/3) I_u(2/3, 2/3), r_A divided by
    (mu (1 - mu))^(1/6).  Negative binomial: A(u) = 3/2 u^(2/3) 2F1(1/3, 2/3; 5/3; -u/theta),
    divided by V(mu)^(1/6).
    """
    f = fit._fit
    fam = f.family
    y, mu, w = f.y, f.mu, f.weights
    base = fam._base if isinstance(fam, Quasi) else fam
    root_w = np.sqrt(w)
    with np.errstate(divide="ignore", invalid="ignore"):
        if isinstance(base, Binomial):
            c = special.beta(2 / 3, 2 / 3)
            A_y, A_mu = (c * special.betainc(2 / 3, 2 / 3, v) for v in (y, mu))
            return root_w * (A_y - A_mu) / (mu * (1 - mu)) ** (1 / 6)
        if isinstance(base, NegativeBinomial):
            th = fit.theta
            A_y, A_mu = (
                1.5 * v ** (2 / 3) * special.hyp2f1(1 / 3, 2 / 3, 5 / 3, -v / th) for v in (y, mu)
            )
            return root_w * (A_y - A_mu) / base.variance(mu) ** (1 / 6)
        power = _variance_power(base)
        if power is None:
            raise FamilyError(
                f"Anscombe residuals are not available for the {fam.name} family (they are "
                "defined here for power variances, binomial and negative binomial)"
            )
        if power == 3.0:
            return root_w * (np.log(y) - np.log(mu)) / np.sqrt(mu)
        c = 1.0 - power / 3.0
        return root_w * (y**c - mu**c) / (c * mu ** (power / 6.0))
