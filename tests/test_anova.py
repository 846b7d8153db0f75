"""Analysis of deviance against R: anova.glm (sequential, Chisq/F/Rao), anova(m1, m2, ...),
drop1.glm, MASS's anova.negbin, and the AIC table; errors for models that cannot be
compared.  References: tests/fixtures/glm_cases.json (``anova_sequential``) and
tests/fixtures/glm_anova_cases.json, made by tests/fixtures/make_anova_cases.R."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import glmx
from glmx.families.negbin import theta_info, theta_score
from refdata import FIXTURES, R_FAMILY, dataset, fit_case, glm_cases

ANOVA = json.loads((FIXTURES / "glm_anova_cases.json").read_text())


def _arr(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _fit(case: dict, formula: str | None = None) -> glmx.GLMResults:
    """Fit as make_anova_cases.R, at glmx's default settings (the references are R's fits
    continued to convergence by make_polished_cases.R)."""
    family = R_FAMILY.get(case["family"], case["family"])
    return glmx.glm(
        formula or case["formula"],
        dataset(case["data"]),
        family=family,
        link=case["link"],
        weights=case.get("weights"),
        offset=case.get("offset"),
    )


def _check_table(ours: pd.DataFrame, ref: dict, scale: float, rtol: float = 1e-8) -> None:
    """Every reference column to rtol; deviance-scale columns also to an absolute 1e-9
    scale (R's 'deviance' of a term that adds nothing is rounding noise, ~1e-15)."""
    for col, want in ref.items():
        if col in ("terms", "test"):
            continue
        want_arr = _arr(want)
        atol = 1e-9 * scale if col in ("deviance", "resid_dev", "rao", "statistic") else 0.0
        # R's Rao statistic uses the working weights of the second-to-last iteration of
        # its submodel refits (epsilon 1e-12): up to 2.5e-7 from the statistic at the
        # submodels' MLE that glmx reports (dobson: exactly 278/50, below); p-values far
        # in the tail (1e-19) move by up to 50 times that
        rao = "rao" in ref or ref.get("test") == "Rao"
        tol = rtol
        if rao and col in ("rao", "statistic"):
            tol = max(rtol, 1e-6)
        elif rao and col == "p_value":
            tol = max(rtol, 5e-5)
        np.testing.assert_allclose(
            ours[col].to_numpy(dtype=float), want_arr, rtol=tol, atol=atol, err_msg=col
        )


# --- sequential: R's anova(fit, test = "Chisq" / "F") of the 24 reference cases -------
SEQ_CASES = [k for k, c in glm_cases().items() if c.get("anova_sequential")]


@pytest.mark.parametrize("name", SEQ_CASES)
def test_sequential_anova_matches_r(name: str) -> None:
    case = glm_cases()[name]
    ref = case["anova_sequential"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # separation and MASS's theta note
        fit = fit_case(case)
        tab = fit.anova()  # default: Chisq for fixed dispersion, F otherwise, as ref["test"]
    assert ref["test"] == ("Chisq" if fit.family.fixed_dispersion else "F")
    assert list(tab.index) == ref["terms"]
    assert list(tab.columns[:4]) == ["df", "deviance", "resid_df", "resid_dev"]
    _check_table(tab, ref, ref["resid_dev"][0])
    assert ("statistic" in tab.columns) == (ref["test"] == "F")


@pytest.mark.parametrize("case", ANOVA["anova_sequential"], ids=lambda c: c["name"])
def test_sequential_rao_no_intercept_and_tests_match_r(case: dict) -> None:
    fit = _fit(case["case"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tab = fit.anova(test=case["test"])
    ref = case["table"]
    assert list(tab.index) == ref["terms"]
    _check_table(tab, ref, ref["resid_dev"][0])
    f_fixed = case["test"] == "F" and fit.family.fixed_dispersion
    assert any("F test with a 'poisson'" in str(w.message) for w in caught) == f_fixed


def test_rao_score_equals_r_for_dobson() -> None:
    # R: anova(glm(counts ~ outcome + treatment, poisson, dobson), test = "Rao")
    #           Df Deviance Resid. Df Resid. Dev    Rao Pr(>Chi)
    # outcome    2   5.4523         6     5.1291 5.5600  0.06204 .
    fit = glmx.glm("counts ~ outcome + treatment", dataset("dobson"), family="poisson")
    tab = fit.anova(test="Rao")
    # at the submodel's MLE the score statistic is Pearson's sum over the outcome totals
    # (63, 40, 47 against 50 each): (13^2 + 10^2 + 3^2) / 50 = 5.56 exactly; R's value
    # is 1.8e-7 off (its refit stops at epsilon 1e-12, see _check_table)
    assert tab.loc["outcome", "rao"] == pytest.approx(278 / 50, rel=1e-12)
    assert tab.loc["outcome", "rao"] == pytest.approx(5.56000100310733, rel=1e-6)
    assert tab.loc["outcome", "p_value"] == pytest.approx(0.0620384762617252, rel=1e-6)


# --- anova(m1, m2, ...) ----------------------------------------------------------------
@pytest.mark.parametrize("case", ANOVA["anova_models"], ids=lambda c: c["name"])
def test_anova_models_matches_r(case: dict) -> None:
    fits = [_fit(case["case"], f) for f in case["formulas"]]
    tab = glmx.anova(*fits, test=case["test"])
    assert list(tab.columns[:4]) == ["resid_df", "resid_dev", "df", "deviance"]
    assert list(tab.index) == list(range(1, len(fits) + 1))
    _check_table(tab, case["table"], case["table"]["resid_dev"][0], rtol=1e-8)


def test_anova_models_default_test_is_chisq_for_poisson_and_f_for_gaussian() -> None:
    d = dataset("mtcars")
    g = [glmx.glm(f, d) for f in ("mpg ~ wt", "mpg ~ wt + hp")]
    p = [glmx.glm(f, d, family="poisson") for f in ("carb ~ wt", "carb ~ wt + hp")]
    assert "statistic" in glmx.anova(*g).columns
    tab = glmx.anova(*p)
    assert "statistic" not in tab.columns
    # LRT: the deviance drop on 1 df

    assert tab["p_value"].iloc[1] == pytest.approx(stats.chi2.sf(tab["deviance"].iloc[1], 1))
    none = glmx.anova(*p, test="none")
    assert "p_value" not in none.columns


def test_negbin_models_compared_as_mass() -> None:
    # MASS: anova(glm.nb(Days ~ Eth + Sex, quine), glm.nb(Days ~ Eth + Sex + Age + Lrn))
    ref = ANOVA["anova_negbin"]
    q = dataset("quine")
    fits = [glmx.glm(f, q, family="negative_binomial") for f in ref["formulas"]]
    tab = glmx.anova(*fits)
    # MASS's theta.ml stops with a Newton step of 1.3e-8 still to take (glm.nb(Days ~
    # Eth + Sex)); glmx's theta score is zero to 6e-11 of theta
    np.testing.assert_allclose(tab["theta"], ref["theta"], rtol=3e-8)
    for fit in fits:
        step = theta_score(fit.theta, fit._fit.y, fit.fitted, np.ones(fit.nobs)) / theta_info(
            fit.theta, fit._fit.y, fit.fitted, np.ones(fit.nobs)
        )
        assert abs(step) < 1e-9 * fit.theta
    np.testing.assert_allclose(tab["resid_df"], ref["resid_df"])
    np.testing.assert_allclose(tab["twologlik"], ref["twologlik"], rtol=1e-9)
    np.testing.assert_allclose(tab["lr_stat"].iloc[1], ref["lr_stat"][1], rtol=1e-8)
    np.testing.assert_allclose(tab["p_value"].iloc[1], ref["p_value"][1], rtol=1e-8)
    with pytest.raises(glmx.FamilyError, match="likelihood ratio tests only"):
        glmx.anova(*fits, test="F")


def test_one_model_gives_the_sequential_table() -> None:
    fit = glmx.glm("counts ~ outcome + treatment", dataset("dobson"), family="poisson")
    pd.testing.assert_frame_equal(glmx.anova(fit), fit.anova())


# --- drop1 -------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ANOVA["drop1"], ids=lambda c: c["name"])
def test_drop1_matches_r(case: dict) -> None:
    fit = _fit(case["case"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tab = fit.drop1(test=case["test"])
    ref = dict(case["table"], test=case["test"])
    assert list(tab.index) == ref["terms"]
    if "aic" not in ref:  # R drops the all-NA AIC column of quasi fits
        assert tab["aic"].isna().all()
    _check_table(tab, ref, ref["deviance"][0])
    if case["test"] == "F" and fit.family.name == "poisson":
        assert any("quasipoisson" in str(w.message) for w in caught)


def test_drop1_keeps_main_effects_under_an_interaction() -> None:
    fit = glmx.glm("mpg ~ wt * hp + cyl_f", dataset("mtcars"))
    assert list(fit.drop1().index) == ["<none>", "cyl_f", "wt:hp"]
    # the default test for gaussian is F: R's drop1(fit, test = "F") wt:hp row
    assert fit.drop1().loc["wt:hp", "statistic"] == pytest.approx(7.13555369504668, rel=1e-8)


def test_frequency_weights_equal_duplicated_rows() -> None:
    d = dataset("quine")
    counts = np.tile([1, 2, 3], len(d) // 3 + 1)[: len(d)]
    long = d.loc[d.index.repeat(counts)].reset_index(drop=True)
    formula = "Days ~ Eth + Sex + Age"
    a = glmx.glm(formula, d, family="poisson", freq_weights=counts, tol=1e-12)
    b = glmx.glm(formula, long, family="poisson", tol=1e-12)
    pd.testing.assert_frame_equal(a.anova(), b.anova(), rtol=1e-9)
    pd.testing.assert_frame_equal(a.drop1(), b.drop1(), rtol=1e-9)


def test_glm_fit_columns_are_terms() -> None:
    d = dataset("mtcars")
    formula_fit = glmx.glm("mpg ~ wt + hp + qsec", d, family="gamma", link="log", tol=1e-12)
    X = np.column_stack([np.ones(len(d)), d["wt"], d["hp"], d["qsec"]])
    matrix_fit = glmx.glm_fit(
        X, d["mpg"], family="gamma", link="log", column_names=["(Intercept)", "wt", "hp", "qsec"],
        tol=1e-12,
    )  # fmt: skip
    a, b = formula_fit.anova(), matrix_fit.anova()
    assert list(b.index) == ["NULL", "wt", "hp", "qsec"]
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9)


# --- errors ------------------------------------------------------------------------------
def test_non_nested_models_are_refused() -> None:
    d = dataset("mtcars")
    with pytest.raises(glmx.DataError, match="models 1 and 2 are not nested"):
        glmx.anova(glmx.glm("mpg ~ wt", d), glmx.glm("mpg ~ hp + qsec", d))


def test_nesting_by_column_space_for_matrices() -> None:
    d = dataset("mtcars")
    x1, x2 = d["wt"].to_numpy(), d["hp"].to_numpy()
    one = np.ones(len(d))
    small = glmx.glm_fit(np.column_stack([one, x1]), d["mpg"])
    # the same space spanned by other columns: nested
    big = glmx.glm_fit(np.column_stack([one, x1 + x2, x1 - x2]), d["mpg"])
    tab = glmx.anova(small, big)
    assert tab["df"].iloc[1] == 1
    other = glmx.glm_fit(np.column_stack([one, x2, x2**2]), d["mpg"])
    with pytest.raises(glmx.DataError, match="not nested"):
        glmx.anova(small, other)


def test_models_on_different_rows_are_refused() -> None:
    d = dataset("mtcars").copy()
    d.loc[3, "qsec"] = np.nan
    with pytest.raises(glmx.DataError, match="not fitted to the same rows: model 1 uses 32"):
        glmx.anova(glmx.glm("mpg ~ wt", d), glmx.glm("mpg ~ wt + qsec", d))


def test_different_families_links_weights_offsets_are_refused() -> None:
    d = dataset("insurance")
    base = glmx.glm("Claims ~ Age", d, family="poisson", offset="log_holders")
    with pytest.raises(glmx.DataError, match=r"poisson\(log\) and model 2 is quasipoisson"):
        glmx.anova(
            base, glmx.glm("Claims ~ Group + Age", d, family="quasipoisson", offset="log_holders")
        )
    dob = dataset("dobson")
    with pytest.raises(glmx.DataError, match=r"poisson\(sqrt\): nested models need the same"):
        glmx.anova(
            glmx.glm("counts ~ outcome", dob, family="poisson"),
            glmx.glm("counts ~ outcome + treatment", dob, family="poisson", link="sqrt"),
        )
    with pytest.raises(glmx.DataError, match="different offset"):
        glmx.anova(base, glmx.glm("Claims ~ Group + Age", d, family="poisson"))
    with pytest.raises(glmx.DataError, match="different prior weights"):
        glmx.anova(
            base,
            glmx.glm(
                "Claims ~ Group + Age", d, family="poisson", offset="log_holders", weights="Holders"
            ),
        )
    mt = dataset("mtcars")
    with pytest.raises(glmx.DataError, match="different responses"):
        glmx.anova(glmx.glm("mpg ~ wt", mt), glmx.glm("qsec ~ wt + hp", mt))


def test_bad_test_name() -> None:
    fit = glmx.glm("mpg ~ wt", dataset("mtcars"))
    with pytest.raises(ValueError, match="test must be 'Chisq'"):
        fit.anova(test="Wald")


# --- AIC table ---------------------------------------------------------------------------
def test_compare_matches_r_aic_bic_and_akaike_weights() -> None:
    ref = ANOVA["compare"]
    q = dataset("quine")
    fits = [glmx.glm(f, q, family=fam) for f, fam in zip(ref["formulas"], ref["families"])]
    tab = glmx.compare(*fits, names=ref["names"])
    assert list(tab.index) == ["negbin_small", "negbin", "poisson", "poisson_small"]  # by AIC
    assert tab["delta_aic"].iloc[0] == 0.0
    assert tab["aic_weight"].sum() == pytest.approx(1.0)
    tab = tab.loc[ref["names"]]
    # R: sapply(fits, AIC), BIC, logLik (its df attribute), deviance
    for col in ("df", "loglik", "aic", "bic", "aic_weight"):
        np.testing.assert_allclose(tab[col], ref[col], rtol=1e-8, err_msg=col)
    # a negative binomial deviance moves with theta to first order: MASS's theta is 1.1e-8
    # short of the maximum (test_negbin_models_compared_as_mass), so its deviance 6e-9
    np.testing.assert_allclose(tab["deviance"], ref["deviance"], rtol=2e-8)


def test_compare_default_names_and_errors() -> None:
    d = dataset("dobson")
    a = glmx.glm("counts ~ outcome", d, family="poisson")
    b = glmx.glm("counts ~ outcome + treatment", d, family="poisson")
    assert set(glmx.compare(a, b).index) == {"counts ~ outcome", "counts ~ outcome + treatment"}
    assert list(glmx.compare(a, a).index) == ["model 1", "model 2"]
    q = glmx.glm("counts ~ outcome", d, family="quasipoisson")
    with pytest.raises(glmx.FamilyError, match="no likelihood, so no AIC"):
        glmx.compare(a, q)
    mt = dataset("mtcars")
    with pytest.raises(glmx.DataError, match="different responses"):
        glmx.compare(glmx.glm("mpg ~ wt", mt), glmx.glm("qsec ~ wt", mt))
