"""Families: variance, unit deviance and log-likelihood against scipy's distributions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, stats

import glmx
from glmx.families import (
    Binomial,
    Gamma,
    Gaussian,
    InverseGaussian,
    NegativeBinomial,
    Poisson,
    Quasi,
    Tweedie,
    get_family,
)
from glmx.solvers.negbin import theta_ml

rng = np.random.default_rng(7)


def test_poisson_deviance_and_loglik():
    fam = Poisson()
    y = rng.poisson(3.0, 50).astype(float)
    mu = rng.uniform(1, 5, 50)
    one = np.ones(50)
    ll = stats.poisson.logpmf(y, mu).sum()
    sat = stats.poisson.logpmf(y, np.where(y > 0, y, 1e-300)).sum()
    assert fam.loglik(y, mu, one, one, 0.0) == pytest.approx(ll, rel=1e-12)
    assert fam.deviance(y, mu, one) == pytest.approx(2 * (sat - ll), rel=1e-10)
    np.testing.assert_allclose(fam.variance(mu), mu)


def test_binomial_with_trials():
    fam = Binomial()
    m = rng.integers(1, 20, 40).astype(float)
    k = rng.binomial(m.astype(int), 0.3).astype(float)
    mu = rng.uniform(0.1, 0.9, 40)
    f = np.ones(40)
    ll = stats.binom.logpmf(k, m, mu).sum()
    assert fam.loglik(k / m, mu, m, f, 0.0) == pytest.approx(ll, rel=1e-12)
    sat = stats.binom.logpmf(k, m, k / m).sum()
    assert fam.deviance(k / m, mu, m) == pytest.approx(2 * (sat - ll), rel=1e-10)


def test_gaussian_loglik_is_profiled_normal():
    fam = Gaussian()
    y, mu, w = rng.normal(size=30), rng.normal(size=30), rng.uniform(0.5, 2, 30)
    dev = fam.deviance(y, mu, w)
    sigma2 = dev / 30
    ll = stats.norm.logpdf(y, mu, np.sqrt(sigma2 / w)).sum()
    assert fam.loglik(y, mu, w, np.ones(30), dev) == pytest.approx(ll, rel=1e-12)


def test_gamma_loglik_uses_deviance_over_n_as_r():
    fam = Gamma(link="log")
    y, mu = rng.gamma(2.0, 1.5, 30), rng.uniform(1, 5, 30)
    one = np.ones(30)
    dev = fam.deviance(y, mu, one)
    disp = dev / 30
    ll = stats.gamma.logpdf(y, 1 / disp, scale=mu * disp).sum()
    assert fam.loglik(y, mu, one, one, dev) == pytest.approx(ll, rel=1e-12)


def test_inverse_gaussian_loglik():
    fam = InverseGaussian()
    y, mu = rng.wald(2.0, 4.0, 30), rng.uniform(1, 3, 30)
    one = np.ones(30)
    dev = fam.deviance(y, mu, one)
    disp = dev / 30
    # IG(mu, lambda = 1/disp): scipy's invgauss(mu * disp... ) in shape-scale form
    ll = stats.invgauss.logpdf(y, mu * disp, scale=1 / disp).sum()
    assert fam.loglik(y, mu, one, one, dev) == pytest.approx(ll, rel=1e-10)


def test_negative_binomial_loglik_and_theta_ml():
    theta = 2.5
    mu = rng.uniform(1, 8, 400)
    y = rng.negative_binomial(theta, theta / (theta + mu)).astype(float)
    one = np.ones_like(y)
    fam = NegativeBinomial(theta)
    ll = stats.nbinom.logpmf(y, theta, theta / (theta + mu)).sum()
    assert fam.loglik(y, mu, one, one, 0.0) == pytest.approx(ll, rel=1e-12)
    est = theta_ml(y, mu, one)

    def nll(t):
        return -NegativeBinomial(t).loglik(y, mu, one, one, 0.0)

    best = optimize.minimize_scalar(
        nll, bounds=(0.1, 50), method="bounded", options={"xatol": 1e-10}
    )
    assert est.theta == pytest.approx(best.x, rel=1e-6)


@pytest.mark.parametrize(
    "p, base", [(0, Gaussian()), (1, Poisson()), (2, Gamma()), (3, InverseGaussian())]
)
def test_tweedie_special_cases(p, base):
    y = rng.uniform(0.5, 4, 20)
    mu = rng.uniform(0.5, 4, 20)
    np.testing.assert_allclose(
        Tweedie(p).unit_deviance(y, mu), base.unit_deviance(y, mu), rtol=1e-10
    )
    np.testing.assert_allclose(Tweedie(p).variance(mu), base.variance(mu))


def test_tweedie_deviance_with_zeros_is_finite():
    y = np.array([0.0, 0.0, 1.5, 3.0])
    mu = np.array([0.5, 1.0, 1.2, 2.0])
    d = Tweedie(1.5).unit_deviance(y, mu)
    assert np.all(np.isfinite(d)) and np.all(d >= 0)
    # y = 0: d = 2 mu^(2-p) / (2-p)
    np.testing.assert_allclose(d[:2], 2 * mu[:2] ** 0.5 / 0.5)


def test_quasi_variances_and_registry():
    mu = np.array([0.2, 0.5])
    assert Quasi(variance="mu(1-mu)").variance(mu).tolist() == pytest.approx([0.16, 0.25])
    assert Quasi(variance="mu^3", link="log").variance(mu).tolist() == pytest.approx([0.008, 0.125])
    assert get_family("Gamma").name == "Gamma"
    assert get_family("inverse.gaussian").link.name == "inverse_squared"
    assert get_family("negative_binomial").link.name == "log"
    assert get_family("tweedie").link.name == "log"
    with pytest.raises(glmx.FamilyError, match="not available for the poisson family"):
        get_family("poisson", "logit")
    with pytest.raises(glmx.FamilyError, match="unknown quasi variance"):
        Quasi(variance="mu^4")


def test_user_defined_family_fits():
    class Cubic(glmx.families.Family):
        """Var = mu^3 with the inverse gaussian deviance, written from scratch."""

        name = "cubic"
        default_link = "log"

        def variance(self, mu):
            return mu**3

        def unit_deviance(self, y, mu):
            return (y - mu) ** 2 / (y * mu**2)

    x = np.linspace(0, 1, 60)
    y = rng.wald(np.exp(0.5 + x), 5.0)
    X = np.column_stack([np.ones_like(x), x])
    mine = glmx.glm_fit(X, y, family=Cubic())
    ref = glmx.glm_fit(X, y, family="inverse_gaussian", link="log")
    np.testing.assert_allclose(mine.coef.to_numpy(), ref.coef.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(mine.se.to_numpy(), ref.se.to_numpy(), rtol=1e-10)
    assert np.isnan(mine.aic)  # no loglik defined: like a quasi family


def test_negative_binomial_without_overdispersion_stops_theta_and_warns():
    # R: glm.nb on under-dispersed counts warns "iteration limit reached" (theta ~ 1e5);
    # glmx stops theta at 1e8, where the fit is the Poisson one, and says why
    import pandas as pd

    d = pd.DataFrame(rng.normal(size=(30, 2)), columns=["x1", "x2"])
    d["y"] = [1.0, 2.0, 3.0] * 10
    with pytest.warns(glmx.ConvergenceWarning, match="no overdispersion"):
        nb = glmx.glm("y ~ x1 + x2", d, family="negative_binomial")
    pois = glmx.glm("y ~ x1 + x2", d, family="poisson")
    assert nb.theta >= 1e8  # the Poisson limit (theta stopped where it no longer matters)
    assert len(nb.warnings) == 1
    np.testing.assert_allclose(nb.coef.to_numpy(), pois.coef.to_numpy(), rtol=1e-6)


def test_valid_mu_by_minimum_and_maximum():
    import numpy as np

    from glmx.families import binomial, poisson
    from glmx.families.base import finite_within

    assert finite_within(np.array([0.5, 2.0])) and finite_within(np.array([]))
    assert not finite_within(np.array([0.5, np.nan, 2.0]))
    assert not finite_within(np.array([0.5, np.inf]))
    assert not finite_within(np.array([0.0, 0.5]), 0.0)
    assert not binomial().valid_mu(np.array([0.2, 1.0]))
    assert binomial().valid_mu(np.array([1e-300, 1 - 1e-16]))
    assert not poisson().valid_mu(np.array([1.0, -1e-300]))
    assert not poisson().valid_mu(np.array([1.0, np.nan]))
