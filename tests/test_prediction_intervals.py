"""predict(interval="prediction"): prediction intervals for new observations.

Coverage by simulation for each family, R's exact gaussian interval, the simulators'
parametrisations against scipy, seeding, missing values, sparse designs and refusals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

import glmx
from glmx.datasets import load
from glmx.families import tweedie
from glmx.inference import prediction
from glmx.inference.prediction import prediction_interval

N_TRAIN, N_NEW, N_SIM = 500, 2000, 1000


def simulate(family: str, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """y from the family at eta = 1 + 0.5 x1 - 0.4 x2 (log link; identity for gaussian,
    logit 0.2 + 0.8 x1 - 0.6 x2 with 20 trials for binomial)."""
    x1, x2 = rng.normal(size=n), rng.uniform(-1.0, 1.0, size=n)
    mu = np.exp(1.0 + 0.5 * x1 - 0.4 * x2)
    if family == "gaussian":
        y = 1.0 + 0.5 * x1 - 0.4 * x2 + rng.normal(0.0, 0.8, n)
    elif family == "poisson":
        y = rng.poisson(mu)
    elif family == "binomial":
        p = 1.0 / (1.0 + np.exp(-(0.2 + 0.8 * x1 - 0.6 * x2)))
        y = rng.binomial(20, p) / 20.0
    elif family == "gamma":
        y = rng.gamma(4.0, mu / 4.0)  # dispersion 1/4
    elif family == "negative_binomial":
        y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu))  # theta 2
    elif family == "inverse_gaussian":
        y = rng.wald(mu, 1.0 / 0.2)  # dispersion 0.2
    elif family == "tweedie":  # p = 1.5, phi = 0.5 at mean mu + 2: a Poisson(lam) number
        m = mu + 2.0  # of Gamma(shape 1, scale 0.5 * 0.5 m^0.5) summands
        lam = m**0.5 / (0.5 * 0.5)
        y = rng.gamma(rng.poisson(lam).astype(float), 0.25 * m**0.5)
    return pd.DataFrame({"x1": x1, "x2": x2, "y": y})


FAMILY_ARGS = {
    "gaussian": {"family": "gaussian"},
    "poisson": {"family": "poisson"},
    "binomial": {"family": "binomial", "weights": "m"},
    "gamma": {"family": "gamma", "link": "log"},
    "negative_binomial": {"family": "negative_binomial"},
    "inverse_gaussian": {"family": "inverse_gaussian", "link": "log"},
    "tweedie": {"family": tweedie(power=1.5)},
}


def coverage(family: str, level: float = 0.9) -> tuple[float, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(sorted(FAMILY_ARGS).index(family))
    train, new = simulate(family, N_TRAIN, rng), simulate(family, N_NEW, rng)
    train["m"] = new["m"] = 20.0
    fit = glmx.glm("y ~ x1 + x2", train, **FAMILY_ARGS[family])
    if family == "binomial":
        # 20 trials for each new row too: the new response is a proportion of 20
        X = np.column_stack([np.ones(N_NEW), new["x1"], new["x2"]])
        lo, hi = prediction_interval(fit, X, np.zeros(N_NEW), level, N_SIM, seed=1, weights=20)
    else:
        pred = fit.predict(new, interval="prediction", level=level, n_sim=N_SIM, seed=1)
        lo, hi = pred["lower"].to_numpy(), pred["upper"].to_numpy()
    y = new["y"].to_numpy()
    return float(np.mean((lo <= y) & (y <= hi))), lo, hi


@pytest.mark.parametrize("family", ["gaussian", "gamma", "inverse_gaussian", "tweedie"])
def test_coverage_of_continuous_families_is_nominal(family):
    cov, lo, hi = coverage(family)
    assert 0.87 <= cov <= 0.93, cov
    assert (lo < hi).all()


@pytest.mark.parametrize("family", ["poisson", "binomial", "negative_binomial"])
def test_coverage_of_discrete_families_is_at_least_nominal(family):
    cov, lo, hi = coverage(family)
    assert 0.90 <= cov < 0.99, cov
    # bounds are attainable values: counts, or proportions of 20 trials
    step = 20.0 if family == "binomial" else 1.0
    np.testing.assert_array_equal(lo * step, np.round(lo * step))
    np.testing.assert_array_equal(hi * step, np.round(hi * step))


def test_gaussian_interval_is_r_predict_lm_interval():
    # R: predict(lm(mpg ~ wt, mtcars), data.frame(wt = c(2.5, 3.5)),
    #            interval = "prediction", level = 0.9)
    #        fit           lwr           upr
    # 1 23.9239472355 18.6301990156 29.2176954554
    # 2 18.5794756628 13.3228124356 23.8361388900
    # The normal mixed over (eta, phi) is R's t interval, computed in closed form.
    fit = glmx.glm("mpg ~ wt", load("mtcars"))
    new = pd.DataFrame({"wt": [2.5, 3.5]})
    pred = fit.predict(new, interval="prediction", level=0.9)
    np.testing.assert_allclose(pred["lower"], [18.6301990156, 13.3228124356], rtol=1e-9)
    np.testing.assert_allclose(pred["upper"], [29.2176954554, 23.8361388900], rtol=1e-9)
    # without parameter uncertainty the interval would be mu +/- z s: narrower
    z_only = stats.norm.ppf(0.95) * np.sqrt(fit.dispersion)
    assert (pred["upper"] - pred["fit"] > z_only + 0.2).all()


# mean 3 each; phi = 0.4 for Gamma (shape 2.5) and inverse gaussian, theta = 1.7 for NB
DISTRIBUTIONS = {
    # Gamma: shape 1/phi, scale mu phi (variance phi mu^2)
    "gamma": (prediction._gamma_cdf, stats.gamma(2.5, scale=1.2)),
    # inverse gaussian: scipy's invgauss(mu phi, scale = 1/phi) (variance phi mu^3)
    "inverse_gaussian": (
        prediction._inverse_gaussian_cdf,
        stats.invgauss(3.0 * 0.4, scale=1 / 0.4),
    ),
    # negative binomial: size theta, prob theta / (theta + mu) (variance mu + mu^2/theta)
    "negative_binomial": (
        lambda y, mu, phi, w: prediction._negative_binomial_cdf(y, mu, 1.7),
        stats.nbinom(1.7, 1.7 / 4.7),
    ),
    "poisson": (prediction._poisson_cdf, stats.poisson(3.0)),
    # binomial: 6 trials with mean proportion 1/2, the count out of 6
    "binomial": (
        lambda y, mu, phi, w: prediction._binomial_cdf(y, mu / 6.0, phi, w * 6.0),
        stats.binom(6, 0.5),
    ),
}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_distribution_functions_are_the_documented_ones(name):
    cdf, dist = DISTRIBUTIONS[name]
    discrete = name in ("negative_binomial", "poisson", "binomial")
    y = np.arange(0.0, 12.0) if discrete else np.linspace(0.05, 12.0, 200)
    got = cdf(y, np.full(y.shape, 3.0), np.array(0.4), np.array(1.0))
    assert dist.mean() == pytest.approx(3.0)
    np.testing.assert_allclose(got, dist.cdf(y), rtol=1e-9, atol=1e-13)


def distribution_fit(family, y: np.ndarray, counts: np.ndarray | None = None):
    """An intercept-only fit on very many rows (frequency weights), so that the
    estimates' uncertainty is negligible next to the distribution's spread."""
    d = pd.DataFrame({"y": y, "f": np.ones(y.size) if counts is None else counts})
    return glmx.glm("y ~ 1", d, family=family, freq_weights="f")


def test_bounds_are_quantiles_of_the_fitted_distribution():
    one = pd.DataFrame({"x": [0.0]})
    k = np.arange(60.0)
    # poisson, mu = 4, a million observations: R's qpois(c(.1, .9), 4) = 2 7
    fit = distribution_fit("poisson", k, np.round(1e6 * stats.poisson(4.0).pmf(k)))
    pred = fit.predict(one, interval="prediction", level=0.8, n_sim=100_000, seed=0)
    assert (pred["lower"][0], pred["upper"][0]) == (2.0, 7.0)
    np.testing.assert_allclose(stats.poisson(pred["fit"][0]).ppf([0.1, 0.9]), [2.0, 7.0])
    # negative binomial, theta fixed at 2, mu = 4: R's qnbinom(c(.05, .95), 2, mu = 4) = 0 11
    nb = stats.nbinom(2.0, 2.0 / 6.0)
    fit = distribution_fit(glmx.families.negative_binomial(theta=2.0), k, np.round(1e6 * nb.pmf(k)))
    pred = fit.predict(one, interval="prediction", level=0.9, n_sim=100_000, seed=0)
    assert (pred["lower"][0], pred["upper"][0]) == (0.0, 11.0)
    np.testing.assert_array_equal(nb.ppf([0.05, 0.95]), [0.0, 11.0])
    # Gamma (shape 1/phi, scale mu phi) and inverse gaussian (scipy's invgauss(mu phi,
    # scale = 1/phi)) at the fitted mu and dispersion, from 100000 simulated rows
    rng = np.random.default_rng(1)
    for family, y, dist in [
        (
            "gamma",
            rng.gamma(2.5, 1.2, 100_000),
            lambda mu, phi: stats.gamma(1 / phi, scale=mu * phi),
        ),
        (
            "inverse_gaussian",
            rng.wald(3.0, 2.5, 100_000),
            lambda mu, phi: stats.invgauss(mu * phi, scale=1 / phi),
        ),
    ]:
        fit = distribution_fit(family, y)
        pred = fit.predict(one, interval="prediction", level=0.9, n_sim=100_000, seed=0)
        want = dist(pred["fit"][0], fit.dispersion).ppf([0.05, 0.95])
        np.testing.assert_allclose([pred["lower"][0], pred["upper"][0]], want, rtol=0.01)


def test_tweedie_bounds_are_seeded_simulation_quantiles():
    # tweedie p = 1.5 has no closed-form cdf: its bounds come from n_sim draws made of
    # uniform numbers shared by all rows, so one seed gives the same bounds, identical
    # rows get identical bounds, and another seed moves them by Monte Carlo error only
    rng = np.random.default_rng(3)
    train = simulate("tweedie", 400, rng)
    fit = glmx.glm("y ~ x1 + x2", train, family=tweedie(power=1.5))
    new = pd.concat([train.iloc[:5]] * 3, ignore_index=True)
    a = fit.predict(new, interval="prediction", n_sim=4000, seed=1)
    b = fit.predict(new, interval="prediction", n_sim=4000, seed=1)
    c = fit.predict(new, interval="prediction", n_sim=4000, seed=2)
    pd.testing.assert_frame_equal(a, b)
    for k in range(1, 3):
        np.testing.assert_array_equal(a.iloc[5 * k : 5 * k + 5].to_numpy(), a.iloc[:5].to_numpy())
    np.testing.assert_allclose(c["upper"], a["upper"], rtol=0.05)


def test_bounds_do_not_depend_on_seed_or_n_sim_where_the_distribution_is_known():
    fit = glmx.glm("Days ~ Eth + Sex + Age + Lrn", load("quine"), family="negative_binomial")
    new = load("quine").iloc[:40]
    a = fit.predict(new, interval="prediction", n_sim=500, seed=42)
    b = fit.predict(new, interval="prediction", n_sim=2000, seed=43)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("family", ["gaussian", "gamma", "poisson", "negative_binomial"])
def test_interval_contains_the_point_prediction(family):
    rng = np.random.default_rng(8)
    train, new = simulate(family, 300, rng), simulate(family, 200, rng)
    fit = glmx.glm("y ~ x1 + x2", train, **FAMILY_ARGS[family])
    pred = fit.predict(new, interval="prediction", level=0.9, n_sim=N_SIM, seed=2)
    # counts: mu of at least 1 here, so P(y = 0) < 95% and the bounds straddle mu
    assert (pred["lower"] <= pred["fit"]).all() and (pred["fit"] <= pred["upper"]).all()
    assert (pred["lower"] < pred["upper"]).all()


def test_bernoulli_bounds_are_zero_or_one():
    # A new 0/1 observation: [0, 1] unless P(y = 1) is outside (5%, 95%); then [0, 0] or
    # [1, 1], which do not contain mu: a 90% interval of a Bernoulli variable.
    rng = np.random.default_rng(4)
    x = rng.normal(size=400)
    d = pd.DataFrame({"x": x, "y": rng.binomial(1, 1.0 / (1.0 + np.exp(-3.0 * x)))})
    fit = glmx.glm("y ~ x", d, family="binomial")
    new = pd.DataFrame({"x": [-3.0, 0.0, 3.0]})
    pred = fit.predict(new, interval="prediction", level=0.9, n_sim=2000, seed=0)
    np.testing.assert_array_equal(pred["lower"], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(pred["upper"], [0.0, 1.0, 1.0])


@pytest.mark.parametrize(
    "family",
    [glmx.families.quasipoisson(), glmx.families.quasibinomial(), glmx.families.quasi()],
)
def test_quasi_families_have_no_prediction_interval(family):
    d = load("dobson")
    d["share"] = d["counts"] / 30.0
    y = "share" if family.name in ("quasibinomial", "quasi") else "counts"
    fit = glmx.glm(f"{y} ~ outcome + treatment", d, family=family)
    with pytest.raises(glmx.FamilyError, match="no distribution to simulate"):
        fit.predict(d, interval="prediction")


def test_tweedie_power_without_a_simulator_is_refused():
    d = load("clotting")
    fit = glmx.glm("lot1 ~ log(u)", d, family=tweedie(power=2.5))
    with pytest.raises(glmx.FamilyError, match="power 2.5"):
        fit.predict(d, interval="prediction")


def test_missing_rows_give_nan_and_others_are_unchanged():
    d = load("clotting")
    fit = glmx.glm("lot1 ~ log(u)", d, family="gamma")
    new = d.iloc[:4].copy()
    full = fit.predict(new, interval="prediction", seed=9)
    new.loc[new.index[1], "u"] = np.nan
    pred = fit.predict(new, interval="prediction", seed=9)
    assert pred.loc[1, ["lower", "upper"]].isna().all()
    assert np.isfinite(pred.loc[[0, 2, 3], ["lower", "upper"]].to_numpy()).all()
    # the other rows still bracket their fitted means, with the width of the full call
    width = (pred["upper"] - pred["lower"]).to_numpy()[[0, 2, 3]]
    width_full = (full["upper"] - full["lower"]).to_numpy()[[0, 2, 3]]
    np.testing.assert_allclose(width, width_full, rtol=0.1)


def test_sparse_design_gives_the_dense_bounds():
    rng = np.random.default_rng(6)
    X = np.column_stack([np.ones(200), rng.normal(size=200), rng.binomial(1, 0.3, 200)])
    y = X @ [1.0, 0.5, -0.7] + rng.normal(0, 0.5, 200)
    dense = glmx.glm_fit(X, y).predict(interval="prediction", n_sim=400, seed=1)
    sparse = glmx.glm_fit(sp.csr_matrix(X), y).predict(interval="prediction", n_sim=400, seed=1)
    np.testing.assert_allclose(sparse["lower"], dense["lower"], rtol=1e-10)
    np.testing.assert_allclose(sparse["upper"], dense["upper"], rtol=1e-10)


def test_aliased_columns_are_ignored():
    rng = np.random.default_rng(7)
    x = rng.normal(size=150)
    y = rng.poisson(np.exp(0.5 + 0.3 * x))
    X = np.column_stack([np.ones(150), x])
    fit = glmx.glm_fit(X, y, family="poisson")
    fit_dup = glmx.glm_fit(np.column_stack([X, 2.0 * x]), y, family="poisson")
    assert fit_dup.aliased.sum() == 1
    a = fit.predict(X[:20], interval="prediction", n_sim=500, seed=5)
    b = fit_dup.predict(
        np.column_stack([X[:20], 2.0 * x[:20]]), interval="prediction", n_sim=500, seed=5
    )
    np.testing.assert_array_equal(a[["lower", "upper"]], b[["lower", "upper"]])


def test_chunked_rows_agree_with_one_block(monkeypatch):
    fit = glmx.glm("lot1 ~ log(u)", load("clotting"), family="gamma")
    X = np.column_stack([np.ones(300), np.log(np.linspace(5, 100, 300))])
    one = prediction_interval(fit, X, np.zeros(300), 0.9, 4000, seed=1)
    # a budget of about 100 rows' quadrature grid gives 3 chunks
    monkeypatch.setattr(prediction, "_CHUNK_BYTES", 8 * 8 * 24 * 16 * 100)
    chunked = prediction_interval(fit, X, np.zeros(300), 0.9, 4000, seed=1)
    for a, b in zip(one, chunked):
        np.testing.assert_allclose(a, b, rtol=1e-9)


def test_new_row_weights_are_trials_or_precision():
    d = load("budworm")
    fit = glmx.glm("prop ~ sex * ldose", d, family="binomial", weights="total")
    X = np.array([[1.0, 0.0, 3.0, 0.0]])
    lo, hi = prediction_interval(fit, X, np.zeros(1), 0.9, 2000, seed=0, weights=20)
    assert lo[0] * 20 == np.round(lo[0] * 20) and 0 < lo[0] < hi[0] < 1
    with pytest.raises(glmx.DataError, match="trials"):
        prediction_interval(fit, X, np.zeros(1), 0.9, 100, seed=0, weights=2.5)
    # gaussian: Var(y) = phi / w, so weight 4 halves the noise part of the width
    g = glmx.glm("mpg ~ wt", load("mtcars"))
    Xg = np.array([[1.0, 3.2]])
    w1 = np.subtract(*prediction_interval(g, Xg, np.zeros(1), 0.9, 50_000, seed=0)[::-1])
    w4 = np.subtract(*prediction_interval(g, Xg, np.zeros(1), 0.9, 50_000, seed=0, weights=4)[::-1])
    se = float(g.predict(pd.DataFrame({"wt": [3.2]}), se=True)["se"].iloc[0])
    t = stats.t.ppf(0.95, g.df_resid)
    np.testing.assert_allclose(w1, 2 * t * np.sqrt(g.dispersion + se**2), rtol=0.02)
    np.testing.assert_allclose(w4, 2 * t * np.sqrt(g.dispersion / 4 + se**2), rtol=0.02)


def test_bad_level_and_n_sim():
    fit = glmx.glm("mpg ~ wt", load("mtcars"))
    with pytest.raises(ValueError, match="level"):
        fit.predict(interval="prediction", level=1.5)
    with pytest.raises(ValueError, match="n_sim"):
        fit.predict(interval="prediction", n_sim=0)
