"""Prediction intervals for new observations, by simulation.

A prediction interval bounds a *new* response y0 at covariates x0, not its mean, so it
carries both the uncertainty of the estimates and the spread of the distribution around
mu0.  For each of ``n_sim`` draws s:

    phi_s  = phi_hat * df / chi2_df                     (estimated-dispersion families)
    beta_s = beta_hat + sqrt(phi_s / phi_hat) L z_s,    z_s ~ N(0, I), L L' = vcov
    y0_s   ~ F(mu = g^-1(x0' beta_s + offset), phi_s)   (the fitted family's distribution)

and the interval is the ((1 - level) / 2, (1 + level) / 2) quantiles of y0_s per row.
Scaling the coefficient draw by sqrt(phi_s / phi_hat) draws (beta, phi) jointly from the
flat-prior posterior of the normal linear model, so for the gaussian family with
identity link the interval is, up to Monte Carlo error, the exact t interval
x0'beta_hat +/- t_df s sqrt(1 + x0' (X'X)^-1 x0) of R's ``predict.lm(interval =
"prediction")``.  With a sandwich ``vcov`` (``cov_type``) the coefficient draw is not
rescaled.  Fixed-dispersion families (binomial, poisson, negative binomial) use phi = 1;
negative binomial keeps theta at its estimate.

New observations have prior weight 1 unless ``weights`` are given: binomial trials (the
response is then a proportion of that many trials), or the precision weight w of
Var(y) = phi V(mu) / w for the gaussian, Gamma, inverse gaussian and tweedie families.
For discrete families the bounds are attainable values (the ``inverted_cdf`` quantile),
so a bound may sit on either side of the point prediction mu0 when mu0 is near 0.

Work is vectorized over draws and rows, in chunks of rows that keep the simulated block
near 50 MB; the draws come from ``numpy.random.default_rng(seed)`` in a fixed order, so
one seed gives identical bounds for the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from glmx.errors import DataError, FamilyError
from glmx.families.base import Family
from glmx.families.exponential import Binomial, Gamma, Gaussian, InverseGaussian, Poisson
from glmx.families.negbin import NegativeBinomial
from glmx.families.tweedie import Tweedie

if TYPE_CHECKING:
    from glmx.results.glm import GLMResults

Array = NDArray[np.float64]
# simulate(rng, mu (draws x rows), phi (draws x 1), w (rows,)) -> new responses
Sampler = Callable[[np.random.Generator, Array, Array, Array], Array]

_CHUNK_BYTES = 50_000_000
_N_BLOCKS = 6  # draws x rows arrays alive at once: eta, mu, y and the samplers' temporaries
_TINY = float(np.finfo(float).tiny)


def prediction_interval(
    fit: GLMResults,
    X: Any,
    offset: ArrayLike,
    level: float = 0.95,
    n_sim: int = 2000,
    seed: int | None = None,
    *,
    weights: ArrayLike | None = None,
) -> tuple[Array, Array]:
    """Lower and upper bounds of a ``level`` prediction interval for a new observation
    at each row of ``X`` (numpy or scipy.sparse, every design column including aliased
    ones) with link-scale ``offset``; ``weights`` are the new rows' prior weights
    (default 1: one binomial trial).  Rows with a missing value give NaN bounds."""
    family = fit.family
    sampler, discrete = _sampler(family)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    if int(n_sim) != n_sim or n_sim < 1:
        raise ValueError(f"n_sim must be a positive integer, got {n_sim!r}")
    n_sim = int(n_sim)

    kept = ~fit._fit.aliased
    Xk = X[:, kept] if sp.issparse(X) else np.asarray(X, dtype=float)[:, kept]
    n = Xk.shape[0]
    off = np.broadcast_to(np.asarray(offset, dtype=float).ravel(), (n,))
    w = _new_weights(family, weights, n)
    rng = np.random.default_rng(seed)

    # dispersion draws: phi_s = phi_hat df / chi2_df (its sampling distribution)
    phi_hat = fit.dispersion
    if family.fixed_dispersion:
        phi = np.ones(n_sim)
        scale = np.ones(n_sim)
    else:
        df = fit.df_resid
        if not (df > 0 and np.isfinite(phi_hat) and phi_hat > 0):
            raise DataError(
                f"a prediction interval needs an estimated dispersion, but the fit has "
                f"{df} residual degrees of freedom and dispersion {phi_hat}"
            )
        phi = phi_hat * df / rng.chisquare(df, n_sim)
        model_based = fit.cov_type == "model"
        scale = np.sqrt(phi / phi_hat) if model_based else np.ones(n_sim)

    # coefficient draws: beta_s = beta_hat + scale_s L z_s with L L' = vcov (eigen root,
    # valid for a positive semi-definite vcov)
    beta_hat = fit._fit.coef[kept]
    lam, U = np.linalg.eigh(fit.vcov.to_numpy())
    root = U * np.sqrt(np.clip(lam, 0.0, None))
    z = rng.standard_normal((n_sim, beta_hat.shape[0]))
    B = beta_hat + scale[:, None] * (z @ root.T)  # draws x coefficients

    finite_rows = _finite_rows(Xk) & np.isfinite(off)
    rows = np.flatnonzero(finite_rows)
    lower = np.full(n, np.nan)
    upper = np.full(n, np.nan)
    probs = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    method: Literal["inverted_cdf", "linear"] = "inverted_cdf" if discrete else "linear"
    chunk = max(1, _CHUNK_BYTES // (8 * n_sim * _N_BLOCKS))
    link = family.link
    for start in range(0, rows.shape[0], chunk):  # chunks of rows, not single rows
        idx = rows[start : start + chunk]
        eta = np.asarray(Xk[idx] @ B.T).T + off[idx]  # draws x rows: x0' beta_s + offset
        with np.errstate(over="ignore"):
            mu = link.inverse(eta)
        y = sampler(rng, mu, phi[:, None], w[idx])
        q = np.quantile(y, probs, axis=0, method=method)
        lower[idx], upper[idx] = q[0], q[1]
    return lower, upper


def _finite_rows(X: Any) -> NDArray[np.bool_]:
    """Rows of X without NaN or inf (R's na.pass rows give NaN bounds)."""
    if sp.issparse(X):
        csr = sp.csr_matrix(X)
        bad = csr.copy()
        bad.data = (~np.isfinite(csr.data)).astype(float)
        return np.asarray(bad.sum(axis=1)).ravel() == 0
    return np.isfinite(X).all(axis=1)


def _new_weights(family: Family, weights: ArrayLike | None, n: int) -> Array:
    """Prior weights of the new rows, checked for what the family can simulate."""
    if weights is None:
        return np.ones(n)
    w = np.broadcast_to(np.asarray(weights, dtype=float).ravel(), (n,)).copy()
    if not (np.all(np.isfinite(w)) and np.all(w > 0)):
        raise DataError("weights of the new rows must be positive and finite")
    if isinstance(family, Binomial) and not np.all(w == np.round(w)):
        raise DataError("binomial weights of the new rows are numbers of trials: integers")
    if isinstance(family, (Poisson, NegativeBinomial)) and not np.all(w == 1.0):
        raise DataError(f"the {family.name} family simulates new rows with weight 1 only")
    return w


def _sampler(family: Family) -> tuple[Sampler, bool]:
    """The family's simulator of new responses and whether its values are discrete."""
    if family.is_quasi:
        raise FamilyError(
            f"the {family.name} family is a quasi-likelihood: it defines a mean and a "
            "variance but no distribution to simulate new observations from, so it has "
            "no prediction interval (use interval='confidence' for the mean)"
        )
    if isinstance(family, Gaussian):
        return _gaussian, False
    if isinstance(family, Binomial):
        return _binomial, True
    if isinstance(family, Poisson):
        return _poisson, True
    if isinstance(family, Gamma):
        return _gamma, False
    if isinstance(family, InverseGaussian):
        return _inverse_gaussian, False
    if isinstance(family, NegativeBinomial):
        theta = family._theta()
        return (lambda rng, mu, phi, w: _negative_binomial(rng, mu, theta)), True
    if isinstance(family, Tweedie):
        return _tweedie_sampler(family.power)
    raise FamilyError(
        f"no distribution is known to simulate new observations of the {family.name} "
        "family, so it has no prediction interval"
    )


def _tweedie_sampler(p: float) -> tuple[Sampler, bool]:
    if p == 0:
        return _gaussian, False
    if p == 1:
        return _scaled_poisson, True
    if 1 < p < 2:
        return (lambda rng, mu, phi, w: _compound_poisson_gamma(rng, mu, phi / w, p)), False
    if p == 2:
        return _gamma, False
    if p == 3:
        return _inverse_gaussian, False
    raise FamilyError(
        f"tweedie power {p:g}: new observations can be simulated for p = 0, 1, 2, 3 and "
        "1 < p < 2 only, so there is no prediction interval"
    )


# --- one simulator per distribution: mu is draws x rows, phi draws x 1, w rows ----------
def _gaussian(rng: np.random.Generator, mu: Array, phi: Array, w: Array) -> Array:
    # y ~ N(mu, phi / w)
    return mu + np.sqrt(phi / w) * rng.standard_normal(mu.shape)


def _binomial(rng: np.random.Generator, mu: Array, phi: Array, w: Array) -> Array:
    # y = k / m with k ~ Binomial(m, mu), m = w trials
    m = w.astype(np.int64)
    return rng.binomial(m, np.clip(mu, 0.0, 1.0)) / w


def _poisson(rng: np.random.Generator, mu: Array, phi: Array, w: Array) -> Array:
    # y ~ Poisson(mu); a draw with mu < 0 (identity link) is clamped to 0
    return rng.poisson(np.maximum(mu, 0.0)).astype(float)


def _scaled_poisson(rng: np.random.Generator, mu: Array, phi: Array, w: Array) -> Array:
    # tweedie p = 1: y = phi' N with N ~ Poisson(mu / phi'), phi' = phi / w
    d = phi / w
    return d * rng.poisson(np.maximum(mu, 0.0) / d)


def _gamma(rng: np.random.Generator, mu: Array, phi: Array, w: Array) -> Array:
    # y ~ Gamma(shape k = w / phi, scale mu / k): mean mu, variance phi mu^2 / w
    k = np.broadcast_to(w / phi, mu.shape)
    return rng.gamma(k, np.maximum(mu, _TINY) / k)


def _inverse_gaussian(rng: np.random.Generator, mu: Array, phi: Array, w: Array) -> Array:
    # y ~ IG(mean mu, shape lambda = w / phi): variance mu^3 / lambda = phi mu^3 / w.
    # numpy's wald(mean, scale) is IG(mean, shape = scale); scipy's equivalent is
    # invgauss(mu * phi / w, scale = w / phi).
    lam = np.broadcast_to(w / phi, mu.shape)
    return rng.wald(np.maximum(mu, _TINY), lam)


def _negative_binomial(rng: np.random.Generator, mu: Array, theta: float) -> Array:
    # y ~ NB(size theta, prob theta / (theta + mu)): mean mu, variance mu + mu^2 / theta
    return rng.negative_binomial(theta, theta / (theta + np.maximum(mu, 0.0))).astype(float)


def _compound_poisson_gamma(rng: np.random.Generator, mu: Array, phi: Array, p: float) -> Array:
    # tweedie 1 < p < 2: N ~ Poisson(lambda), y = sum of N Gamma(alpha, gamma) = Gamma(N
    # alpha, gamma) (0 when N = 0), lambda = mu^(2-p) / (phi (2-p)), alpha = (2-p)/(p-1),
    # gamma = phi (p-1) mu^(p-1): mean mu, variance phi mu^p
    mu = np.maximum(mu, 0.0)
    n = rng.poisson(mu ** (2.0 - p) / (phi * (2.0 - p)))
    alpha = (2.0 - p) / (p - 1.0)
    return rng.gamma(n * alpha, np.broadcast_to(phi * (p - 1.0), mu.shape) * mu ** (p - 1.0))
