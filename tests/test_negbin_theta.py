"""Negative binomial theta by maximum likelihood: glmx reaches the joint maximum over
(beta, theta), checked against a direct maximization of the log-likelihood over
(beta, log theta) from several starts (scipy, independent of glmx's solver); heavily
zero-inflated counts (small theta), under-dispersed counts (theta diverges: the Poisson
limit), and glmx's theta derivatives against finite differences."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special, stats

import glmx
from glmx.families.negbin import NegativeBinomial, log_pmf, theta_info, theta_score

LOG_THETA_MAX = 18.0  # theta ~ 6.6e7: numerically the Poisson limit for these data


def nb_loglik(beta, s, X, y, w, off):
    """The NB log-likelihood for integer y, with lgamma(th + y) - lgamma(th) - y log(th)
    summed exactly as sum_{k < y} log1p(k / th): no cancellation at large theta."""
    mu = np.exp(X @ beta + off)
    th = np.exp(s)
    yi = y.astype(int)
    ratio = np.concatenate([[0.0], np.cumsum(np.log1p(np.arange(yi.max()) / th))])[yi]
    logpmf = ratio - special.gammaln(y + 1) + special.xlogy(y, mu) - (th + y) * np.log1p(mu / th)
    return float(np.sum(w * logpmf))


def nb_grad_hess(beta, s, X, y, w, off):
    """Gradient and Hessian of the log-likelihood in (beta, log theta), log link."""
    mu = np.exp(X @ beta + off)
    th = np.exp(s)
    a = th + mu
    gb = X.T @ (w * (y - mu) * th / a)
    score = np.sum(
        w * (special.digamma(th + y) - special.digamma(th) + np.log(th / a) + 1 - (y + th) / a)
    )
    info = np.sum(
        w
        * (
            -special.polygamma(1, th + y)
            + special.polygamma(1, th)
            - 1 / th
            + 2 / a
            - (y + th) / a**2
        )
    )
    hbb = -(X.T * (w * mu * th * (th + y) / a**2)) @ X
    hbs = X.T @ (w * th * (y - mu) * mu / a**2)
    hss = th * score - th * th * info
    p = X.shape[1]
    H = np.empty((p + 1, p + 1))
    H[:p, :p], H[:p, p], H[p, :p], H[p, p] = hbb, hbs, hbs, hss
    return np.r_[gb, th * score], H


def direct_max(X, y, w=None, off=None):
    """max over (beta, log theta) of the NB log-likelihood: L-BFGS-B from several starts
    of log theta, each polished by Newton's method with step halving; the best."""
    n, p = X.shape
    w = np.ones(n) if w is None else w
    off = np.zeros(n) if off is None else off
    # a Poisson fit (Newton) for beta's start
    beta = np.zeros(p)
    beta[0] = np.log(np.sum(w * y) / np.sum(w * np.exp(off)))
    for _ in range(100):
        mu = np.exp(X @ beta + off)
        step = np.linalg.solve((X.T * (w * mu)) @ X, X.T @ (w * (y - mu)))
        beta += step
        if np.max(np.abs(step)) < 1e-12:
            break

    def f(v):
        return -nb_loglik(v[:p], v[p], X, y, w, off)

    def grad(v):
        return -nb_grad_hess(v[:p], v[p], X, y, w, off)[0]

    best = None
    np_err = np.errstate(over="ignore", invalid="ignore", divide="ignore")
    np_err.__enter__()
    bounds = [(None, None)] * p + [(-12.0, LOG_THETA_MAX)]
    for s0 in (-4.0, -2.0, 0.0, 2.0, 5.0, 10.0):
        res = optimize.minimize(
            f,
            np.r_[beta, s0],
            jac=grad,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-10},
        )
        v, fv = res.x, res.fun
        for _ in range(50):  # Newton polish
            g, H = nb_grad_hess(v[:p], v[p], X, y, w, off)
            if v[p] >= LOG_THETA_MAX - 1e-9 or np.any(np.linalg.eigvalsh(H) >= 0):
                break
            d = -np.linalg.solve(H, g)
            lam = 1.0
            while lam > 1e-10:
                cand = v + lam * d
                cand[p] = min(cand[p], LOG_THETA_MAX)
                fc = f(cand)
                if np.isfinite(fc) and fc <= fv:
                    break
                lam /= 2
            if lam <= 1e-10 or fv - fc < 1e-14 * abs(fv):
                if lam > 1e-10:
                    v, fv = cand, fc
                break
            v, fv = cand, fc
        if best is None or fv < best[1]:
            best = (v, fv)
    np_err.__exit__(None, None, None)
    v, fv = best
    return v[:p], float(np.exp(v[p])), -fv


