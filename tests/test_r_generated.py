"""glmx at its default settings against R on the generated cases of
fixtures/glm_generated_cases.json: every family x link R's glm allows, on datasets of R's
``datasets`` and ``MASS`` packages (written to fixtures/data/r_*.csv).

The fixtures come from ``Rscript tests/fixtures/make_generated_cases.R`` (R 4.2.2,
MASS 7.3-58.2; the versions are recorded in the JSON).  Each case is::

    fit <- glm(formula, family = <family>(link = <link>), data, weights = <weights>,
               offset = <offset>, start = <start>,
               control = glm.control(epsilon = 1e-12, maxit = 1000))
    # family "negbin": MASS::glm.nb(formula, data, link = <link>, control = same)

Where R converged (and did not stop at the boundary of the valid region), the script
continues R's own IRLS to the maximum ("polishing": refits with ``start = coef(fit)``, each
at least one more Fisher step, until the coefficients change by less than 1e-14 relative;
R's epsilon = 1e-12 stop leaves non-canonical fits up to ~1e-5 away, kept in the fixture as
``coef_eps12``).  Those polished numbers (``coef(fit)``, ``summary(fit)$coefficients``,
``vcov``, ``deviance``, ``AIC``, ``BIC``, ``logLik``, ``residuals(fit, type)``,
``hatvalues``, ``cooks.distance``, glm.nb's ``theta``) are what glmx, called with no
``tol`` or ``max_iter``, must reproduce to 1e-8 (coefficients, fitted values, residuals),
1e-7 (standard errors, leverages) and 1e-9 (deviance, log-likelihood, AIC).

Where R did not converge or stopped at a boundary, glmx must do at least as well (its
deviance at most R's) and be honest: if it says it converged, its estimate is a stationary
point of the likelihood (Newton decrement U' (X'WX)^-1 U, the deviance a further Fisher
step would gain, below 1e-8 (|deviance| + 0.1)).
"""

from __future__ import annotations

import json
import warnings
from functools import cache

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import optimize

import glmx
from refdata import FIXTURES, R_FAMILY, R_LINK, dataset

DOC = json.loads((FIXTURES / "glm_generated_cases.json").read_text())
CASES = DOC["cases"]
NAMES = sorted(CASES)
CONVERGED = [n for n in NAMES if CASES[n]["converged"] and not CASES[n]["boundary"]]
NOT_CONVERGED = [n for n in NAMES if n not in CONVERGED]
NEGBIN = [n for n in CONVERGED if CASES[n]["case"]["family"] == "negbin"]


def _arr(values) -> np.ndarray:
    """R's numbers as floats; JSON null (R's NA) becomes NaN."""
    return np.array(values, dtype=float)


def close(what: str, actual, expected, rtol: float, atol=0.0) -> None:
    """|actual - expected| <= atol + rtol |expected| elementwise (NaN where R has NA);
    the message gives the largest relative error."""
    a = np.atleast_1d(np.asarray(actual, dtype=float))
    e = np.atleast_1d(_arr(expected))
    assert a.shape == e.shape, f"{what}: shape {a.shape} != R's {e.shape}"
    assert np.array_equal(np.isnan(a), np.isnan(e)), f"{what}: NaN (NA) positions differ"
    ok = ~np.isnan(e)
    a, e = a[ok], e[ok]
    atol = np.broadcast_to(np.asarray(atol, dtype=float), np.shape(ok))[ok]
    err = np.abs(a - e)
    bad = err > atol + rtol * np.abs(e)
    if bad.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(e != 0, err / np.abs(e), np.inf)
        i = int(np.argmax(np.where(bad, rel, -1)))
        raise AssertionError(
            f"{what}: {bad.sum()} of {bad.size} values off (rtol {rtol:g}); worst at {i}: "
            f"glmx {a[i]!r}, R {e[i]!r}, relative error {rel[i]:.3g}"
        )


def floor(values, scale: float = 1e-12) -> float:
    """An absolute floor for values that cross zero: scale x the largest |value|."""
    v = _arr(values)
    return scale * float(np.nanmax(np.abs(v))) if v.size else 0.0


