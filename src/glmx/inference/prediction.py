"""Prediction intervals for new observations: quantiles of the predictive distribution.

A prediction interval bounds a *new* response y0 at covariates x0, not its mean, so it
carries both the spread of the distribution around mu0 and the uncertainty of the
estimates.  The predictive distribution of y0 is the fitted family's distribution mixed
over that uncertainty:

    F(y) = E[ F0(y | mu = g^-1(eta), phi) ],
    eta  = eta_hat + sqrt(phi / phi_hat) se_eta Z,   Z ~ N(0, 1)
    phi  = phi_hat df / C,                           C ~ chi2_df

with eta_hat = x0' beta_hat + offset and se_eta^2 = x0' vcov x0 (the normal approximation
of the linear predictor).  Fixed-dispersion families (binomial, poisson, negative
binomial) have phi = 1; negative binomial keeps theta at its estimate.  With a sandwich
``vcov`` (``cov_type``) eta is not rescaled by phi.  The bounds solve F(y) = (1 - level) / 2
and F(y) = (1 + level) / 2.

The expectation is a deterministic quadrature: Gauss-Hermite nodes in Z and adaptive
Gauss-Hermite nodes in log C (centred at the mode log df, scale sqrt(2 / df)); F0 is the
family's exact distribution function (normal, Gamma, inverse gaussian, Poisson,
binomial, negative binomial).  The continuous bounds are found by a bracketing root
search (Illinois) to 1e-10; the discrete ones are the smallest attainable value with
F(y) >= p (R's ``qpois``, ``qbinom``, ``qnbinom``), so a bound may sit on either side of
mu0 when mu0 is near 0.  For the gaussian family with identity link the mixture is the t
distribution, and the interval is R's ``predict.lm(interval = "prediction")`` exactly:
x0'beta_hat +/- t_df sqrt(phi_hat / w + se_eta^2).

The result depends on nothing but the row: identical rows get identical bounds.  Tweedie
families with 1 <= p < 2 have no closed-form distribution function; their bounds are
quantiles of ``n_sim`` draws of (Z, C, y0) per distinct row from
``numpy.random.default_rng(seed)``: the same seed gives the same bounds, and identical
rows share their draws, so they get identical bounds.

New observations have prior weight 1 unless ``weights`` are given: binomial trials (the
response is then a proportion of that many trials), or the precision weight w of
Var(y) = phi V(mu) / w for the gaussian, Gamma, inverse gaussian and tweedie families.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

from glmx.errors import DataError, FamilyError
from glmx.families.base import Family
from glmx.families.exponential import Binomial, Gamma, Gaussian, InverseGaussian, Poisson
from glmx.families.negbin import NegativeBinomial
from glmx.families.tweedie import Tweedie

if TYPE_CHECKING:
    from glmx.results.glm import GLMResults

Array = NDArray[np.float64]
# cdf(y, mu, phi, w) of one observation; every argument broadcasts
Cdf = Callable[[Array, Array, Array, Array], Array]

_N_ETA = 20  # Gauss-Hermite nodes over the linear predictor
# adaptive Gauss-Hermite nodes over log chi2_df (estimated dispersion), by df: the
# density narrows as sqrt(2 / df), so fewer nodes reach the same accuracy
_N_PHI = ((20.0, 16), (100.0, 10), (1000.0, 6), (np.inf, 4))
_MIN_WEIGHT = 1e-13  # quadrature nodes of smaller weight are dropped
_CHUNK_BYTES = 50_000_000
_TOL = 1e-10
_TINY = float(np.finfo(float).tiny)


@dataclass(frozen=True)
class Predictive:
    """A family's distribution for new observations: its cdf, and ``ppf`` for the
    discrete ones (``step``: the lattice is counts divided by the weight)."""

    cdf: Cdf
    discrete: bool = False
    positive: bool = True  # continuous support (0, inf): searched on log y
    ppf: Callable[[Array, Array, Array, Array], Array] | None = None
    per_trial: bool = False  # binomial: counts out of w trials, returned as proportions


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
    (default 1: one binomial trial).  ``n_sim`` and ``seed`` serve the tweedie families
    with 1 <= p < 2 only.  Rows with a missing value give NaN bounds."""
    family = fit.family
    dist = _predictive(family)
    if not 0.0 < level < 1.0:
        raise DataError(f"level must be between 0 and 1, got {level}")
    if int(n_sim) != n_sim or n_sim < 1:
        raise DataError(f"n_sim must be a positive integer, got {n_sim}")

    kept = ~fit._fit.aliased
    Xk: Any = X[:, kept] if sp.issparse(X) else np.asarray(X, dtype=float)[:, kept]
    n = Xk.shape[0]
    off = np.broadcast_to(np.asarray(offset, dtype=float).ravel(), (n,))
    w = _new_weights(family, weights, n)
    eta_hat = np.asarray(Xk @ fit._fit.coef[kept]).ravel() + off
    V = fit.vcov.to_numpy()
    XV = np.asarray(Xk @ V)
    quad = Xk.multiply(XV).sum(axis=1) if sp.issparse(Xk) else np.einsum("ij,ij->i", XV, Xk)
    se_eta = np.sqrt(np.clip(np.asarray(quad, dtype=float).ravel(), 0.0, None))

    phi_hat, df = fit.dispersion, fit.df_resid
    if not family.fixed_dispersion and not (df > 0 and np.isfinite(phi_hat) and phi_hat > 0):
        raise DataError(
            f"a prediction interval needs an estimated dispersion, but the fit has "
            f"{float(df):g} residual degrees of freedom and dispersion {float(phi_hat):g}"
        )
    model_based = fit.cov_type == "model"
    probs = ((1.0 - level) / 2.0, (1.0 + level) / 2.0)
    lower, upper = np.full(n, np.nan), np.full(n, np.nan)
    rows = np.flatnonzero(np.isfinite(eta_hat) & np.isfinite(se_eta))
    if rows.size == 0:
        return lower, upper
    eta_hat, se_eta, w = eta_hat[rows], se_eta[rows], w[rows]

    if isinstance(family, Gaussian) and family.link.name == "identity" and model_based:
        # the normal mixed over (eta, phi) is a scaled t_df: R's predict.lm interval
        half = stats.t.ppf(probs[1], df) * np.sqrt(phi_hat / w + se_eta**2)
        lower[rows], upper[rows] = eta_hat - half, eta_hat + half
        return lower, upper
    if dist is None:
        assert isinstance(family, Tweedie)
        lo, hi = _tweedie_simulated(family, fit, eta_hat, se_eta, w, probs, int(n_sim), seed)
        lower[rows], upper[rows] = lo, hi
        return lower, upper
    n_phi = 1 if family.fixed_dispersion else next(k for top, k in _N_PHI if df < top)
    full = _Nodes(family, phi_hat, df, model_based, _N_ETA, n_phi)
    coarse = _Nodes(family, phi_hat, df, model_based, 8, min(n_phi, 4))
    step = max(1, _CHUNK_BYTES // (8 * full.weight.size * 8))
    for start in range(0, rows.size, step):
        sl = slice(start, start + step)
        mix = full.mixture(dist, eta_hat[sl], se_eta[sl], w[sl])
        if dist.discrete:
            lo, hi = mix.quantile(probs[0]), mix.quantile(probs[1])
        else:  # a coarse grid's root starts the full grid's search
            rough = coarse.mixture(dist, eta_hat[sl], se_eta[sl], w[sl])
            lo = mix.quantile(probs[0], rough.quantile(probs[0]))
            hi = mix.quantile(probs[1], rough.quantile(probs[1]))
        lower[rows[sl]], upper[rows[sl]] = lo, hi
    return lower, upper


class _Nodes:
    """The quadrature grid over (Z, C): eta_jk = eta_hat + scale_k se z_j, phi_k."""

    def __init__(
        self, family: Family, phi_hat: float, df: float, model_based: bool, n_eta: int, n_phi: int
    ) -> None:
        z, u = _normal_nodes(n_eta)
        if family.fixed_dispersion:
            phi, v = np.ones(1), np.ones(1)
        else:
            phi, v = _dispersion_nodes(phi_hat, df, n_phi)
        scale = np.sqrt(phi / phi_hat) if model_based and not family.fixed_dispersion else 1.0
        self.link = family.link
        self.z = (z[:, None] * np.broadcast_to(scale, phi.shape)[None, :]).ravel()
        self.phi = np.broadcast_to(phi, (z.size, phi.size)).ravel()
        self.weight = (u[:, None] * v[None, :]).ravel()

    def mixture(self, dist: Predictive, eta_hat: Array, se_eta: Array, w: Array) -> _Mixture:
        eta = eta_hat[:, None] + se_eta[:, None] * self.z[None, :]
        with np.errstate(over="ignore"):
            mu = np.asarray(self.link.inverse(eta))
        return _Mixture(dist, mu, self.phi, self.weight, w)


class _Mixture:
    """The predictive distribution of each row: a weighted sum of the family's cdf over
    the quadrature nodes (mu: rows x nodes, phi and weight: nodes, w: rows)."""

    def __init__(self, dist: Predictive, mu: Array, phi: Array, weight: Array, w: Array):
        self.dist, self.mu, self.phi, self.weight, self.w = dist, mu, phi[None, :], weight, w

    def cdf(self, y: Array, rows: NDArray[np.intp] | slice = slice(None)) -> Array:
        c = self.dist.cdf(y[:, None], self.mu[rows], self.phi, self.w[rows, None])
        return np.asarray(c @ self.weight)

    def quantile(self, p: float, start: Array | None = None) -> Array:
        """The p-quantile of each row; ``start``: a close guess of a continuous one."""
        return self._discrete(p) if self.dist.discrete else self._continuous(p, start)

    def _discrete(self, p: float) -> Array:
        """Smallest count k with F(k) >= p, by bisection between the smallest and the
        largest quantile of the components (the mixture's quantile lies between them)."""
        assert self.dist.ppf is not None
        q = self.dist.ppf(np.full(self.mu.shape, p), self.mu, self.phi, self.w[:, None])
        lo, hi = q.min(axis=1), q.max(axis=1)
        while True:
            open_ = np.flatnonzero(lo < hi)
            if open_.size == 0:
                break
            mid = np.floor((lo[open_] + hi[open_]) / 2.0)
            above = self.cdf(mid, open_) >= p
            hi[open_[above]] = mid[above]
            lo[open_[~above]] = mid[~above] + 1.0
        return lo / self.w if self.dist.per_trial else lo

    def _continuous(self, p: float, start: Array | None) -> Array:
        """The root of F(y) = p on log y (positive families) or y, by the Illinois method
        in a bracket grown around ``start`` or the mean of the central node."""
        to_y: Callable[[Array], Array] = np.exp if self.dist.positive else (lambda t: t)
        centre = self.mu[:, self.mu.shape[1] // 2]
        if start is not None:
            t0 = np.log(np.maximum(start, _TINY)) if self.dist.positive else start
            width = 1e-3 * (1.0 + np.abs(t0))
        elif self.dist.positive:
            t0, width = np.log(np.maximum(centre, _TINY)), np.ones_like(centre)
        else:
            t0 = centre
            width = np.sqrt(np.max(self.phi) / self.w) + np.ptp(self.mu, axis=1) + _TINY

        def g(t: Array, rows: NDArray[np.intp]) -> Array:
            return self.cdf(to_y(t), rows) - p

        every = np.arange(t0.size)
        a, b = t0 - width, t0 + width
        ga, gb = g(a, every), g(b, every)
        for _ in range(64):  # grow the bracket until g(a) <= 0 <= g(b)
            low, high = np.flatnonzero(ga > 0), np.flatnonzero(gb < 0)
            if not (low.size or high.size):
                break
            width = 2.0 * width
            a[low] -= width[low]
            b[high] += width[high]
            ga[low], gb[high] = g(a[low], low), g(b[high], high)
        root = (a + b) / 2.0
        side = np.zeros(t0.size, dtype=int)
        active = every
        for _ in range(100):  # Illinois steps on the rows not yet converged
            ra, rb, fa, fb = a[active], b[active], ga[active], gb[active]
            denom = fb - fa
            c = np.where(denom > 0, rb - fb * (rb - ra) / np.where(denom > 0, denom, 1.0), 0.0)
            c = np.where((c > ra) & (c < rb), c, (ra + rb) / 2.0)
            gc = g(c, active)
            left = gc < 0  # the root is right of c
            a[active] = np.where(left, c, ra)
            b[active] = np.where(left, rb, c)
            # Illinois: halve the stale end's value when the same end moves twice
            ga[active] = np.where(left, gc, np.where(side[active] == -1, fa / 2.0, fa))
            gb[active] = np.where(left, np.where(side[active] == 1, fb / 2.0, fb), gc)
            side[active] = np.where(left, 1, -1)
            root[active] = c
            done = (np.abs(gc) <= 1e-13) | (b[active] - a[active] <= _TOL * (1.0 + np.abs(c)))
            active = active[~done]
            if active.size == 0:
                break
        return to_y(root)


def _normal_nodes(n: int) -> tuple[Array, Array]:
    """Gauss-Hermite nodes and weights for E[h(Z)], Z ~ N(0, 1); negligible ones dropped."""
    z, u = np.polynomial.hermite_e.hermegauss(n)
    u = u / u.sum()
    keep = u > _MIN_WEIGHT
    return z[keep], u[keep] / u[keep].sum()


def _dispersion_nodes(phi_hat: float, df: float, n: int) -> tuple[Array, Array]:
    """Nodes phi_k = phi_hat df / C_k and weights for E[h(phi)], C ~ chi2_df: adaptive
    Gauss-Hermite on t = log C, whose density is proportional to exp(df t / 2 - e^t / 2)
    (mode log df, curvature df / 2)."""
    x, u = np.polynomial.hermite_e.hermegauss(n)
    m, s = np.log(df), np.sqrt(2.0 / df)
    t = m + s * x
    logw = np.log(u) + x**2 / 2.0 + df * t / 2.0 - np.exp(t) / 2.0
    v = np.exp(logw - logw.max())
    v = v / v.sum()
    keep = v > _MIN_WEIGHT
    return phi_hat * df / np.exp(t[keep]), v[keep] / v[keep].sum()


def _new_weights(family: Family, weights: ArrayLike | None, n: int) -> Array:
    """Prior weights of the new rows, checked for what the family's distribution takes."""
    if weights is None:
        return np.ones(n)
    w = np.broadcast_to(np.asarray(weights, dtype=float).ravel(), (n,)).copy()
    if not (np.all(np.isfinite(w)) and np.all(w > 0)):
        raise DataError("weights of the new rows must be positive and finite")
    if isinstance(family, Binomial) and not np.all(w == np.round(w)):
        raise DataError("binomial weights of the new rows are numbers of trials: integers")
    if isinstance(family, (Poisson, NegativeBinomial)) and not np.all(w == 1.0):
        raise DataError(f"the {family.name} family predicts new rows with weight 1 only")
    return w


def _predictive(family: Family) -> Predictive | None:
    """The family's distribution for new observations (None: tweedie by simulation)."""
    if family.is_quasi:
        raise FamilyError(
            f"the {family.name} family is a quasi-likelihood: it defines a mean and a "
            "variance but no distribution to simulate new observations from, so it has "
            "no prediction interval (use interval='confidence' for the mean)"
        )
    if isinstance(family, Gaussian):
        return Predictive(_gaussian_cdf, positive=False)
    if isinstance(family, Binomial):
        return Predictive(_binomial_cdf, discrete=True, ppf=_binomial_ppf, per_trial=True)
    if isinstance(family, Poisson):
        return Predictive(_poisson_cdf, discrete=True, ppf=_poisson_ppf)
    if isinstance(family, Gamma):
        return Predictive(_gamma_cdf)
    if isinstance(family, InverseGaussian):
        return Predictive(_inverse_gaussian_cdf)
    if isinstance(family, NegativeBinomial):
        theta = float(family._theta())
        return Predictive(
            lambda y, mu, phi, w: _negative_binomial_cdf(y, mu, theta),
            discrete=True,
            ppf=lambda p, mu, phi, w: _negative_binomial_ppf(p, mu, theta),
        )
    if isinstance(family, Tweedie):
        p = family.power
        if p == 0:
            return Predictive(_gaussian_cdf, positive=False)
        if p == 2:
            return Predictive(_gamma_cdf)
        if p == 3:
            return Predictive(_inverse_gaussian_cdf)
        if 1 <= p < 2:
            return None
        raise FamilyError(
            f"tweedie power {p:g}: new observations have a known distribution for p = 0, "
            "1, 2, 3 and 1 < p < 2 only, so there is no prediction interval"
        )
    raise FamilyError(
        f"no distribution is known for new observations of the {family.name} family, so "
        "it has no prediction interval"
    )


# --- each family's distribution function: y, mu, phi, w broadcast ------------------------
def _gaussian_cdf(y: Array, mu: Array, phi: Array, w: Array) -> Array:
    # y ~ N(mu, phi / w)
    return np.asarray(special.ndtr((y - mu) / np.sqrt(phi / w)))


def _gamma_cdf(y: Array, mu: Array, phi: Array, w: Array) -> Array:
    # y ~ Gamma(shape k = w / phi, scale mu / k): mean mu, variance phi mu^2 / w
    k = w / phi
    with np.errstate(over="ignore"):
        return np.asarray(special.gammainc(k, y * k / np.maximum(mu, _TINY)))


def _inverse_gaussian_cdf(y: Array, mu: Array, phi: Array, w: Array) -> Array:
    # y ~ IG(mean mu, shape lam = w / phi), variance mu^3 / lam:
    # F = Phi(r (y/mu - 1)) + exp(2 lam / mu) Phi(-r (y/mu + 1)), r = sqrt(lam / y)
    lam, mu = w / phi, np.maximum(mu, _TINY)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        r = np.sqrt(lam / y)
        tail = np.exp(2.0 * lam / mu + special.log_ndtr(-r * (y / mu + 1.0)))
    return np.asarray(np.clip(special.ndtr(r * (y / mu - 1.0)) + tail, 0.0, 1.0))


def _poisson_cdf(y: Array, mu: Array, phi: Array, w: Array) -> Array:
    # P(Y <= y), Y ~ Poisson(mu); mu < 0 (identity link) is taken as 0
    return np.asarray(special.pdtr(y, np.maximum(mu, 0.0)))


def _poisson_ppf(p: Array, mu: Array, phi: Array, w: Array) -> Array:
    return np.asarray(stats.poisson.ppf(p, np.maximum(mu, 0.0)), dtype=float)


def _binomial_cdf(k: Array, mu: Array, phi: Array, w: Array) -> Array:
    # P(K <= k), K ~ Binomial(m = w trials, mu)
    # P(K <= k) = I_{1-mu}(m - k, k + 1) for k < m
    m = np.broadcast_to(w, np.broadcast_shapes(np.shape(k), np.shape(mu)))
    below = k < m
    with np.errstate(invalid="ignore"):
        c = special.betainc(np.where(below, m - k, 1.0), k + 1.0, 1.0 - np.clip(mu, 0.0, 1.0))
    return np.asarray(np.where(below, c, 1.0))


def _binomial_ppf(p: Array, mu: Array, phi: Array, w: Array) -> Array:
    return np.asarray(stats.binom.ppf(p, w, np.clip(mu, 0.0, 1.0)), dtype=float)


def _negative_binomial_cdf(y: Array, mu: Array, theta: float) -> Array:
    # Y ~ NB(size theta, prob theta / (theta + mu)): mean mu, variance mu + mu^2 / theta;
    # P(Y <= y) = I_prob(theta, y + 1)
    prob = theta / (theta + np.maximum(mu, 0.0))
    return np.asarray(special.betainc(theta, y + 1.0, prob))


def _negative_binomial_ppf(p: Array, mu: Array, theta: float) -> Array:
    prob = theta / (theta + np.maximum(mu, 0.0))
    return np.asarray(stats.nbinom.ppf(p, theta, prob), dtype=float)


def _tweedie_simulated(
    family: Tweedie,
    fit: GLMResults,
    eta_hat: Array,
    se_eta: Array,
    w: Array,
    probs: tuple[float, float],
    n_sim: int,
    seed: int | None,
) -> tuple[Array, Array]:
    """Quantiles of n_sim draws of a new tweedie observation (1 <= p < 2) for each
    distinct row (identical rows share their draws): Z and C as in the module docstring,
    then with d = phi / w
    p = 1: y = d N, N ~ Poisson(mu / d);
    1 < p < 2: N ~ Poisson(lambda), y ~ Gamma(N alpha, scale gamma) (0 when N = 0),
    lambda = mu^(2-p) / (d (2-p)), alpha = (2-p) / (p-1), gamma = d (p-1) mu^(p-1)."""
    p = family.power
    rows, inverse = np.unique(np.column_stack([eta_hat, se_eta, w]), axis=0, return_inverse=True)
    rng = np.random.default_rng(seed)
    lower, upper = np.empty(rows.shape[0]), np.empty(rows.shape[0])
    step = max(1, _CHUNK_BYTES // (8 * n_sim * 6))
    for start in range(0, rows.shape[0], step):
        eta_r, se_r, w_r = rows[start : start + step].T
        phi = fit.dispersion * fit.df_resid / rng.chisquare(fit.df_resid, (n_sim, 1))
        scale = np.sqrt(phi / fit.dispersion) if fit.cov_type == "model" else 1.0
        eta = eta_r + scale * se_r * rng.standard_normal((n_sim, eta_r.size))
        with np.errstate(over="ignore"):
            mu = np.maximum(np.asarray(family.link.inverse(eta)), 0.0)
        d = phi / w_r
        if p == 1:
            y = d * rng.poisson(mu / d)
        else:
            counts = rng.poisson(mu ** (2.0 - p) / (d * (2.0 - p)))
            shape = counts * (2.0 - p) / (p - 1.0)
            y = rng.gamma(shape, np.broadcast_to(d * (p - 1.0), mu.shape) * mu ** (p - 1.0))
        q = np.quantile(y, probs, axis=0, method="inverted_cdf" if p == 1 else "linear")
        lower[start : start + step], upper[start : start + step] = q[0], q[1]
    return lower[inverse.ravel()], upper[inverse.ravel()]