def zero_inflated(seed):
    """The issue's generator: NB counts with a share of extra zeros."""
    rng = np.random.default_rng(seed)
    n = rng.choice([30, 60, 120, 300])
    pz = rng.choice([0.3, 0.6, 0.8, 0.9])
    th = rng.choice([0.5, 2, 20])
    x = rng.normal(size=n)
    mu = np.exp(rng.uniform(-1, 3) + 0.5 * x)
    y = rng.negative_binomial(th, th / (th + mu))
    y[rng.random(n) < pz] = 0
    return pd.DataFrame({"x": x, "y": y.astype(float)})


def fit_recording(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = glmx.glm(*args, **kwargs)
    return fit, [str(m.message) for m in caught]


# glmx before the profile search: theta 3-13x the maximum's, loglik 24-94 below it,
# converged=True and a "no overdispersion" warning
@pytest.mark.parametrize("seed", [114, 118, 122, 124, 128])
def test_zero_inflated_counts_reach_the_joint_maximum(seed):
    df = zero_inflated(seed)
    fit, caught = fit_recording("y ~ x", df, family="negative_binomial")
    X = np.column_stack([np.ones(len(df)), df["x"]])
    beta, theta, ll = direct_max(X, df["y"].to_numpy())
    assert fit.loglik == pytest.approx(ll, rel=1e-6)
    assert fit.loglik >= ll - 1e-9 * abs(ll)
    assert fit.theta == pytest.approx(theta, rel=1e-4)
    np.testing.assert_allclose(fit.coef.to_numpy(), beta, rtol=1e-4, atol=1e-6)
    assert fit.converged
    assert not any("overdispersion" in m for m in caught + list(fit.warnings))
    # the certificate: both scores zero at the estimates
    mu = np.asarray(fit.fitted)
    y = df["y"].to_numpy()
    assert abs(fit.theta * theta_score(fit.theta, y, mu, np.ones_like(y))) < 1e-6
    assert fit.theta_se == pytest.approx(1 / np.sqrt(theta_info(fit.theta, y, mu, np.ones_like(y))))


def test_seed_122_numbers():
    # the example: the maximum is theta 0.0203, loglik -208.25 (glmx stopped at
    # theta 0.196, loglik -302.57)
    fit, _ = fit_recording("y ~ x", zero_inflated(122), family="negative_binomial")
    assert fit.theta == pytest.approx(0.0203, abs=5e-5)
    assert fit.loglik == pytest.approx(-208.25, abs=5e-3)


def _generated(k):
    """Dataset k of the property test: sizes 20..500, theta 0.05..50, zero inflation
    0..0.9 (none and theta 50 for every fifth: nearly Poisson counts), with an offset
    for every third, prior weights for every fourth."""
    rng = np.random.default_rng(1000 + k)
    n = int(rng.integers(20, 501))
    th = float(np.exp(rng.uniform(np.log(0.05), np.log(50))))
    pz = float(rng.uniform(0, 0.9))
    if k % 5 == 1:  # nearly Poisson counts: about half show no overdispersion
        th, pz = 50.0, 0.0
    x1, x2 = rng.normal(size=n), rng.uniform(-1, 1, size=n)
    off = rng.normal(scale=0.3, size=n) if k % 3 == 0 else None
    w = rng.uniform(0.5, 2.0, size=n) if k % 4 == 0 else None
    mu = np.exp(rng.uniform(-1, 2.5) + 0.4 * x1 - 0.6 * x2 + (0 if off is None else off))
    y = rng.negative_binomial(th, th / (th + mu)).astype(float)
    y[rng.random(n) < pz] = 0
    if not np.any(y > 0):
        y[0] = 1.0
    return x1, x2, y, off, w


@pytest.mark.parametrize("k", range(60))
def test_property_never_below_the_direct_maximum(k):
    x1, x2, y, off, w = _generated(k)
    X = np.column_stack([np.ones_like(y), x1, x2])
    _, theta, ll = direct_max(X, y, w, off)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", glmx.GlmxWarning)
        fit = glmx.glm_fit(X, y, family="negative_binomial", weights=w, offset=off)
    reached = fit.loglik >= ll - 1e-6 * abs(ll)
    assert reached, (fit.loglik, ll, fit.theta, theta)
    assert fit.converged  # and only if reached: asserted above
    if theta < np.exp(LOG_THETA_MAX - 1):  # a finite maximum: the same theta
        assert fit.theta == pytest.approx(theta, rel=1e-4)
        assert not any("overdispersion" in m for m in fit.warnings)
    else:  # the direct maximization runs to its bound: the Poisson limit
        assert fit.theta >= 1e8
        assert any("no overdispersion" in m for m in fit.warnings)


def _poisson_and_negbin(df, formula="y ~ x"):
    pois = glmx.glm(formula, df, family="poisson")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nb = glmx.glm(formula, df, family="negative_binomial")
    return pois, nb, [(m.category, str(m.message)) for m in caught]


@pytest.mark.parametrize(
    "kind", ["binomial_counts", "constant", "constant_intercept_only", "weighted"]
)
def test_under_dispersed_counts_give_the_poisson_limit(kind):
    rng = np.random.default_rng(7)
    n = 500
    x = rng.normal(size=n)
    formula = "y ~ x"
    if kind == "binomial_counts":
        y = rng.binomial(10, 0.3, size=n).astype(float)
    elif kind == "weighted":
        y = rng.binomial(10, np.where(x > 0, 0.3, 0.5)).astype(float)
    else:
        y = np.full(n, 3.0)
        formula = "y ~ 1" if kind == "constant_intercept_only" else formula
    df = pd.DataFrame({"x": x, "y": y})
    pois, nb, caught = _poisson_and_negbin(df, formula)
    assert any(
        issubclass(c, glmx.ConvergenceWarning) and "no overdispersion" in m for c, m in caught
    )
    assert any("no overdispersion" in m for m in nb.warnings)
    assert nb.loglik == pytest.approx(pois.loglik, rel=1e-8)
    assert nb.aic == pytest.approx(pois.aic + 2, rel=1e-8)  # theta counted, as glm.nb
    np.testing.assert_allclose(nb.coef.to_numpy(), pois.coef.to_numpy(), rtol=1e-6, atol=1e-9)
    assert nb.theta >= 1e8
    assert nb.converged  # the Poisson limit is the maximum
    if kind.startswith("constant"):
        assert pois.loglik == pytest.approx(n * stats.poisson.logpmf(3, 3), rel=1e-12)


def test_fixed_theta_does_not_estimate():
    df = zero_inflated(122)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no theta warning at a given theta
        fit = glmx.glm("y ~ x", df, family=glmx.families.negative_binomial(theta=1.5))
    assert fit.theta == 1.5
    assert fit.converged


@pytest.mark.parametrize("theta", [1e-6, 0.03, 1.0, 19.99, 20.0, 35.0, 1e3, 1e6, 1e9])
def test_theta_derivatives_match_finite_differences(theta):
    rng = np.random.default_rng(3)
    mu = rng.uniform(0.05, 30, 200)
    y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu)).astype(float)
    w = rng.uniform(0.5, 2, 200)
    one = np.ones_like(y)

    def ll(t):
        return NegativeBinomial(t).loglik(y, mu, w, one, 0.0)

    h = theta * 1e-4
    fd = (ll(theta + h) - ll(theta - h)) / (2 * h)
    sc = theta_score(theta, y, mu, w)
    assert sc == pytest.approx(fd, rel=1e-5, abs=1e-9 * abs(ll(theta)) / h)
    fd2 = (theta_score(theta + h, y, mu, w) - theta_score(theta - h, y, mu, w)) / (2 * h)
    assert -theta_info(theta, y, mu, w) == pytest.approx(fd2, rel=1e-5, abs=1e-12 / theta**2)


