"""tidy() and glance() against broom 1.0.3 (``tests/fixtures/make_sandwich_cases.R``).

R, per entry of ``broom`` in glm_sandwich_cases.json::

    fit <- glm(formula, family, data, ..., control = glm.control(epsilon = 1e-12))
    broom::tidy(fit, conf.int = TRUE, exponentiate = <exponentiate>)
    broom::glance(fit)

with ``fit`` polished to the MLE by ``make_polished_cases.R`` (R's IRLS restarted from its
coefficients until they stop changing), so glmx runs at its default settings.

broom's profile intervals come from ``MASS:::confint.glm``, which interpolates a spline
through profile points; glmx solves for the interval ends, so those agree to about 1e-4.
broom's ``exponentiate`` exponentiates ``estimate``, ``conf.low`` and ``conf.high`` only:
``std.error``, ``statistic`` and ``p.value`` stay on the link scale.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pytest

import glmx
from glmx.results.tidy import GLANCE_COLUMNS, TIDY_COLUMNS
from refdata import R_FAMILY, dataset, glm_cases

REF = glm_cases("glm_sandwich_cases.json")
BROOM = {b["name"]: b for b in REF["broom"]}


@cache
def fit_of(name: str, cov_type: str | None = None) -> glmx.GLMResults:
    case = REF["cases"][name]["case"]
    return glmx.glm(
        case["formula"],
        dataset(case["data"]),
        family=R_FAMILY.get(case["family"], case["family"]),
        link=case["link"],
        weights=case.get("weights"),
        offset=case.get("offset"),
        cov_type=cov_type,
    )


@pytest.mark.parametrize("name", sorted(BROOM))
def test_tidy_matches_broom(name):
    ref = BROOM[name]
    t = fit_of(name).tidy(exponentiate=ref["exponentiate"])
    r = ref["tidy"]
    assert list(t.columns) == TIDY_COLUMNS
    assert len(t) == len(r["term"])
    # the design's column names (formulaic spells R's "(Intercept)" "Intercept" and
    # "cyl_fc6" "cyl_f[T.c6]"), in R's order
    assert list(t["term"]) == list(fit_of(name).coef.index)
    scale = np.abs(r["estimate"]).max()
    np.testing.assert_allclose(t["estimate"], r["estimate"], rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(t["std_error"], r["std_error"], rtol=1e-9)
    np.testing.assert_allclose(t["statistic"], r["statistic"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(t["p_value"], r["p_value"], rtol=1e-8, atol=1e-300)
    np.testing.assert_allclose(t["conf_low"], r["conf_low"], rtol=2e-4)
    np.testing.assert_allclose(t["conf_high"], r["conf_high"], rtol=2e-4)


@pytest.mark.parametrize("name", sorted(BROOM))
def test_glance_matches_broom_and_the_fit(name):
    fit = fit_of(name)
    g = fit.glance()
    assert list(g.columns) == GLANCE_COLUMNS
    assert len(g) == 1
    row = g.iloc[0]
    for col, value in BROOM[name]["glance"].items():
        np.testing.assert_allclose(row[col], value, rtol=1e-10, err_msg=col)
    attrs = {"loglik": "loglik", "aic": "aic", "bic": "bic", "deviance": "deviance",
             "null_deviance": "null_deviance", "df_null": "df_null", "df_resid": "df_resid",
             "nobs": "nobs", "dispersion": "dispersion", "converged": "converged",
             "n_iter": "n_iter", "link": "link"}  # fmt: skip
    for col, attr in attrs.items():
        assert row[col] == getattr(fit, attr), col
    assert row["family"] == fit.family.name


def test_glance_estimated_dispersion_and_quasi():
    df = dataset("budworm")
    fit = glmx.glm("prop ~ sex * ldose", df, family="quasibinomial", weights="total")
    row = fit.glance().iloc[0]
    assert row["family"] == "quasibinomial" and row["link"] == "logit"
    assert np.isnan(row["loglik"]) and np.isnan(row["aic"])
    # R: summary(glm(prop ~ sex * ldose, quasibinomial, budworm, weights = total))$dispersion
    # of the fit polished to the MLE (fixtures/polished_inline_numbers.R; R's default
    # epsilon = 1e-8 fit gives 0.438086798103833)
    assert row["dispersion"] == pytest.approx(0.438086728667245, rel=1e-8)


def test_exponentiate_is_exp_of_coef_and_confint():
    fit = fit_of("budworm_logit")
    plain = fit.tidy()
    ratio = fit.tidy(exponentiate=True)
    ci = fit.confint()
    np.testing.assert_allclose(ratio["estimate"], np.exp(fit.coef.to_numpy()), rtol=1e-14)
    np.testing.assert_allclose(ratio["conf_low"], np.exp(ci["lower"].to_numpy()), rtol=1e-14)
    np.testing.assert_allclose(ratio["conf_high"], np.exp(ci["upper"].to_numpy()), rtol=1e-14)
    for col in ("std_error", "statistic", "p_value"):  # as broom: link scale
        np.testing.assert_array_equal(ratio[col], plain[col])
    np.testing.assert_allclose(plain["conf_low"], ci["lower"].to_numpy(), rtol=1e-14)


def test_wald_intervals_and_level():
    fit = fit_of("dobson_poisson")
    t = fit.tidy(conf_method="wald", conf_level=0.9)
    ci = fit.confint(level=0.9, method="wald")
    np.testing.assert_allclose(t["conf_low"], ci["lower"].to_numpy(), rtol=1e-14)
    # estimate - qnorm(0.95) * se, R's confint.default(fit, level = 0.9)
    np.testing.assert_allclose(
        t["conf_high"], t["estimate"] + 1.6448536269514722 * t["std_error"], rtol=1e-12
    )
    assert list(fit.tidy(conf_int=False).columns) == TIDY_COLUMNS[:5]
    with pytest.raises(ValueError, match="conf_method"):
        fit.tidy(conf_method="boot")


def test_robust_fit_tidies_its_robust_standard_errors():
    fit = fit_of("dobson_poisson", "HC3")
    t = fit.tidy(conf_method="wald")
    # R: sqrt(diag(sandwich::vcovHC(fit, type = "HC3")))
    hc3 = REF["cases"]["dobson_poisson"]["coeftest_HC3"]["std_error"]
    np.testing.assert_allclose(t["std_error"], hc3, rtol=1e-8)
    np.testing.assert_allclose(t["conf_low"], t["estimate"] - 1.959963984540054 * t["std_error"])
    with pytest.warns(glmx.GlmxWarning, match="profile intervals are model-based"):
        prof = fit.tidy()
    np.testing.assert_allclose(prof["conf_low"], fit_of("dobson_poisson").tidy()["conf_low"])


def test_aliased_coefficients_have_no_row():
    fit = fit_of("collinear_gaussian")
    t = fit.tidy(conf_method="wald")
    assert list(t["term"]) == ["Intercept", "x1", "x3"]
    assert np.isfinite(t[TIDY_COLUMNS[1:]].to_numpy()).all()


def test_exponentiate_warns_for_links_without_ratios():
    with pytest.warns(glmx.GlmxWarning, match="identity link"):
        fit_of("mtcars_gaussian").tidy(exponentiate=True, conf_int=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_of("dobson_poisson").tidy(exponentiate=True, conf_int=False)
        fit_of("clotting_gamma_log").tidy(exponentiate=True, conf_int=False)
