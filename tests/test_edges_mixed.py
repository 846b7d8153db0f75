"""Mixed models at the edges: scale-free rank decisions, degenerate data that get a glmx
error or an honest ``converged``, and no numpy or scipy exception or warning escaping.

lme4 is not installed here; the expected behaviour is lme4's documented one (its QR rank
check on scaled columns, nAGQ at most 25, checkConv) or the mathematics itself (a
covariate's unit changes its coefficient and nothing else; a row of weight zero is no
observation)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import glmx
from glmx.errors import GlmxError, GlmxWarning

DOCS = Path(__file__).parent.parent / "docs" / "mixed-models.md"
SEEDS = [1, 7, 2024]


def frame(seed: int, n_groups: int = 12, per_group: int = 10) -> pd.DataFrame:
    """A random-intercept data set with gaussian, binomial and poisson responses."""
    rng = np.random.default_rng(seed)
    gi = np.repeat(np.arange(n_groups), per_group)
    n = gi.size
    x = rng.normal(size=n)
    eta = 0.2 + 0.6 * x + rng.normal(scale=0.7, size=n_groups)[gi]
    return pd.DataFrame(
        {
            "x": x,
            "z": rng.normal(size=n),
            "g": np.array([f"g{i}" for i in gi]),
            "y": eta + rng.normal(size=n),
            "yb": rng.binomial(1, 1.0 / (1.0 + np.exp(-eta))).astype(float),
            "yp": rng.poisson(np.exp(eta)).astype(float),
        }
    )


RESPONSE = {"gaussian": "y", "binomial": "yb", "poisson": "yp"}


def fit_checked(*args: Any, **kwargs: Any) -> Any:
    """glmx.glmm, failing the test on any warning that is not a glmx warning."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fit = glmx.glmm(*args, **kwargs)
    foreign = [w for w in seen if not issubclass(w.category, GlmxWarning)]
    assert not foreign, [f"{w.category.__name__}: {w.message}" for w in foreign]
    fit.seen = [w for w in seen]  # type: ignore[attr-defined]
    return fit


def outcome(call: Callable[[], Any]) -> tuple[Any, list[warnings.WarningMessage]]:
    """(fit or the GlmxError raised, warnings); any other exception or warning fails."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            result = call()
        except GlmxError as e:
            result = e
    foreign = [w for w in seen if not issubclass(w.category, GlmxWarning)]
    assert not foreign, [f"{w.category.__name__}: {w.message}" for w in foreign]
    return result, list(seen)


def assert_glmx_message(err: Exception, *needles: str) -> None:
    msg = str(err)
    assert "\n" not in msg and "np.float64" not in msg and "np.int64" not in msg
    assert "\x1b[" not in msg and "Traceback" not in msg
    for needle in needles:
        assert needle in msg, msg


# --- item 2: rank decisions are scale-free ----------------------------------------------


@pytest.mark.parametrize("seed", SEEDS[:2])
@pytest.mark.parametrize("family", ["gaussian", "binomial", "poisson"])
@pytest.mark.parametrize("scale", [1e-150, 1e-100, 1e-7, 1e-3, 1e3, 1e7, 1e100, 1e150])
def test_lmm_keeps_small_scale_fixed_effect(seed: int, family: str, scale: float) -> None:
    """x in any unit: the column is kept, its coefficient is the unit-scale one divided by
    the scale, and every other number is unchanged (as glmx.glm; lme4 scales before its
    rank check)."""
    d = frame(seed)
    formula = f"{RESPONSE[family]} ~ x + z + (1 | g)"
    kw: dict[str, Any] = {"family": family}
    if family == "gaussian":
        kw["reml"] = False  # the REML criterion itself depends on X's units
    ref = fit_checked(formula, d, **kw)
    fit = fit_checked(formula, d.assign(x=d.x * scale), **kw)
    assert not any("rank deficient" in str(w.message) for w in fit.seen)
    assert list(fit.coef.index) == list(ref.coef.index)
    np.testing.assert_allclose(fit.coef["x"] * scale, ref.coef["x"], rtol=1e-5)
    np.testing.assert_allclose(fit.coef.drop("x"), ref.coef.drop("x"), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fit.se["x"] * scale, ref.se["x"], rtol=1e-4)
    np.testing.assert_allclose(fit.loglik, ref.loglik, rtol=1e-8)
    np.testing.assert_allclose(fit.theta, ref.theta, rtol=1e-4, atol=1e-6)
    assert fit.converged == ref.converged


@pytest.mark.parametrize("scale", [1e-150, 1e-7, 1.0, 1e7, 1e150])
@pytest.mark.parametrize(
    "extra, dropped",
    [
        ("x2", "x2"),  # x2 = 3 x
        ("xz", "xz"),  # xz = x + z
    ],
)
@pytest.mark.parametrize("family", ["gaussian", "binomial"])
def test_mixed_model_drops_truly_aliased_columns(
    scale: float, extra: str, dropped: str, family: str
) -> None:
    """A column that is a combination of earlier ones is dropped, the later one as R's QR
    does, with lme4's message, at every scale."""
    d = frame(3)
    d = d.assign(x=d.x * scale, z=d.z * scale)
    d = d.assign(x2=3.0 * d.x, xz=d.x + d.z)
    with pytest.warns(
        glmx.DataWarning, match=rf"rank deficient so dropping 1 column\(s\): {dropped}$"
    ):
        fit = glmx.glmm(f"{RESPONSE[family]} ~ x + z + {extra} + (1 | g)", d, family=family)
    assert list(fit.coef.index) == ["Intercept", "x", "z"]


