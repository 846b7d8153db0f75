"""Edges of inference: bundled datasets as R has them, profile intervals under separation,
the negative binomial likelihood-ratio table, and family and link names."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import glmx
from glmx.datasets import NAMES, load

# --- bundled datasets: R's column types and level order ---------------------------------
NUM, FAC, ORD = "numeric", "factor", "ordered"
# R: str(MASS::Insurance), str(MASS::quine), str(mtcars); the glm help page's dobson
# (gl(3, 1, 9), gl(3, 3)) and clotting; MASS's book budworm (factor(rep(c("M", "F"), ...)));
# lme4's help: cbpp herd "A factor identifying the herd (1 to 15)", period "A factor with
# levels 1 to 4", sleepstudy Subject a factor of 18 subjects 308, 309, ..., 372.
R_COLUMNS: dict[str, dict[str, tuple[str, list[str] | None]]] = {
    "dobson": {
        "counts": (NUM, None),
        "outcome": (FAC, ["o1", "o2", "o3"]),
        "treatment": (FAC, ["t1", "t2", "t3"]),
    },
    "budworm": {
        "ldose": (NUM, None),
        "numdead": (NUM, None),
        "sex": (FAC, ["F", "M"]),
        "total": (NUM, None),
        "prop": (NUM, None),
    },
    "quine": {
        "Eth": (FAC, ["A", "N"]),
        "Sex": (FAC, ["F", "M"]),
        "Age": (FAC, ["F0", "F1", "F2", "F3"]),
        "Lrn": (FAC, ["AL", "SL"]),
        "Days": (NUM, None),
    },
    "clotting": {"u": (NUM, None), "lot1": (NUM, None), "lot2": (NUM, None)},
    "insurance": {
        "District": (FAC, ["1", "2", "3", "4"]),
        "Group": (ORD, ["<1l", "1-1.5l", "1.5-2l", ">2l"]),
        "Age": (ORD, ["<25", "25-29", "30-35", ">35"]),
        "Holders": (NUM, None),
        "Claims": (NUM, None),
        "log_holders": (NUM, None),
    },
    "mtcars": {
        **{c: (NUM, None) for c in "mpg cyl disp hp drat wt qsec vs am gear carb".split()},
        "cyl_f": (FAC, ["c4", "c6", "c8"]),
    },
    "sleepstudy": {
        "Reaction": (NUM, None),
        "Days": (NUM, None),
        "Subject": (
            FAC,
            [f"s{k}" for k in (308, 309, 310, 330, 331, 332, 333, 334, 335)]
            + [f"s{k}" for k in (337, 349, 350, 351, 352, 369, 370, 371, 372)],
        ),
    },
    "cbpp": {
        "herd": (FAC, [f"h{k}" for k in range(1, 16)]),
        "incidence": (NUM, None),
        "size": (NUM, None),
        "period": (FAC, ["p1", "p2", "p3", "p4"]),
        "prop": (NUM, None),
    },
}


def test_every_bundled_dataset_is_described() -> None:
    assert set(R_COLUMNS) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_bundled_dataset_has_r_column_types_and_level_order(name: str) -> None:
    df = load(name)
    want = R_COLUMNS[name]
    assert list(df.columns) == list(want)
    assert not df.isna().any().any()  # every label is one of the declared levels
    for col, (kind, levels) in want.items():
        s = df[col]
        if kind == NUM:
            assert pd.api.types.is_numeric_dtype(s) and not isinstance(s.dtype, pd.CategoricalDtype)
            continue
        assert isinstance(s.dtype, pd.CategoricalDtype), col
        assert list(s.cat.categories) == levels, col
        assert s.cat.ordered == (kind == ORD), col


def test_bundled_insurance_fits_as_r_with_district_a_factor() -> None:
    # R: glm(Claims ~ District + Group + Age + offset(log(Holders)), poisson,
    #        MASS::Insurance): deviance 51.42003 on 54 df, AIC 388.741554
    fit = glmx.glm(
        "Claims ~ District + Group + Age + offset(log_holders)", load("insurance"), family="poisson"
    )
    assert fit.df_resid == 54 and fit.rank == 10
    assert fit.deviance == pytest.approx(51.42003, abs=1e-5)
    assert fit.aic == pytest.approx(388.741554, abs=1e-5)
    assert [c for c in fit.coef.index if c.startswith("District")] == [
        "District[T.2]",
        "District[T.3]",
        "District[T.4]",
    ]
    # R (epsilon = 1e-12): coef(): District2..4, then contr.poly's Group.L/Q/C, Age.L/Q/C
    r_coef = [-1.810507833, 0.02586819091, 0.0385239271, 0.234205328, 0.4297075387]
    r_coef += [0.004632435144, -0.02929432215, -0.3944318082, -0.0003549709061, -0.01673675652]
    np.testing.assert_allclose(fit.coef, r_coef, rtol=1e-8, atol=1e-10)
    assert list(fit.coef.index[4:]) == ["Group.L", "Group.Q", "Group.C", "Age.L", "Age.Q", "Age.C"]


def test_bundled_cbpp_herds_come_in_numeric_order() -> None:
    fit = glmx.glmm("prop ~ period + (1 | herd)", load("cbpp"), family="binomial", weights="size")
    assert list(fit.ranef["herd"].index) == [f"h{k}" for k in range(1, 16)]


# --- profile intervals under separation ------------------------------------------------
def _quasi(seed: int, only: int = 1) -> pd.DataFrame:
    """Three groups of 20 and a covariate; every response of group c is ``only``."""
    rng = np.random.default_rng(seed)
    d = pd.DataFrame({"g": np.repeat(["a", "b", "c"], 20), "x": np.round(rng.normal(size=60), 4)})
    d["y"] = rng.binomial(1, 1 / (1 + np.exp(-0.3 * d["x"])))
    d.loc[d["g"] == "c", "y"] = only
    return d


def _complete(seed: int) -> pd.DataFrame:
    """y = 1 exactly where x > 0, with a noise covariate z."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.uniform(-2, 2, 40), 4)
    return pd.DataFrame({"x": x, "z": np.round(rng.normal(size=40), 4), "y": (x > 0) * 1.0})