@pytest.mark.parametrize("theta", [0.01, 2.5, 19.9, 20.0, 300.0, 1e5, 1e9, 1e12])
def test_log_pmf_matches_exact_sums_and_tends_to_poisson(theta):
    rng = np.random.default_rng(5)
    mu = rng.uniform(0.01, 50, 300)
    y = rng.poisson(mu).astype(float)
    ours = log_pmf(theta, y, mu)
    # for integer y, lgamma(theta + y) - lgamma(theta) - y log(theta) is exactly
    # sum_{k < y} log1p(k / theta)
    ratio = np.array([np.sum(np.log1p(np.arange(k) / theta)) for k in y.astype(int)])
    exact = ratio - special.gammaln(y + 1) + special.xlogy(y, mu) - (theta + y) * np.log1p(mu / theta)  # fmt: skip
    np.testing.assert_allclose(ours, exact, rtol=1e-12, atol=1e-13)
    if theta <= 1e3:
        np.testing.assert_allclose(ours, stats.nbinom.logpmf(y, theta, theta / (theta + mu)), rtol=1e-11, atol=1e-11)  # fmt: skip
    if theta == 1e9:  # log NB - log Poisson = ((y - mu)^2 - y) / (2 theta) + O(theta^-2)
        lim = ((y - mu) ** 2 - y) / (2 * theta)
        np.testing.assert_allclose(ours - stats.poisson.logpmf(y, mu), lim, rtol=1e-4, atol=1e-14)