# --- item 3: degenerate models do not claim success --------------------------------------


@pytest.mark.parametrize("value", [3.0, 0.0, -1e-3, 1e6])
@pytest.mark.parametrize("rhs", ["1", "x"])
def test_lmm_constant_response_is_a_data_error(value: float, rhs: str) -> None:
    d = frame(1).assign(c=value)
    err, _ = outcome(lambda: glmx.glmm(f"c ~ {rhs} + (1 | g)", d))
    assert isinstance(err, glmx.DataError)
    assert_glmx_message(err, "'c'", "constant")


@pytest.mark.parametrize("seed", SEEDS)
def test_lmm_response_fitted_exactly_is_a_data_error(seed: int) -> None:
    d = frame(seed)
    d = d.assign(exact=2.0 - 3.0 * d.x)
    err, _ = outcome(lambda: glmx.glmm("exact ~ x + (1 | g)", d))
    assert isinstance(err, glmx.DataError)
    assert_glmx_message(err, "'exact'", "exactly")


@pytest.mark.parametrize("nagq", [26, 100, 1000, np.int64(1000)])
def test_nagq_above_25_is_refused_naming_the_value(nagq: Any) -> None:
    d = frame(1)
    err, seen = outcome(lambda: glmx.glmm("yb ~ x + (1 | g)", d, family="binomial", nagq=nagq))
    assert isinstance(err, glmx.DataError)
    assert_glmx_message(err, f"nagq = {int(nagq)}", "25")
    fit = fit_checked("yb ~ x + (1 | g)", d, family="binomial", nagq=25)
    assert np.isfinite(fit.loglik)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("offset", [40.0, 700.0])
@pytest.mark.parametrize("nagq", [1, 7])
def test_separated_binomial_glmm_with_offsets_warns_and_is_not_converged(
    seed: int, offset: float, nagq: int
) -> None:
    """y = (x > 0) with offsets of +-offset: a glmx warning and converged=False, never
    numpy's ValueError."""
    d = frame(seed)
    d = d.assign(sep=(d.x > 0).astype(float), o=np.where(d.index % 2 == 0, offset, -offset))
    for off in ("o", None):
        fit, seen = outcome(
            lambda off=off: glmx.glmm(
                "sep ~ x + (1 | g)", d, family="binomial", offset=off, nagq=nagq
            )
        )
        assert not isinstance(fit, Exception), fit
        assert not fit.converged
        assert {w.category for w in seen} & {glmx.SeparationWarning, glmx.ConvergenceWarning}
        assert np.isfinite(fit.loglik)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("offset", [300.0, 700.0])
