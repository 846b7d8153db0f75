"""The numerical core of glmx's mixed models against lme4 (glmx.mixed).

Reference numbers: fixtures/mixed/glmm_cases.json (lme4 1.1-31, R 4.2.2), made as
``glmer(formula, data, family, weights, nAGQ = nagq, control = glmerControl(optimizer =
"bobyqa"))`` and ``lmer(formula, data, REML = reml)``; see /work/shared/reference/README.md,
copied in fixtures/mixed.  fixtures/mixed/glmm_tight_cases.json (make_tight_cases.R) refits
the Laplace cases with tolPwrss = 1e-12: lme4's default PIRLS tolerance leaves its Laplace
deviance off by up to 1e-3 and its Hessian-based standard errors by ~1e-2.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from glmx.errors import BoundaryWarning, DataError, FormulaError
from glmx.mixed import fit_mixed, parse_mixed_formula, predict_eta
from glmx.mixed.optimize import convergence_messages
from glmx.mixed.reterms import build_reterms

MIXED = Path(__file__).parent / "fixtures" / "mixed"
CASES = json.loads((MIXED / "glmm_cases.json").read_text())
TIGHT = json.loads((MIXED / "glmm_tight_cases.json").read_text())
LMM_CASES = [k for k, c in CASES.items() if c["case"]["family"] == "gaussian"]


def data(name: str) -> pd.DataFrame:
    return pd.read_csv(MIXED / f"{name}.csv")


def vec(x: object) -> np.ndarray:
    return np.atleast_1d(np.asarray(x, dtype=float))


def fit_case_(name: str, df: pd.DataFrame | None = None):
    c = CASES[name]["case"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryWarning)
        return fit_mixed(
            c["formula"],
            data(c["data"]) if df is None else df,
            family=c["family"],
            weights=c.get("weights"),
            nagq=c.get("nagq", 1),
            reml=c.get("reml"),
        )


fit_case = cache(fit_case_)


def is_lmm(name: str) -> bool:
    return name in LMM_CASES


def central_gradient(
    fun: Callable[[np.ndarray], float],
    x: np.ndarray,
    lower: np.ndarray,
    f0: float,
    rel: float = 1e-5,
) -> np.ndarray:
    """Central differences with step rel * max(|x|, 0.1); one-sided (second order) where
    the backward step would cross the lower bound."""
    h = rel * np.maximum(np.abs(x), 0.1)
    g = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h[i]
        if x[i] - h[i] >= lower[i]:
            g[i] = (fun(x + e) - fun(x - e)) / (2.0 * h[i])
        else:  # (-3 f(x) + 4 f(x+h) - f(x+2h)) / 2h
            g[i] = (-3.0 * f0 + 4.0 * fun(x + e) - fun(x + 2.0 * e)) / (2.0 * h[i])
    return g


# --- agreement with lme4, every case of glmm_cases.json ---------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_loglik(name: str) -> None:
    # logLik(fit); for nAGQ > 1 the full marginal log-likelihood `loglik_exact` (lme4's own
    # drops constants, its issue 161); REML fits: -REMLcrit / 2
    ref = CASES[name]
    fit = fit_case(name)
    expected = ref.get("loglik_exact", ref["loglik"])
    assert fit.loglik == pytest.approx(expected, abs=1e-6 if is_lmm(name) else 1e-3)
    if name in TIGHT:  # the exact Laplace approximation, lme4 with tolPwrss = 1e-12
        assert fit.loglik == pytest.approx(TIGHT[name]["loglik"], abs=1e-6)
    assert fit.aic == pytest.approx(-2 * fit.loglik + 2 * fit.df)
    if ref.get("loglik_exact") is None:
        assert fit.aic == pytest.approx(ref["aic"], abs=2e-3)
        assert fit.bic == pytest.approx(ref["bic"], abs=2e-3)
    if ref["reml_criterion"] is not None:  # REMLcrit(fit)
        assert fit.reml_criterion == pytest.approx(ref["reml_criterion"], rel=1e-9)
        assert fit.deviance is None
    else:
        assert fit.deviance == pytest.approx(-2 * fit.loglik)


@pytest.mark.parametrize("name", list(CASES))
def test_fixed_effects(name: str) -> None:
    # fixef(fit), sqrt(diag(vcov(fit))); glmer's vcov is 2 H^-1 from its Hessian of the
    # deviance over (theta, beta), lmer's sigma^2 (R_X'R_X)^-1
    ref = CASES[name]
    fit = fit_case(name)
    lmm = is_lmm(name)
    assert list(fit.coef_names_r) == list(np.atleast_1d(ref["coef_names"]))
    np.testing.assert_allclose(fit.coef.to_numpy(), vec(ref["coef"]), rtol=1e-7 if lmm else 2e-3)
    se = np.sqrt(np.diag(fit.vcov.to_numpy()))
    if name in TIGHT:
        np.testing.assert_allclose(se, TIGHT[name]["se"], rtol=1e-4)
        np.testing.assert_allclose(fit.coef.to_numpy(), TIGHT[name]["coef"], rtol=1e-5)
        np.testing.assert_allclose(se, vec(ref["se"]), rtol=2e-2)  # lme4's PIRLS tolerance
    else:
        np.testing.assert_allclose(se, vec(ref["se"]), rtol=1e-4 if lmm else 1e-2)
    rtol = 5e-2 if name in TIGHT else 2e-2  # twice the standard errors' tolerance
    np.testing.assert_allclose(
        fit.vcov.to_numpy(), np.atleast_2d(ref["vcov"]), rtol=rtol, atol=1e-5 * np.max(se**2)
    )


@pytest.mark.parametrize("name", list(CASES))
def test_variance_components(name: str) -> None:
    # getME(fit, "theta"), as.data.frame(VarCorr(fit)), sigma(fit), ngrps(fit)
    ref = CASES[name]
    fit = fit_case(name)
    lmm = is_lmm(name)
    assert list(fit.theta_names) == list(np.atleast_1d(ref["theta_names"]))
    np.testing.assert_allclose(fit.theta, vec(ref["theta"]), atol=2e-4 if lmm else 1e-2)
    if name in TIGHT:
        np.testing.assert_allclose(fit.theta, vec(TIGHT[name]["theta"]), atol=1e-5)
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
        if r["cond_var"] is not None:
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


def test_nagq0_fit() -> None:
    # glmer(prop ~ period + (1 | herd), cbpp, binomial, weights = size, nAGQ = 0):
    # theta 0.6418385532, fixef -1.3604757273 -0.9761732365 -1.1110727840 -1.5596756842
    # (glmx's theta, 0.641815, has the lower nAGQ = 0 deviance: lme4's PIRLS tolerance)
    fit = fit_mixed(
        "prop ~ period + (1 | herd)", data("cbpp"), family="binomial", weights="size", nagq=0
    )
    assert fit.theta[0] == pytest.approx(0.6418385532, abs=1e-4)
    np.testing.assert_allclose(
        fit.coef, [-1.3604757273, -0.9761732365, -1.1110727840, -1.5596756842], rtol=1e-4
    )
    assert fit.warnings == ()


def test_weighted_lmm() -> None:
    # lmer(Reaction ~ Days + (Days | Subject), sleepstudy, weights = seq(0.5, 2,
    # length.out = 180), REML = FALSE): logLik -871.307522116, theta 0.87268188
    # 0.01511398 0.21176063
    w = np.linspace(0.5, 2.0, 180)
    fit = fit_mixed("Reaction ~ Days + (Days | Subject)", data("sleepstudy"), weights=w, reml=False)
    assert fit.loglik == pytest.approx(-871.307522116, abs=1e-7)
    np.testing.assert_allclose(fit.theta, [0.87268188, 0.01511398, 0.21176063], atol=5e-5)


def test_uncorrelated_terms_share_a_factor() -> None:
    # (Days || Subject): two terms, one grouping factor; the cross-term conditional
    # covariance is that of the exact formula, so the blocks are symmetric, positive
    fit = fit_case("sleepstudy_uncorrelated")
    cv = fit.ranef_condvar["Subject"]
    assert cv.shape == (18, 2, 2)
    np.testing.assert_allclose(cv, np.transpose(cv, (0, 2, 1)))
    assert np.all(np.linalg.eigvalsh(cv) > 0)


# --- invariances and new data ------------------------------------------------------------


@pytest.mark.parametrize("name", ["cbpp_laplace", "sleepstudy_reml", "penicillin_crossed"])
def test_row_order_does_not_matter(name: str) -> None:
    c = CASES[name]["case"]
    df = data(c["data"])
    perm = np.random.default_rng(3).permutation(len(df))
    shuffled = df.iloc[perm].reset_index(drop=True)
    a, b = fit_case(name), fit_case_(name, shuffled)
    assert b.loglik == pytest.approx(a.loglik, abs=1e-8)
    np.testing.assert_allclose(b.coef, a.coef, rtol=1e-6)
    np.testing.assert_allclose(b.theta, a.theta, atol=1e-6)
    for g in a.ranef:  # the optimum is flat: theta agrees to ~1e-6 between orders
        modes = a.ranef[g].to_numpy()
        np.testing.assert_allclose(b.ranef[g].to_numpy(), modes, atol=1e-5 * np.abs(modes).max())
    np.testing.assert_allclose(b.fitted, a.fitted[perm], rtol=1e-6)


def test_predict_eta_new_data() -> None:
    fit = fit_case("sleepstudy_reml")
    df = data("sleepstudy")
    np.testing.assert_allclose(predict_eta(fit, df), fit.linear_predictor, rtol=1e-12)
    np.testing.assert_allclose(predict_eta(fit, df, re=False), fit.linear_predictor_fixed)
    new = pd.DataFrame({"Days": [0.0, 5.0, 5.0], "Subject": ["s308", "s308", "nobody"]})
    eta = predict_eta(fit, new)
    b = fit.ranef["Subject"].loc["s308"]
    beta = fit.coef.to_numpy()
    expected = [beta[0] + b.iloc[0], beta[0] + 5 * beta[1] + b.iloc[0] + 5 * b.iloc[1]]
    np.testing.assert_allclose(eta[:2], expected)
    assert eta[2] == pytest.approx(beta[0] + 5 * beta[1])  # unseen level: no effect


def test_missing_values_drop_rows() -> None:
    df = data("sleepstudy")
    df.loc[[0, 5], "Subject"] = np.nan
    df.loc[7, "Reaction"] = np.nan
    fit = fit_mixed("Reaction ~ Days + (Days | Subject)", df)
    assert (fit.nobs, fit.n_dropped) == (177, 3)
    assert 0 not in fit.row_index and 7 not in fit.row_index


# --- the gradient and the checks -----------------------------------------------------------


@pytest.mark.parametrize(
    "formula,family,dataset,weights",
    [
        ("prop ~ period + (1 | herd)", "binomial", "cbpp", "size"),
        ("count ~ mined + (1 | site) + (1 | spp)", "poisson", "salamanders", None),
    ],
)
def test_laplace_gradient_matches_finite_differences(formula, family, dataset, weights) -> None:
    fit = fit_mixed(formula, data(dataset), family=family, weights=weights)
    f, grad = fit.deviance_function, fit.gradient_function
    assert f is not None and grad is not None
    x = np.concatenate([fit.theta + 0.1, fit.coef.to_numpy() + 0.05])
    lower = np.concatenate([fit.lower, np.full(fit.coef.size, -np.inf)])
    analytic = grad(x)
    numeric = central_gradient(f, x, lower, f(x), rel=1e-6)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-5)


def test_singular_fit_warns() -> None:
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {"y": rng.normal(size=60), "x": rng.normal(size=60), "g": np.repeat(list("abcdef"), 10)}
    )
    with pytest.warns(BoundaryWarning, match="singular"):
        fit = fit_mixed("y ~ x + (1 | g)", df)
    assert fit.singular and fit.theta[0] < 1e-4


def test_convergence_messages() -> None:
    H = np.array([[2.0, 0.0], [0.0, 1.0]])
    assert convergence_messages(np.array([1e-6, 1e-6]), H, 1) == []
    assert "max|grad|" in convergence_messages(np.array([0.5, 0.0]), H, 1)[0]
    assert "not positive definite" in " ".join(
        convergence_messages(np.zeros(2), np.array([[1.0, 0.0], [0.0, -1.0]]), 1)
    )


def test_progress_callback() -> None:
    seen: list[tuple[int, float]] = []
    fit_mixed(
        "prop ~ period + (1 | herd)",
        data("cbpp"),
        family="binomial",
        weights="size",
        progress=lambda i, dev: seen.append((i, dev)),
    )
    assert seen and all(np.isfinite(d) for _, d in seen)


# --- formula parsing and the random-effect terms -----------------------------------------


@pytest.mark.parametrize(
    "formula,fixed,terms",
    [
        ("y ~ x + (1 | g)", "y ~ x", [("1", "g")]),
        ("y ~ x + (x | g)", "y ~ x", [("x", "g")]),
        ("y ~ x + (x || g)", "y ~ x", [("1", "g"), ("0 + x", "g")]),
        ("y ~ x + (x + z || g)", "y ~ x", [("1", "g"), ("0 + x", "g"), ("0 + z", "g")]),
        ("y ~ (0 + x || g)", "y ~ 1", [("0 + x", "g")]),
        ("y ~ (0 + x | g)", "y ~ 1", [("0 + x", "g")]),
        ("y ~ (-1 + x | g)", "y ~ 1", [("-1 + x", "g")]),
        ("y ~ 1 + (1 | a/b)", "y ~ 1", [("1", "b:a"), ("1", "a")]),
        ("y ~ (1 | a/b/c)", "y ~ 1", [("1", "c:(b:a)"), ("1", "b:a"), ("1", "a")]),
        ("y ~ x + (1 | g1:g2)", "y ~ x", [("1", "g1:g2")]),
        (
            "y ~ x + (1 | a) + (1 | b) + offset(log(t))",
            "y ~ x + offset(log(t))",
            [("1", "a"), ("1", "b")],
        ),
        ("y ~ log(x) + I(x | z) + (1|g)", "y ~ log(x) + I(x | z)", [("1", "g")]),
    ],
)
def test_parse_forms(formula: str, fixed: str, terms: list[tuple[str, str]]) -> None:
    parsed = parse_mixed_formula(formula)
    assert parsed.fixed == fixed
    assert [(t.lhs, t.group) for t in parsed.terms] == terms


def test_parse_nested_factors() -> None:
    # lme4's expandSlash: (1 | a/b) is (1 | b:a) + (1 | a); levels sort by b, then a
    parsed = parse_mixed_formula("y ~ (x || a/b)")
    assert [(t.lhs, t.factors) for t in parsed.terms] == [
        ("1", ("b", "a")),
        ("1", ("a",)),
        ("0 + x", ("b", "a")),
        ("0 + x", ("a",)),
    ]


@pytest.mark.parametrize(
    "formula,match",
    [
        ("y ~ x + (1 | )", "no grouping factor"),
        ("y ~ x + ( | g)", "nothing left of the bar"),
        ("y ~ x + (1 | g", "unbalanced"),
        ("y ~ x + 1 | g", "parentheses"),
        ("y ~ (1 | g | h)", "more than one"),
        ("y ~ x", "no random-effect term"),
        ("y ~ (1 | a + b)", "column names"),
        ("y ~ (1 | a//b)", "empty grouping factor"),
        ("y ~ x + (1 | g)) + (1 | h", "unbalanced"),
    ],
)
def test_parse_errors(formula: str, match: str) -> None:
    with pytest.raises(FormulaError, match=match):
        parse_mixed_formula(formula)


def test_unknown_grouping_column_is_named() -> None:
    with pytest.raises(FormulaError, match="'herdz'"):
        fit_mixed("prop ~ period + (1 | herdz)", data("cbpp"), family="binomial", weights="size")


def test_agq_needs_one_scalar_term() -> None:
    with pytest.raises(DataError, match="single scalar"):
        fit_mixed("count ~ cover + (cover | site)", data("salamanders"), family="poisson", nagq=5)


def test_zt_matches_dense_z() -> None:
    df = pd.DataFrame(
        {
            "x": [0.5, -1.0, 2.0, 1.5, 0.0],
            "g": ["b", "a", "b", "c", "a"],
            "h": [2, 10, 2, 10, 10],
        }
    )
    rt = build_reterms(parse_mixed_formula("y ~ (x | g) + (1 | h)").terms, df)
    assert [t.levels for t in rt.terms] == [("a", "b", "c"), ("2", "10")]
    # columns: g=a (1, x), g=b (1, x), g=c (1, x), h=2, h=10
    Z = np.array(
        [
            [0, 0, 1, 0.5, 0, 0, 1, 0],
            [1, -1, 0, 0, 0, 0, 0, 1],
            [0, 0, 1, 2, 0, 0, 1, 0],
            [0, 0, 0, 0, 1, 1.5, 0, 1],
            [1, 0, 0, 0, 0, 0, 0, 1],
        ]
    )
    Zt = rt.Zt()
    assert sp.issparse(Zt) and Zt.shape == (8, 5)
    np.testing.assert_array_equal(Zt.toarray(), Z.T)
    assert rt.theta_names == ("g.(Intercept)", "g.x.(Intercept)", "g.x", "h.(Intercept)")
    np.testing.assert_array_equal(rt.lower, [0, -np.inf, 0, 0])
    np.testing.assert_array_equal(rt.theta_start, [1, 0, 1, 1])


def test_interaction_levels_and_term_order() -> None:
    # lme4 orders terms by rev(order(nlevels)) when any term has more levels than the one
    # before it: (1|a) + (1|b) + (1|a:b) with 3, 2, 6 levels -> a:b, a, b
    df = pd.DataFrame({"a": list("pqrpqr"), "b": list("BBBAAA")})
    rt = build_reterms(parse_mixed_formula("y ~ (1|a) + (1|b) + (1|a:b)").terms, df)
    assert [t.group for t in rt.terms] == ["a:b", "a", "b"]
    assert rt.terms[0].levels == ("p:A", "p:B", "q:A", "q:B", "r:A", "r:B")