def test_all_zero_counts_warn_and_do_not_crash():  # theta is not identified
    df = pd.DataFrame({"x": np.linspace(-1, 1, 40), "y": np.zeros(40)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", glmx.GlmxWarning)
        fit = glmx.glm("y ~ x", df, family="negative_binomial")
    assert not fit.converged
    assert any("every count is zero" in m for m in fit.warnings)
    assert fit.loglik == pytest.approx(0.0, abs=1e-6)


def test_converged_is_false_when_the_search_is_cut_short():
    # before: the alternation limit warned but the fit still said converged=True
    df = zero_inflated(122)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = glmx.glm("y ~ x", df, family="negative_binomial", max_iter=2)
    assert not fit.converged
    assert any(issubclass(m.category, glmx.ConvergenceWarning) for m in caught)
    full = glmx.glm("y ~ x", df, family="negative_binomial")
    assert full.converged and full.loglik >= fit.loglik


def test_summary_and_aic_of_the_poisson_limit():
    df = pd.DataFrame({"x": np.linspace(-1, 1, 500), "y": np.full(500, 3.0)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", glmx.GlmxWarning)
        nb = glmx.glm("y ~ 1", df, family="negative_binomial")
    # before: theta 1.8e28 and loglik 0.0; the Poisson limit is 500 log dpois(3, 3)
    assert nb.loglik == pytest.approx(500 * stats.poisson.logpmf(3, 3), rel=1e-9)
    assert nb.aic == pytest.approx(-2 * nb.loglik + 4, rel=1e-12)
    assert np.isnan(nb.theta_se)
    assert "Theta" in str(nb.summary())