def _quiet_fit(formula: str, data: pd.DataFrame, **kw) -> glmx.GLMResults:  # noqa: ANN003
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmx.glm(formula, data, **kw)


def _profile(fit: glmx.GLMResults) -> tuple[pd.DataFrame, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ci = fit.confint()
    return ci, caught


# R: d <- read.csv(...) (the frame _quasi(seed) writes); suppressWarnings(confint(glm(y ~ g
# + x, binomial, d))): the rows of the coefficients that are not separated (R's spline
# gives NA or an arbitrary number for gc)
R_QUASI = {
    0: [[-1.3091811, 0.5378011], [-1.3661105, 1.2307194], [-0.5576314, 1.1343417]],
    1: [[-0.6979144, 1.101971], [-1.4542064, 1.085938], [-0.3311646, 1.114860]],
    2: [[-0.9087105, 0.9874671], [-0.9792774, 1.7534124], [0.1553824, 1.8337524]],
    3: [[-1.0885182, 0.7296817], [-1.3305732, 1.2220778], [-0.2909147, 0.8714559]],
}


@pytest.mark.parametrize(("seed", "only"), [(0, 1), (1, 1), (2, 1), (3, 1), (0, 0), (2, 0)])
def test_profile_bound_is_infinite_for_a_level_with_only_one_outcome(seed: int, only: int) -> None:
    d = _quasi(seed, only)
    fit = _quiet_fit("y ~ g + x", d, family="binomial")
    ci, _ = _profile(fit)
    open_side, closed_side = ("upper", "lower") if only == 1 else ("lower", "upper")
    assert ci.loc["g[T.c]", open_side] == (np.inf if only == 1 else -np.inf)
    bound = ci.loc["g[T.c]", closed_side]
    assert np.isfinite(bound) and abs(bound) < 10
    # the finite bound is a root of the profile: with g[T.c] held there, the deviance
    # rises by chi2_1(0.95) = 3.841459 above the (separated) fit's
    d["gb"] = (d["g"] == "b") * 1.0
    d["off"] = bound * (d["g"] == "c")
    held = glmx.glm("y ~ gb + x", d, family="binomial", offset="off")
    assert held.deviance - fit.deviance == pytest.approx(3.841459, abs=1e-5)
    # the other intervals are R's (MASS interpolates a spline through the profile)
    others = ci.drop(index="g[T.c]").to_numpy()
    assert np.isfinite(others).all()
    if only == 1:
        np.testing.assert_allclose(others, R_QUASI[seed], rtol=1e-4, atol=2e-4)


@pytest.mark.parametrize("seed", range(3))
def test_profile_bounds_under_complete_separation_are_infinite_not_huge(seed: int) -> None:
    fit = _quiet_fit("y ~ x + z", _complete(seed), family="binomial")
    ci, _ = _profile(fit)
    values = ci.to_numpy()
    # each bound is either infinite or a modest number: never 1e14
    assert (np.isinf(values) | (np.abs(values) < 100)).all(), ci
    # the separating slope is unbounded above; every other coefficient leaves x to
    # separate the data at any value it is held at, so its profile is flat: (-inf, inf)
    assert ci.loc["x", "upper"] == np.inf
    for name in ("Intercept", "z"):
        assert list(ci.loc[name]) == [-np.inf, np.inf]


def test_unbounded_profile_warns_and_points_to_firth() -> None:
    fit = _quiet_fit("y ~ g + x", _quasi(1), family="binomial")
    _, caught = _profile(fit)
    msgs = [str(w.message) for w in caught if issubclass(w.category, glmx.SeparationWarning)]
    assert len(msgs) == 1
    assert "'g[T.c]'" in msgs[0] and "method='firth'" in msgs[0] and "inf" in msgs[0]
    assert "\n" not in msgs[0] and "np.float64" not in msgs[0]


def test_profile_bounds_are_finite_and_quiet_without_separation() -> None:
    fit = glmx.glm("prop ~ sex + ldose", load("budworm"), family="binomial", weights="total")
    ci, caught = _profile(fit)
    assert np.isfinite(ci.to_numpy()).all()
    assert not [w for w in caught if issubclass(w.category, glmx.GlmxWarning)]


def test_poisson_level_with_only_zero_counts_has_minus_inf_lower_bound() -> None:
    rng = np.random.default_rng(0)
    d = pd.DataFrame({"g": np.repeat(["a", "b", "c"], 10), "x": rng.normal(size=30)})
    d["y"] = rng.poisson(3.0, size=30)
    d.loc[d["g"] == "c", "y"] = 0
    fit = _quiet_fit("y ~ g + x", d, family="poisson")
    ci, caught = _profile(fit)
    assert ci.loc["g[T.c]", "lower"] == -np.inf
    assert np.isfinite(ci.loc["g[T.c]", "upper"])
    assert np.isfinite(ci.drop(index="g[T.c]").to_numpy()).all()
    assert any("'g[T.c]'" in str(w.message) for w in caught)


# --- negative binomial likelihood-ratio tables (MASS::anova.negbin) -----------------------
def _nb(formula: str) -> glmx.GLMResults:
    return glmx.glm(formula, load("quine"), family="negative_binomial")


def test_negbin_anova_labels_the_statistic_lr_stat_and_reestimates_theta() -> None:
    # R: library(MASS); a <- glm.nb(Days ~ Eth, quine); b <- glm.nb(Days ~ Eth + Sex, quine)
    # c <- glm.nb(Days ~ Eth + Sex + Age + Lrn, quine); anova(c, a, b): rows sorted by
    # residual df; theta 1.15716543588 1.17140970112 1.27489264581; 2 x log-lik.
    # -1106.63380536 -1104.85464892 -1093.15101829; LR stat. 1.77915643891 11.70363063064;
    # Pr(Chi) 0.1822529450021 0.0196967488743
    small, mid, big = (
        _nb("Days ~ Eth"),
        _nb("Days ~ Eth + Sex"),
        _nb("Days ~ Eth + Sex + Age + Lrn"),
    )
    tab = glmx.anova(big, small, mid)
    assert list(tab.columns) == [
        "formula",
        "theta",
        "resid_df",
        "twologlik",
        "test",
        "df",
        "lr_stat",
        "p_value",
    ]
    assert "deviance" not in tab.columns and "resid_dev" not in tab.columns
    assert list(tab["formula"]) == [
        "Days ~ Eth",
        "Days ~ Eth + Sex",
        "Days ~ Eth + Sex + Age + Lrn",
    ]
    assert list(tab["test"]) == ["", "1 vs 2", "2 vs 3"]
    np.testing.assert_allclose(
        tab["theta"], [1.15716543588, 1.17140970112, 1.27489264581], rtol=1e-7
    )
    np.testing.assert_allclose(tab["resid_df"], [144, 143, 139])
    np.testing.assert_allclose(
        tab["twologlik"], [-1106.63380536, -1104.85464892, -1093.15101829], rtol=1e-10
    )
    np.testing.assert_allclose(tab["df"].iloc[1:], [1, 4])
    np.testing.assert_allclose(tab["lr_stat"].iloc[1:], [1.77915643891, 11.70363063064], rtol=1e-7)
    np.testing.assert_allclose(
        tab["p_value"].iloc[1:], [0.1822529450021, 0.0196967488743], rtol=1e-6
    )
    assert "theta re-estimated" in tab.attrs["heading"]
    # the same table whatever the order the models come in
    pd.testing.assert_frame_equal(glmx.anova(small, mid, big), tab)
    assert "p_value" not in glmx.anova(small, big, test="none").columns


def test_negbin_sequential_anova_says_theta_is_held_fixed() -> None:
    # R: anova(glm.nb(Days ~ Eth + Sex + Age + Lrn, quine)) warns "tests made without
    # re-estimating 'theta'"; Deviance 13.2283 1.9299 9.6516 2.5250
    fit = _nb("Days ~ Eth + Sex + Age + Lrn")
    for call in (fit.anova, lambda: glmx.anova(fit)):
        with pytest.warns(glmx.GlmxWarning, match="without re-estimating theta") as rec:
            tab = call()
        msg = str(rec[0].message)
        assert "1.27489" in msg and "glmx.anova(fit1, fit2)" in msg and "np.float64" not in msg
        np.testing.assert_allclose(
            tab["deviance"].iloc[1:], [13.2283, 1.9299, 9.6516, 2.5250], atol=1e-4
        )


def test_negbin_with_fixed_theta_anova_is_an_ordinary_deviance_table() -> None:
    q = load("quine")
    fam = glmx.families.negative_binomial(theta=1.27)
    a = glmx.glm("Days ~ Eth + Sex", q, family=fam)
    b = glmx.glm("Days ~ Eth + Sex + Age + Lrn", q, family=fam)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tab = glmx.anova(a, b)
        b.anova()
    # with theta held, the deviance drop is the likelihood ratio statistic
    assert tab["deviance"].iloc[1] == pytest.approx(2 * (b.loglik - a.loglik), rel=1e-9)


# --- family and link names ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("Poisson", "poisson"),
        (" poisson ", "poisson"),
        ("negbin", "negative_binomial"),
        ("nb", "negative_binomial"),
        ("negative.binomial", "negative_binomial"),
        ("logistic", "binomial"),
        ("normal", "gaussian"),
        ("inverse.gaussian", "inverse_gaussian"),
        ("Gamma", "gamma"),
    ],
)
def test_family_aliases_name_the_same_family(name: str, canonical: str) -> None:
    fam = glmx.families.get_family(name)
    assert fam == glmx.families.get_family(canonical)