def test_glmm_with_alternating_extreme_offsets_fits_or_says_why(seed: int, offset: float) -> None:
    """Offsets of +-700 row by row: a finite fit with an honest ``converged`` (and a glmx
    warning when not converged), or a glmx error; never a numpy or scipy exception."""
    d = frame(seed).assign(o=lambda f: np.where(f.index % 2 == 0, offset, -offset))
    for family in ("binomial", "poisson"):
        result, seen = outcome(
            lambda family=family: glmx.glmm(
                f"{RESPONSE[family]} ~ x + (1 | g)", d, family=family, offset="o"
            )
        )
        if isinstance(result, Exception):
            assert isinstance(result, glmx.ConvergenceError)
            assert_glmx_message(result, "not finite")
            continue
        assert np.isfinite(result.loglik)
        if not result.converged:
            assert any(issubclass(w.category, GlmxWarning) for w in seen)


@pytest.mark.parametrize("family, value", [("binomial", 0.0), ("binomial", 1.0), ("poisson", 0.0)])
@pytest.mark.parametrize("rhs", ["1", "x"])
def test_glmm_response_at_its_edge_in_every_row_is_not_converged(
    family: str, value: float, rhs: str
) -> None:
    d = frame(2).assign(edge=value)
    fit, seen = outcome(lambda: glmx.glmm(f"edge ~ {rhs} + (1 | g)", d, family=family))
    assert not isinstance(fit, Exception), fit
    assert not fit.converged
    assert any(
        issubclass(w.category, glmx.ConvergenceWarning) and "'edge'" in str(w.message) for w in seen
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("family", ["gaussian", "binomial", "poisson"])
@pytest.mark.parametrize("pattern", ["alternate", "whole_group"])
def test_zero_weight_rows_change_nothing(seed: int, family: str, pattern: str) -> None:
    """Rows of weight zero are no observations: the fit equals the fit without them."""
    d = frame(seed)
    if pattern == "alternate":
        w = np.where(d.index % 3 == 0, 0.0, 1.0)
    else:
        w = np.where(d.g == "g0", 0.0, 1.0)
    d = d.assign(w=w)
    formula = f"{RESPONSE[family]} ~ x + (1 | g)"
    kw: dict[str, Any] = {"family": family}
    if family == "gaussian":
        kw["reml"] = False
    fit = fit_checked(formula, d, weights="w", **kw)
    sub = d[d.w > 0]
    ref = fit_checked(formula, sub, **kw)
    np.testing.assert_allclose(fit.coef, ref.coef, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fit.loglik, ref.loglik, rtol=1e-7)
    np.testing.assert_allclose(fit.sigma, ref.sigma, rtol=1e-5)


@pytest.mark.parametrize("family", ["gaussian", "binomial", "poisson"])
def test_all_zero_weights_is_a_data_error(family: str) -> None:
    d = frame(1).assign(w=0.0)
    err, _ = outcome(
        lambda: glmx.glmm(f"{RESPONSE[family]} ~ x + (1 | g)", d, family=family, weights="w")
    )
    assert isinstance(err, glmx.DataError)
    assert_glmx_message(err, "every weight is zero")


@pytest.mark.parametrize("family", ["gaussian", "binomial", "poisson"])
def test_infinite_response_or_offset_is_a_data_error(family: str) -> None:
    d = frame(1)
    y = RESPONSE[family]
    if family == "gaussian":
        bad = d.assign(y=d.y.where(d.index != 4, np.inf))
        err, _ = outcome(lambda: glmx.glmm("y ~ x + (1 | g)", bad))
        assert isinstance(err, glmx.DataError)
        assert_glmx_message(err, "'y'", "infinite")
    bad = d.assign(o=np.where(d.index == 5, -np.inf, 0.0))
    err, _ = outcome(lambda: glmx.glmm(f"{y} ~ x + (1 | g)", bad, family=family, offset="o"))
    assert isinstance(err, glmx.DataError)
    assert_glmx_message(err, "offset", "infinite")


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_lmm_response_beyond_floating_point_variance_is_a_data_error(scale: float) -> None:
    d = frame(1)
    err, _ = outcome(lambda: glmx.glmm("y ~ x + (1 | g)", d.assign(y=d.y * scale)))
    assert isinstance(err, glmx.DataError)
    assert_glmx_message(err, "'y'", "rescale")


# --- no numpy or scipy exception or warning from degenerate data -------------------------


def _degenerate_cases() -> dict[str, Callable[[], Any]]:
    d = frame(5)
    n = len(d)
    sep = (d.x > 0).astype(float)
    return {
        "binomial all zero": lambda: glmx.glmm(
            "z0 ~ x + (1 | g)", d.assign(z0=0.0), family="binomial"
        ),
        "poisson all zero": lambda: glmx.glmm(
            "z0 ~ x + (1 | g)", d.assign(z0=0.0), family="poisson"
        ),
        "single group": lambda: glmx.glmm("y ~ x + (1 | g1)", d.assign(g1="a")),
        "single group binomial": lambda: glmx.glmm(
            "yb ~ x + (1 | g1)", d.assign(g1="a"), family="binomial"
        ),
        "one row per group": lambda: glmx.glmm(
            "y ~ x + (1 | gi)", d.assign(gi=[str(i) for i in range(n)])
        ),
        "one row per group binomial": lambda: glmx.glmm(
            "s ~ x + (1 | gi)", d.assign(gi=[str(i) for i in range(n)], s=sep), family="binomial"
        ),
        "grouping factor with NaN": lambda: glmx.glmm(
            "y ~ x + (1 | gn)", d.assign(gn=np.where(d.index % 4 == 0, np.nan, d.index // 10))
        ),
        "grouping factor all NaN": lambda: glmx.glmm("y ~ x + (1 | gn)", d.assign(gn=np.nan)),
        "random slope on a constant": lambda: glmx.glmm("y ~ x + (c | g)", d.assign(c=1.0)),
        "random slope on a constant binomial": lambda: glmx.glmm(
            "yb ~ x + (c | g)", d.assign(c=1.0), family="binomial"
        ),
        "random slope on a constant, separated": lambda: glmx.glmm(
            "s ~ x + (c | g)", d.assign(c=1.0, s=sep), family="binomial"
        ),
        "zero weights lmm": lambda: glmx.glmm("y ~ x + (1 | g)", d.assign(w=0.0), weights="w"),
        "some zero weights binomial separated": lambda: glmx.glmm(
            "s ~ x + (1 | g)",
            d.assign(s=sep, w=np.where(d.index % 2 == 0, 0.0, 1.0)),
            family="binomial",
            weights="w",
        ),
        "constant response": lambda: glmx.glmm("c ~ x + (1 | g)", d.assign(c=2.0)),
        "nagq 1000": lambda: glmx.glmm("yb ~ 1 + (1 | g)", d, family="binomial", nagq=1000),
        "poisson offsets +-700": lambda: glmx.glmm(
            "yp ~ x + (1 | g)",
            d.assign(o=np.where(d.index % 2 == 0, 700.0, -700.0)),
            family="poisson",
            offset="o",
        ),
        "binomial offsets +-700": lambda: glmx.glmm(
            "s ~ 1 + (1 | g)",
            d.assign(s=sep, o=np.where(sep > 0, 700.0, -700.0)),
            family="binomial",
            offset="o",
        ),
        "tiny weights": lambda: glmx.glmm("y ~ x + (1 | g)", d.assign(w=1e-300), weights="w"),
        "huge weights": lambda: glmx.glmm("y ~ x + (1 | g)", d.assign(w=1e300), weights="w"),
        "response equal to group means": lambda: glmx.glmm(
            "m ~ 1 + (1 | g)", d.assign(m=d.groupby("g").y.transform("mean"))
        ),
    }


@pytest.mark.parametrize("case", list(_degenerate_cases()))
def test_degenerate_glmm_data_give_a_glmx_error_or_an_honest_fit(case: str) -> None:
    result, seen = outcome(_degenerate_cases()[case])
    if isinstance(result, Exception):
        assert_glmx_message(result)
        return
    assert np.isfinite(result.loglik)
    assert np.all(np.isfinite(result.coef))
    if result.converged:  # lme4's eigenvalue-ratio warning leaves a maximum a maximum
        assert not any(
            issubclass(w.category, glmx.ConvergenceWarning)
            and "nearly unidentifiable" not in str(w.message)
            for w in seen
        )
    else:
        assert any(issubclass(w.category, GlmxWarning) for w in seen)


# --- item 13: the singular-fit message points to glmx's docs ----------------------------


def test_singular_fit_points_to_glmx_docs() -> None:
    d = frame(4)
    d = d.assign(flat=d.y - d.groupby("g").y.transform("mean"))  # no between-group variance
    with pytest.warns(glmx.BoundaryWarning, match="docs/mixed-models.md") as seen:
        fit = glmx.glmm("flat ~ 1 + (1 | g)", d)
    assert fit.singular
    text = str(fit.summary())
    assert "isSingular" not in text and "help(" not in text
    assert "docs/mixed-models.md" in text
    assert all("help(" not in str(w.message) for w in seen)
    assert re.search(r"^## Singular fits$", DOCS.read_text(), flags=re.M)


# ------------------------------------------------- ordered factors in random-effect terms
ORDERED_RE = __import__("json").loads(
    (Path(__file__).parent / "fixtures" / "mixed" / "ordered_random_terms.json").read_text()
)  # tests/fixtures/mixed/make_ordered_random_terms.R (R 4.2.2, lme4 1.1-31)


def _ordered_frame() -> pd.DataFrame:
    d = ORDERED_RE["data"]
    levels = ORDERED_RE["o_levels"]
    return pd.DataFrame(
        {
            "y": d["y"],
            "count": d["count"],
            "z": d["z"],
            "g": [f"g{v}" for v in d["g"]],
            "o": pd.Categorical(d["o"], categories=levels, ordered=True),
        }
    )


@pytest.mark.parametrize("case", ORDERED_RE["cases"], ids=lambda c: c["family"])
def test_ordered_factor_in_random_term_takes_polynomial_contrasts_as_lme4(
    case: dict[str, Any],
) -> None:
    """(o | g) with o ordered: lme4's columns (Intercept), o.L, o.Q in the random term as in
    the fixed effects, and lme4's fit (its log-likelihood reached, its fixed effects)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GlmxWarning)
        fit = glmx.glmm(case["formula"], _ordered_frame(), family=case["family"], reml=False)
    assert list(fit.ranef["g"].columns) == case["ranef_columns"]
    assert list(fit.coef.index) == [
        n.replace("(Intercept)", "Intercept") for n in case["fixef_names"]
    ]
    assert fit.loglik >= case["loglik"] - 1e-7 * abs(case["loglik"])
    assert fit.loglik == pytest.approx(case["loglik"], rel=1e-7)
    # lme4's singular poisson fit (rhoend 1e-10) ends 6.9e-5 below glmx's log-likelihood,
    # on a flat ridge: its intercept is 1.3e-4 from glmx's
    rtol = 5e-4 if case["singular"] else 2e-5
    np.testing.assert_allclose(fit.coef.to_numpy(), case["fixef"], rtol=rtol, atol=1e-6)
    new = _ordered_frame().iloc[:5].assign(o=lambda d: d["o"].astype(str))  # plain strings
    np.testing.assert_allclose(fit.predict(new), fit.fitted[:5], rtol=1e-10)