@cache
def fit(name: str):
    """The case fitted with glmx at its default settings (no tol, no max_iter)."""
    c = CASES[name]["case"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", glmx.GlmxWarning)
        return glmx.glm(
            c["formula"],
            dataset(c["data"]),
            family=R_FAMILY.get(c["family"], c["family"]),
            link=R_LINK.get(c["link"], c["link"]),
            weights=c.get("weights"),
            offset=c.get("offset"),
            start=c.get("start"),
        )


def test_fixture_covers_every_family_and_link():
    pairs = {(c["case"]["family"], c["case"]["link"]) for c in CASES.values()}
    expected = {("gaussian", link) for link in ("identity", "log", "inverse")} | {
        ("binomial", link) for link in ("logit", "probit", "cauchit", "log", "cloglog")
    }
    expected |= {("poisson", link) for link in ("log", "identity", "sqrt")}
    expected |= {("Gamma", link) for link in ("inverse", "identity", "log")}
    expected |= {("inverse.gaussian", link) for link in ("1/mu^2", "inverse", "identity", "log")}
    expected |= {("negbin", link) for link in ("log", "sqrt", "identity")}
    assert expected <= pairs
    assert len(CASES) >= 60
    assert len({c["case"]["data"] for c in CASES.values()}) >= 10


@pytest.mark.parametrize("name", CONVERGED)
def test_reference_is_polished(name):
    ref = CASES[name]
    assert ref["polished"] and ref["polish_converged"]
    assert ref["polish_max_rel_change"] < 1e-13, "R's IRLS did not settle: not a reference"


@pytest.mark.parametrize("name", CONVERGED)
def test_coefficients_and_standard_errors(name):
    ref, res = CASES[name], fit(name)
    assert res.aliased.tolist() == ref["aliased"]
    se = _arr(ref["se"])
    close("coef", res.coef.to_numpy(), ref["coef"], rtol=1e-8, atol=1e-8 * np.nan_to_num(se))
    close("se", res.se.to_numpy(), ref["se"], rtol=1e-7)
    close("statistic", res.coef_table["statistic"].to_numpy(), ref["statistic"], 1e-7, atol=1e-8)
    kept = ~np.asarray(ref["aliased"])
    vref = _arr(ref["vcov"])
    if vref.shape[0] != kept.sum():  # R's vcov has NA rows for aliased coefficients
        vref = vref[np.ix_(kept, kept)]
    close("vcov", res.vcov.to_numpy(), vref, rtol=1e-7, atol=floor(vref))


@pytest.mark.parametrize("name", CONVERGED)
def test_fit_statistics(name):
    ref, res = CASES[name], fit(name)
    assert res.converged, "R converged; glmx at its defaults did not"
    assert res.nobs == ref["n_used"]
    assert res.df_resid == ref["df_residual"]
    assert res.df_null == ref["df_null"]
    close("deviance", res.deviance, ref["deviance"], rtol=1e-9)
    close("null deviance", res.null_deviance, ref["null_deviance"], rtol=1e-9)
    close("pearson chi2", res.pearson_chi2, ref["pearson_chi2"], rtol=1e-8)
    close("dispersion", res.dispersion, ref["dispersion"], rtol=1e-8)
    for key, value in (("loglik", res.loglik), ("aic", res.aic), ("bic", res.bic)):
        if ref[key] is None:  # R: NA (quasi families)
            assert np.isnan(value), f"{key}: R gives NA, glmx {value!r}"
        else:
            close(key, value, ref[key], rtol=1e-9)


@pytest.mark.parametrize("name", CONVERGED)
def test_fitted_values_and_residuals(name):
    ref, res = CASES[name], fit(name)
    close("fitted", res.fitted, ref["fitted"], rtol=1e-8, atol=floor(ref["fitted"]))
    lp = ref["linear_predictor"]
    close("linear predictor", res.linear_predictor, lp, rtol=1e-8, atol=floor(lp))
    for kind in ("deviance", "pearson", "working", "response"):
        r = ref[f"resid_{kind}"]
        close(f"{kind} residuals", res.residuals(kind), r, rtol=1e-8, atol=floor(r))


@pytest.mark.parametrize("name", CONVERGED)
def test_leverages_and_cooks_distances(name):
    ref, res = CASES[name], fit(name)
    close("hat", res.hat(), ref["hat"], rtol=1e-7, atol=floor(ref["hat"]))
    close("cooks", res.cooks_distance(), ref["cooks"], rtol=1e-7, atol=floor(ref["cooks"]))


@pytest.mark.parametrize("name", NEGBIN)
def test_negative_binomial_theta(name):
    ref, res = CASES[name], fit(name)
    close("theta", res.theta, ref["theta"], rtol=1e-8)
    close("theta se", res.theta_se, ref["theta_se"], rtol=1e-7)
    close("2 loglik", 2 * res.loglik, ref["twologlik"], rtol=1e-9)


# the edges a maximum can sit on: (family, link) -> (bound of mu, eta there, side)
EDGES = {
    ("binomial", "log"): (1.0, 0.0, -1.0),
    ("poisson", "identity"): (0.0, 0.0, 1.0),
    ("poisson", "sqrt"): (0.0, 0.0, 1.0),
}


def newton_decrement(res) -> float:
    """min over d of -2 (U'd - d'Id/2): the score U = X' (w (y - mu) dmu/deta / V(mu)) and
    the Fisher information I = X' diag(w (dmu/deta)^2 / V(mu)) X at glmx's estimate, over
    the non-aliased columns (for a unit dispersion: in deviance units, what one more
    Fisher step would gain); where the maximum may lie on an edge of the valid region
    (EDGES), the step keeps the rows whose y is at the bound on the valid side (a
    quadratic program by scipy's SLSQP), so that it is 0 at a constrained maximum."""
    X, _ = res._design_for(None, None)
    X = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=float)
    X = X[:, ~res.aliased.to_numpy()]
    eta, mu = np.asarray(res.linear_predictor), np.asarray(res.fitted)
    w = np.asarray(res.prior_weights) * np.asarray(res.freq_weights)
    fam = res.family
    used = w > 0
    with np.errstate(divide="ignore", invalid="ignore"):  # mu on the edge: inf, not a pass
        dmu = fam.link.mu_eta(eta)
        var = fam.variance(mu)
        u = X[used].T @ (w * (np.asarray(res.y) - mu) * dmu / var)[used]
        info = X[used].T @ (X[used] * (w * dmu**2 / var)[used][:, None])
    if not (np.isfinite(u).all() and np.isfinite(info).all()):
        return np.inf
    free = float(u @ np.linalg.lstsq(info, u, rcond=None)[0])
    edge = EDGES.get((fam.name, fam.link.name))
    if edge is None:
        return free
    bound, eta_b, side = edge
    rows = used & (np.asarray(res.y) == bound)
    A, slack = side * X[rows], side * (eta[rows] - eta_b)
    qp = optimize.minimize(
        lambda d: -(u @ d) + 0.5 * d @ info @ d,
        np.zeros(X.shape[1]),
        jac=lambda d: -u + info @ d,
        constraints=[{"type": "ineq", "fun": lambda d: A @ d + slack, "jac": lambda d: A}],
        method="SLSQP",
        options={"ftol": 1e-16, "maxiter": 1000},
    )
    return float(-2.0 * qp.fun)


# At the boundary optima (fitted probabilities at 1 for binomial/log, rates at 0 for
# poisson/identity and sqrt) glmx's constrained method (glmx.solvers.boundary) reaches
# R's deviance to the margin it keeps from the edge (1e-10 of a typical eta's distance).
@pytest.mark.parametrize("name", NOT_CONVERGED)
def test_not_converged_in_r_glmx_at_least_as_good_and_honest(name):
    ref, res = CASES[name], fit(name)
    assert np.isfinite(res.deviance)
    assert res.deviance <= ref["deviance"] * (1 + 1e-9) + 1e-12, (
        f"glmx deviance {res.deviance!r} above R's {ref['deviance']!r}"
    )
    if res.converged:
        dec = newton_decrement(res)
        assert dec <= 1e-8 * (abs(res.deviance) + 0.1), (
            f"glmx says converged, but the Newton decrement is {dec:.3g} "
            f"(deviance {res.deviance!r})"
        )