def test_every_family_alias_is_documented() -> None:
    from pathlib import Path

    from glmx.families import _ALIASES

    page = (Path(__file__).resolve().parents[1] / "docs" / "families.md").read_text()
    section = page[page.index("## Family and link names") :]
    for alias in (*_ALIASES, "Poisson"):
        assert f"`{alias}`" in section or f'"{alias}"' in section, alias


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("possion", "poisson"),
        ("Posson", "poisson"),
        ("binomal", "binomial"),
        ("bernoulli", "binomial"),
        ("negbinomial", "negative_binomial"),
        ("negative binomial", "negative_binomial"),
        ("neg-binomial", "negative_binomial"),
        ("gausian", "gaussian"),
        ("gama", "gamma"),
        ("inverse gaussian", "inverse_gaussian"),
        ("quasi-poisson", "quasipoisson"),
        ("tweedy", "tweedie"),
    ],
)
def test_unknown_family_name_suggests_the_closest(typo: str, suggestion: str) -> None:
    d = load("quine")
    for fit in (glmx.glm, lambda f, d, family: glmx.glmm(f + " + (1 | Age)", d, family=family)):
        with pytest.raises(glmx.FamilyError) as err:
            fit("Days ~ Eth", d, family=typo)
        msg = str(err.value)
        assert f"unknown family {typo!r} (did you mean {suggestion!r}?); known families:" in msg
        assert "\n" not in msg


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("logt", "logit"),
        ("Logit", "logit"),
        ("probt", "probit"),
        ("cloglgo", "cloglog"),
        ("inverse_square", "inverse_squared"),
        ("sqr", "sqrt"),
        ("1/mu2", "inverse_squared"),
    ],
)
def test_unknown_link_name_suggests_the_closest(typo: str, suggestion: str) -> None:
    with pytest.raises(glmx.FamilyError) as err:
        glmx.glm("am ~ wt", load("mtcars"), family="binomial", link=typo)
    msg = str(err.value)
    assert f"unknown link {typo!r} (did you mean {suggestion!r}?); known links:" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(("kind", "name"), [("family", "zzz"), ("link", "xyz")])
