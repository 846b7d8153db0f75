"""glmx.glmm against lme4 on crossed designs (issue 16): three random-effect terms (students
x instructors nested in departments, InstEval's shape), crossed random slopes, a partially
crossed design; lmer by ML and REML, one glmer.

Reference numbers: fixtures/mixed/crossed_cases.json, made by
``Rscript make_crossed_cases.R`` in tests/fixtures/mixed (R 4.2.2, lme4 1.1-31; the versions
are in the file's ``meta``) from the data it writes to fixtures/mixed/data/.  Calls:
``lmer(formula, data, REML = reml)`` and ``glmer(formula, data, binomial, nAGQ = 1, control =
glmerControl(optimizer = "bobyqa"))``; each case also has ``tight``, the refit with
``optCtrl = list(rhoend = 1e-10)`` (and ``tolPwrss = 1e-12`` for glmer).  lmer's default
nloptwrap stops with theta ~3e-5 and the fixed effects ~5e-7 (relative) from the strict
optimum, and glmer's default PIRLS tolerance leaves its Laplace log-likelihood 3.4e-3 below
the optimum and its fixed effects 3e-3 away (test_mixed_core.py explains why).  So, with
test_mixed_core.py's tolerances: the fixed effects are held to the strict refit; theta,
the log-likelihood and the standard errors to both fits; the rest to lme4's default fit;
and glmer's default log-likelihood, as in test_mixed_api.py and the issue's target, only
from below (glmx's at least glmer's - 1e-3), its AIC and BIC through glmx's log-likelihood.
"""

from __future__ import annotations

import json
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import glmx
from glmx.mixed.reterms import r_column_name

MIXED = Path(__file__).parent / "fixtures" / "mixed"
REF = json.loads((MIXED / "crossed_cases.json").read_text())
CASES = REF["cases"]


def data(name: str) -> pd.DataFrame:
    return pd.read_csv(MIXED / "data" / f"{name}.csv")


def vec(x: object) -> np.ndarray:
    return np.atleast_1d(np.asarray(x, dtype=float))


def fit_case_(name: str, df: pd.DataFrame | None = None) -> glmx.MixedResults:
    c = CASES[name]["case"]
    kwargs: dict = {"family": c["family"]}
    if c["family"] == "gaussian":
        kwargs["reml"] = c["reml"]
    else:
        kwargs["nagq"] = c.get("nagq", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", glmx.GlmxWarning)
        return glmx.glmm(c["formula"], data(c["data"]) if df is None else df, **kwargs)


fit_case = cache(fit_case_)


def is_lmm(name: str) -> bool:
    return CASES[name]["case"]["family"] == "gaussian"


def test_reference_file_records_versions() -> None:
    meta = REF["meta"]
    assert meta["lme4"] == "1.1.31" and meta["R"].startswith("R version 4.2")
    assert meta["script"].endswith("make_crossed_cases.R")


@pytest.mark.parametrize("name", list(CASES))
def test_loglik(name: str) -> None:
    # logLik(fit) (REML fits: -REMLcrit / 2), AIC(fit), BIC(fit), REMLcrit(fit)
    ref, fit, lmm = CASES[name], fit_case(name), is_lmm(name)
    if lmm:
        assert fit.loglik == pytest.approx(ref["loglik"], abs=1e-6)
    else:
        assert fit.loglik >= ref["loglik"] - 1e-3
    assert fit.loglik == pytest.approx(ref["tight"]["loglik"], abs=1e-6)
    shift = 2 * (fit.loglik - ref["loglik"])  # lme4's AIC and BIC at glmx's loglik
    assert fit.aic == pytest.approx(ref["aic"] - shift, abs=2e-3)
    assert fit.bic == pytest.approx(ref["bic"] - shift, abs=2e-3)
    if ref["reml_criterion"] is not None:
        assert fit.reml_criterion == pytest.approx(ref["reml_criterion"], rel=1e-9)
        assert fit.deviance is None
    else:
        assert fit.deviance == pytest.approx(-2 * fit.loglik)


@pytest.mark.parametrize("name", list(CASES))
def test_fixed_effects(name: str) -> None:
    # fixef(fit), sqrt(diag(vcov(fit))), vcov(fit); the strict refit's fixef and se
    ref, fit, lmm = CASES[name], fit_case(name), is_lmm(name)
    tight = ref["tight"]
    assert [r_column_name(c) for c in fit.coef.index] == ref["coef_names"]
    np.testing.assert_allclose(fit.coef.to_numpy(), vec(tight["coef"]), rtol=1e-7 if lmm else 1e-5)
    se = fit.se.to_numpy()
    np.testing.assert_allclose(se, vec(tight["se"]), rtol=1e-4)
    np.testing.assert_allclose(se, vec(ref["se"]), rtol=1e-4 if lmm else 2e-2)
    # glmer's default vcov moves with its early PIRLS stop (test_mixed_core: 5e-2 where a
    # tight refit exists, "twice the standard errors' tolerance")
    rtol = 2e-2 if lmm else 5e-2
    np.testing.assert_allclose(
        fit.vcov.to_numpy(), np.atleast_2d(ref["vcov"]), rtol=rtol, atol=1e-5 * np.max(se**2)
    )


@pytest.mark.parametrize("name", list(CASES))
def test_variance_components(name: str) -> None:
    # getME(fit, "theta"), as.data.frame(VarCorr(fit)), sigma(fit), ngrps(fit), isSingular
    ref, fit, lmm = CASES[name], fit_case(name), is_lmm(name)
    assert list(fit.theta_names) == list(np.atleast_1d(ref["theta_names"]))
    np.testing.assert_allclose(fit.theta, vec(ref["theta"]), atol=2e-4 if lmm else 1e-2)
    np.testing.assert_allclose(fit.theta, vec(ref["tight"]["theta"]), atol=1e-5)
    vc = pd.DataFrame({k: np.atleast_1d(v) for k, v in ref["varcorr"].items()})
    assert list(fit.varcorr.grp) == list(vc.grp)
    assert list(fit.varcorr.var1.fillna("NA")) == list(vc.var1.fillna("NA"))
    assert list(fit.varcorr.var2.fillna("NA")) == list(vc.var2.fillna("NA"))
    for col in ("vcov", "sdcor"):
        np.testing.assert_allclose(
            fit.varcorr[col].to_numpy(), vc[col].to_numpy(dtype=float), rtol=2e-4 if lmm else 1e-2
        )
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-5)
    assert fit.n_groups == ref["n_groups"]
    assert fit.singular == ref["singular"]


