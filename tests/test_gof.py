"""Goodness of fit, overdispersion and link tests against R computed by hand (no AER):
tests/fixtures/glm_anova_cases.json, made by tests/fixtures/make_anova_cases.R."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import glmx
from refdata import FIXTURES, R_FAMILY, dataset

REF = json.loads((FIXTURES / "glm_anova_cases.json").read_text())


def _fit(case: dict) -> glmx.GLMResults:
    family = R_FAMILY.get(case["family"], case["family"])
    return glmx.glm(
        case["formula"],
        dataset(case["data"]),
        family=family,
        link=case["link"],
        weights=case.get("weights"),
        offset=case.get("offset"),
        tol=1e-8 if family == "negative_binomial" else 1e-12,
    )


@pytest.mark.parametrize("case", REF["gof"], ids=lambda c: c["name"])
def test_goodness_of_fit_matches_r(case: dict) -> None:
    fit = _fit(case["case"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tab = fit.goodness_of_fit()
    # insurance has an expected count below 1; budworm (20 trials a row) has 8 of its 12
    # rows with fewer than 5 expected deaths or survivors: Cochran's rule warns
    doubtful = case["name"] in ("insurance_poisson_offset", "budworm_binomial")
    assert any("may be poor" in str(w.message) for w in caught) == doubtful
    # R: pchisq(deviance(fit), df.residual(fit), lower.tail = FALSE), and for
    # sum(residuals(fit, "pearson")^2)
    np.testing.assert_allclose(tab["statistic"], [case["deviance"], case["pearson"]], rtol=1e-10)
    np.testing.assert_allclose(tab["df"], case["df"])
    np.testing.assert_allclose(tab["p_value"], [case["p_deviance"], case["p_pearson"]], rtol=1e-8)


@pytest.mark.parametrize("case", REF["gof"], ids=lambda c: c["name"])
def test_dispersion_test_matches_r(case: dict) -> None:
    fit = _fit(case["case"])
    t = fit.dispersion_test()
    assert t.ratio == pytest.approx(case["ratio"], rel=1e-10)
    assert t.statistic == pytest.approx(case["pearson"], rel=1e-10)
    assert t.p_value == pytest.approx(case["p_pearson"], rel=1e-8)
    if "ct_statistic" in case:
        # AER::dispersiontest's formula, evaluated in R
        assert t.ct_dispersion == pytest.approx(case["ct_dispersion"], rel=1e-9)
        assert t.ct_statistic == pytest.approx(case["ct_statistic"], rel=1e-9)
        assert t.ct_p_value == pytest.approx(case["ct_p_value"], rel=1e-8)
    else:
        assert np.isnan(t.ct_statistic)
    row = t.to_frame()
    assert row.shape == (1, 7) and row["df"].iloc[0] == case["df"]


def test_cameron_trivedi_by_hand_with_frequency_weights() -> None:
    # frequency weights count rows: the test on duplicated rows equals the weighted one
    d = dataset("quine")
    counts = np.tile([1, 3], len(d) // 2 + 1)[: len(d)]
    a = glmx.glm("Days ~ Eth + Age", d, family="poisson", freq_weights=counts).dispersion_test()
    long = d.loc[d.index.repeat(counts)]
    fit = glmx.glm("Days ~ Eth + Age", long, family="poisson")
    y, mu = fit.y, fit.fitted
    aux = ((y - mu) ** 2 - y) / mu
    z = np.sqrt(len(aux)) * aux.mean() / aux.std(ddof=1)
    assert a.ct_statistic == pytest.approx(z, rel=1e-8)
    assert a.ct_dispersion == pytest.approx(aux.mean() + 1, rel=1e-8)
    assert a.ratio == pytest.approx(fit.pearson_chi2 / fit.df_resid, rel=1e-8)


def test_estimated_dispersion_and_wrong_families_are_refused() -> None:
    mt = dataset("mtcars")
    with pytest.raises(
        glmx.FamilyError, match="no chi-squared goodness-of-fit test for the gaussian"
    ):
        glmx.glm("mpg ~ wt", mt).goodness_of_fit()
    quasi = glmx.glm("Days ~ Eth", dataset("quine"), family="quasipoisson", tol=1e-12)
    with pytest.raises(glmx.FamilyError, match="quasipoisson"):
        quasi.goodness_of_fit()
    nb = glmx.glm("Days ~ Eth", dataset("quine"), family="negative_binomial")
    with pytest.raises(glmx.FamilyError, match="poisson and binomial fits, not Negative Binomial"):
        nb.dispersion_test()
    assert quasi.dispersion_test().ratio == pytest.approx(quasi.dispersion, rel=1e-8)


def test_doubtful_chi_squared_approximations_warn() -> None:
    mt = dataset("mtcars")
    logit = glmx.glm("am ~ wt + hp", mt, family="binomial")
    with pytest.warns(glmx.GlmxWarning, match="binary"):
        logit.goodness_of_fit()
    with pytest.warns(glmx.GlmxWarning, match="binary"):
        logit.dispersion_test()
    counts = glmx.glm("carb ~ wt", mt, family="poisson")  # mean carb 2.8: small counts
    with pytest.warns(glmx.GlmxWarning, match=r"expected counts are below 5"):
        counts.goodness_of_fit()


def test_summary_reports_the_dispersion_ratio() -> None:
    q = dataset("quine")
    text = str(glmx.glm("Days ~ Eth + Sex + Age + Lrn", q, family="poisson").summary())
    assert "(Pearson dispersion ratio: 13.2 on 139 df; overdispersion test p < 2e-16)" in text
    dob = glmx.glm("counts ~ outcome + treatment", dataset("dobson"), family="poisson")
    # R: sum(residuals(fit, "pearson")^2) / 4 = 1.2933; pchisq(5.1732, 4, lower = FALSE) = 0.26998
    assert "(Pearson dispersion ratio: 1.29 on 4 df; overdispersion test p = 0.27)" in str(
        dob.summary()
    )
    for fit in (
        glmx.glm("Days ~ Eth", q, family="quasipoisson"),
        glmx.glm("am ~ wt", dataset("mtcars"), family="binomial"),
        glmx.glm("mpg ~ wt", dataset("mtcars")),
    ):
        assert "Pearson dispersion ratio" not in str(fit.summary())


@pytest.mark.parametrize("case", REF["link_test"], ids=lambda c: c["name"])
def test_link_test_matches_r_refit(case: dict) -> None:
    # R: glm(y ~ hat_ + hatsq_, same family, weights, offset), hat_ = predict(fit) - offset
    fit = _fit(case["case"])
    lt = fit.link_test()
    assert list(lt.table.index) == ["(Intercept)", "hat", "hatsq"]
    rtol = 1e-5 if case["case"]["family"] == "negbin" else 1e-8
    for col, key in (("estimate", "coef"), ("std_error", "se"), ("statistic", "statistic")):
        np.testing.assert_allclose(lt.table[col], case[key], rtol=rtol, err_msg=col)
    np.testing.assert_allclose(lt.table["p_value"], case["p_value"], rtol=10 * rtol)
    assert lt.coef == pytest.approx(case["coef"][2], rel=rtol)
    assert lt.p_value == pytest.approx(case["p_value"][2], rel=10 * rtol)


def test_link_test_reproduces_the_fit_and_refuses_a_constant_predictor() -> None:
    # at hatsq = 0 the refit is the original model: a = 0, b = 1 would fit it exactly, so
    # a correct logit link on budworm gives b near 1 and an insignificant c
    fit = glmx.glm("prop ~ sex + ldose", dataset("budworm"), family="binomial", weights="total")
    lt = fit.link_test()
    assert lt.table.loc["hat", "estimate"] == pytest.approx(1.0, abs=0.01)
    assert lt.p_value > 0.5
    with pytest.raises(glmx.DataError, match="linear predictor varies"):
        glmx.glm("mpg ~ 1", dataset("mtcars")).link_test()
