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