@pytest.mark.parametrize("name", list(CASES))
def test_conditional_modes(name: str) -> None:
    # ranef(fit, condVar = TRUE): first five levels of each grouping factor
    fit = fit_case(name)
    for r in CASES[name]["ranef"]:
        values = np.asarray(r["values"], dtype=float)
        mine = fit.ranef[r["group"]].loc[r["levels"]].to_numpy()
        assert list(fit.ranef[r["group"]].columns) == list(np.atleast_1d(r["terms"]))
        np.testing.assert_allclose(mine, values, atol=1e-2 * np.max(np.abs(values)))
        pos = [list(fit.ranef[r["group"]].index).index(level) for level in r["levels"]]
        cv = np.asarray(r["cond_var"], dtype=float)
        mine_cv = fit.ranef_condvar[r["group"]][pos]
        np.testing.assert_allclose(mine_cv, cv, atol=1e-2 * np.max(np.abs(cv)))


@pytest.mark.parametrize("name", list(CASES))
def test_fitted_head(name: str) -> None:
    # head(fitted(fit), 10)
    fit = fit_case(name)
    np.testing.assert_allclose(fit.fitted[:10], CASES[name]["fitted_head"], rtol=1e-3)
    assert fit.nobs == CASES[name]["n"]


@pytest.mark.parametrize("name", ["crossed3_ml", "partial_reml"])
def test_row_order_does_not_matter(name: str) -> None:
    c = CASES[name]["case"]
    df = data(c["data"])
    perm = np.random.default_rng(16).permutation(len(df))
    a, b = fit_case(name), fit_case_(name, df.iloc[perm].reset_index(drop=True))
    assert b.loglik == pytest.approx(a.loglik, abs=1e-8)
    np.testing.assert_allclose(b.coef, a.coef, rtol=1e-6)
    np.testing.assert_allclose(b.theta, a.theta, atol=1e-6)
    scale = np.abs(a.fitted).max()  # some fitted values are near zero here
    np.testing.assert_allclose(b.fitted, a.fitted[perm], rtol=1e-6, atol=1e-6 * scale)