def test_unknown_name_without_a_close_one_lists_the_known_names(kind: str, name: str) -> None:
    args = {"family": name} if kind == "family" else {"family": "binomial", "link": name}
    with pytest.raises(glmx.FamilyError) as err:
        glmx.glm("am ~ wt", load("mtcars"), **args)
    msg = str(err.value)
    assert f"unknown {kind} {name!r}; known" in msg and "did you mean" not in msg
    assert "logit" in msg if kind == "link" else "negative_binomial" in msg


# --- a bad option value is a glmx error naming the value -----------------------------
def _fits() -> tuple[glmx.GLMResults, object]:
    d = load("dobson")
    fit = glmx.glm("counts ~ outcome + treatment", d, family="poisson")
    s = load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mixed = glmx.glmm("Reaction ~ Days + (1 | Subject)", s)
    return fit, mixed


BAD_OPTIONS = [
    ("glm residuals", lambda f, m: f.residuals("deviant"), "'deviant'"),
    ("glm predict type", lambda f, m: f.predict(type="mean"), "'mean'"),
    ("glm predict interval", lambda f, m: f.predict(interval="credible"), "'credible'"),
    ("glm prediction level", lambda f, m: f.predict(interval="prediction", level=1.5), "1.5"),
    ("glm confint method", lambda f, m: f.confint(method="bootstrap"), "'bootstrap'"),
    ("rstandard type", lambda f, m: f.rstandard(type="raw"), "'raw'"),
    ("anova test", lambda f, m: glmx.anova(f, test="Wald"), "'Wald'"),
    ("mixed residuals", lambda f, m: m.residuals("deviant"), "'deviant'"),
    ("mixed predict type", lambda f, m: m.predict(type="mean"), "'mean'"),
    ("dataset name", lambda f, m: load("iris"), "'iris'"),
]


@pytest.mark.parametrize(("what", "call", "shown"), BAD_OPTIONS, ids=[b[0] for b in BAD_OPTIONS])
def test_bad_option_value_is_a_glmx_error_naming_it(what: str, call, shown: str) -> None:  # noqa: ANN001
    fit, mixed = _fits()
    with pytest.raises(glmx.GlmxError) as info:
        call(fit, mixed)
    assert isinstance(info.value, ValueError)  # as before: still a ValueError
    assert shown in str(info.value)


def test_summary_of_a_model_without_coefficients_says_so_as_r() -> None:
    """R's summary.glm of y ~ 0: "No Coefficients", no table or significance codes, and
    no iteration (R 4.2.2: residual deviance 15.004 on 8 df, AIC 33.317 for these data)."""
    d = pd.DataFrame({"y": [1.0, 2, 3, 0, 2, 5, 1, 2]})
    fit = glmx.glm("y ~ 0", d, family="poisson")
    text = str(fit.summary())
    assert "No Coefficients" in text
    assert "Estimate" not in text and "Signif. codes" not in text
    assert "Number of Fisher Scoring iterations: 0" in text
    assert "Residual deviance: 15.004  on 8  degrees of freedom" in text
    assert "AIC: 33.317" in text
