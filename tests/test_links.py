"""Links: inverse, derivative, domain checks and tail safety."""

from __future__ import annotations

import numpy as np
import pytest

import glmx
from glmx.families import links

PROB_LINKS = ["logit", "probit", "cloglog", "loglog", "cauchit"]
POSITIVE_LINKS = ["log", "inverse", "inverse_squared", "sqrt"]


def _all_links():
    return [links.get_link(n) for n in links.LINK_NAMES] + [
        links.Power(0.3),
        links.Power(-0.5),
        links.Power(0),
    ]


@pytest.mark.parametrize("link", _all_links(), ids=repr)
def test_inverse_undoes_link_and_mu_eta_is_the_derivative(link):
    if link.name in PROB_LINKS:
        mu = np.linspace(0.02, 0.98, 25)
    else:
        mu = np.linspace(0.2, 5.0, 25)
    eta = link.link(mu)
    np.testing.assert_allclose(link.inverse(eta), mu, rtol=1e-12)
    h = 1e-6 * np.maximum(1.0, np.abs(eta))
    numeric = (link.inverse(eta + h) - link.inverse(eta - h)) / (2 * h)
    np.testing.assert_allclose(link.mu_eta(eta), numeric, rtol=1e-6)
    np.testing.assert_allclose(link.deriv(mu), 1.0 / numeric, rtol=1e-6)


@pytest.mark.parametrize("name", PROB_LINKS + ["log", "identity"])
@pytest.mark.parametrize("eta", [-700.0, -40.0, 40.0, 700.0])
def test_tails_stay_finite(name, eta):
    link = links.get_link(name)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        mu = link.inverse(np.array([eta]))
        d = link.mu_eta(np.array([eta]))
    assert np.all(np.isfinite(mu)) and np.all(np.isfinite(d))
    assert np.all(d > 0)
    if name in PROB_LINKS:
        assert 0 < mu[0] < 1


def test_r_clamps_in_the_tails():
    eps = np.finfo(float).eps
    # R: binomial()$linkinv(c(-31, 31)) == c(eps/(1+eps), 1/(1+eps)); mu.eta == eps
    logit = links.Logit()
    np.testing.assert_allclose(
        logit.inverse(np.array([-31.0, 31.0])), [eps / (1 + eps), 1 / (1 + eps)]
    )
    np.testing.assert_allclose(logit.mu_eta(np.array([-31.0, 31.0])), [eps, eps])
    # R: binomial("probit")$mu.eta(40) == .Machine$double.eps
    assert links.Probit().mu_eta(np.array([40.0]))[0] == eps
    # R: poisson()$linkinv(-800) == .Machine$double.eps, which makes every mean below
    # 2.2e-16 wrong (a gamma response near e^-300); glmx keeps exp(eta) down to the
    # smallest positive normal number and floors it there
    tiny = np.finfo(float).tiny
    np.testing.assert_array_equal(
        links.Log().inverse(np.array([-800.0, -300.0])), [tiny, np.exp(-300.0)]
    )


def test_valid_eta():
    assert not links.Inverse().valid_eta(np.array([1.0, 0.0]))
    assert not links.InverseSquared().valid_eta(np.array([1.0, -1.0]))
    assert not links.Sqrt().valid_eta(np.array([0.0]))
    assert links.Logit().valid_eta(np.array([-1e6, 1e6]))


def test_link_names_and_errors():
    assert links.get_link("1/mu^2").name == "inverse_squared"
    with pytest.raises(glmx.FamilyError, match="unknown link 'logitt'"):
        links.get_link("logitt")
    with pytest.raises(glmx.FamilyError, match="finite exponent"):
        links.Power(float("nan"))
