"""The categorical design: a many-level factor kept as codes (glmx.design.categorical).

Reference numbers come from R (tests/fixtures/categorical_design.R, which writes
categorical_design.json: the simulated data and, per case, R's ``glm(...)`` results, the
fit polished to the MLE; glmx at its default settings).  The
categorical path must also give the dense path's numbers (the same formula with the
threshold raised so that formulaic's dense one-hot is used).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import glmx
import glmx.design.categorical_terms as cterms
from glmx.design.categorical import CategoricalDesign
from glmx.design.formula import build_model_frame
from glmx.design.matrix import DenseDesign
from glmx.solvers.linalg import factorize

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "categorical_design.json").read_text())
DATA = pd.DataFrame(FIXTURE["data"])
CASES = FIXTURE["cases"]
RESPONSE = {"poisson": "ycount", "binomial": "yprop", "gamma": "ygamma", "gaussian": "ygauss"}


def _fit(formula: str, family: str, dense: bool, **kw: Any) -> Any:
    key = (formula, family, dense, tuple(sorted(kw.items())))
    if key not in _FITS:  # fits are shared by the tests (the module is read-only data)
        with _threshold(10**9 if dense else 100):
            link = "log" if family == "gamma" else None
            _FITS[key] = glmx.glm(formula, DATA, family=family, link=link, **kw)
    fit = _FITS[key]
    assert isinstance(fit._fit.X, DenseDesign if dense else CategoricalDesign)
    return fit


_FITS: dict[tuple[Any, ...], Any] = {}


@contextmanager
def _threshold(levels: int) -> Iterator[None]:
    """CATEGORICAL_MIN_LEVELS = levels inside the block: 100 takes the categorical path
    for the 150-level factor, 10**9 the dense one-hot."""
    old = cterms.CATEGORICAL_MIN_LEVELS
    cterms.CATEGORICAL_MIN_LEVELS = levels
    try:
        yield
    finally:
        cterms.CATEGORICAL_MIN_LEVELS = old


def _designs(formula: str, data: pd.DataFrame) -> tuple[Any, Any]:
    with _threshold(100):
        cat = build_model_frame(formula, data).X
    with _threshold(10**9):
        den = build_model_frame(formula, data).X
    return cat, den


def _dense_equivalent(D, codes, m, start, values):
    n, q = D.shape
    X = np.zeros((n, q + m))
    X[:, np.r_[0:start, start + m : q + m]] = D
    on = codes >= 0
    v = np.ones(n) if values is None else values
    X[np.flatnonzero(on), start + codes[on]] = v[on]
    return X


# --- the design's products against its dense equivalent ---------------------------------
@pytest.mark.parametrize("start", [0, 2, 4])
@pytest.mark.parametrize("weighted", [False, True])
def test_products_equal_dense(start: int, weighted: bool) -> None:
    rng = np.random.default_rng(start + 10 * weighted)
    n, q, m = 400, 4, 25
    D = rng.standard_normal((n, q))
    codes = rng.integers(-1, m, n)
    values = rng.standard_normal(n) if weighted else None
    X = CategoricalDesign(D, codes, m, start, values)
    Xd = _dense_equivalent(D, codes, m, start, values)
    b, w = rng.standard_normal(q + m), rng.random(n)
    np.testing.assert_allclose(X.matvec(b), Xd @ b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(X.rmatvec(w), Xd.T @ w, rtol=0, atol=1e-11)
    np.testing.assert_allclose(X.gram(w), Xd.T @ (Xd * w[:, None]), rtol=0, atol=1e-11)
    np.testing.assert_array_equal(X.rows(np.arange(n)), Xd)
    np.testing.assert_array_equal(X.to_sparse().toarray(), Xd)
    for j in (0, start, start + m - 1, q + m - 1):
        np.testing.assert_array_equal(X.column(j), Xd[:, j])
    sub = np.array([5, 1, 77])
    np.testing.assert_array_equal(X.take_rows(sub).rows(np.arange(3)), Xd[sub])
    kept = np.ones(q + m, dtype=bool)
    kept[[start + 2, q + m - 1]] = False
    A = rng.standard_normal((q + m - 2, q + m - 2))
    V = A @ A.T
    quad = np.einsum("ij,ij->i", Xd[:, kept] @ V, Xd[:, kept])  # x_i' V x_i
    np.testing.assert_allclose(X.row_quadratic_form(V, kept), quad, rtol=1e-12, atol=1e-10)
    for cols in ([0, 1, 3], [start, start + 3, q + m - 1], list(range(q + m))):
        part = X.select_columns(np.array(cols))
        np.testing.assert_array_equal(part.rows(np.arange(n)), Xd[:, cols])


def _aliasing_case(kind: str):
    """(design, weights) where R's in-order rule aliases something."""
    rng = np.random.default_rng(7)
    n, m, start = 600, 30, 2
    codes = rng.integers(-1, m, n)
    D = np.column_stack([np.ones(n), rng.standard_normal((n, 2))])
    w = rng.random(n)
    if kind == "zero_weight_level":
        w[codes == 5] = 0.0
    elif kind == "zero_weight_reference":  # intercept = sum of the level columns
        w[codes == -1] = 0.0
    elif kind == "level_constant_before":  # x1 constant within levels: a level is aliased
        D[:, 1] = rng.standard_normal(m + 1)[codes]
    elif kind == "combination_after":  # the last dense column is in the span of all before
        D[:, 2] = 2.0 * D[:, 1] + rng.standard_normal(m + 1)[codes]
    return CategoricalDesign(D, codes, m, start), w


@pytest.mark.parametrize(
    "kind, aliased",
    [
        ("zero_weight_level", [7]),  # column start + 5
        ("zero_weight_reference", [31]),  # the last level, as R's in-order pivoting
        ("level_constant_before", [31]),
        ("combination_after", [32]),
    ],
)
def test_factorization_follows_r_in_order_rule(kind: str, aliased: list[int]) -> None:
    X, w = _aliasing_case(kind)
    fac = X.factorize(w)
    ref = factorize(X.gram(w))  # the dense Gram with the same in-order rule
    assert np.flatnonzero(fac.aliased).tolist() == aliased
    np.testing.assert_array_equal(fac.aliased, ref.aliased)
    assert fac.rank == ref.rank == X.shape[1] - len(aliased)
    rhs = np.random.default_rng(1).standard_normal(X.shape[1])
    np.testing.assert_allclose(fac.solve(rhs), ref.solve(rhs), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(fac.inverse(), ref.inverse(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(fac.inverse_diagonal(), np.diag(ref.inverse()), rtol=1e-9)


# --- against R ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_r(name: str) -> None:
    case = CASES[name]
    # R: glm(<formula with g>, family, data, weights, control = glm.control(epsilon)),
    # polished to the MLE (restarted from its coefficients until they stop changing), so
    # glmx runs at its default settings
    fit = _fit(case["formula"], case["family"], False, weights=case["weights"] or None)
    r_coef = np.array([np.nan if c is None else c for c in case["coef"]])
    r_se = np.array([np.nan if c is None else c for c in case["se"]])
    assert len(fit.coef) == len(r_coef)
    np.testing.assert_array_equal(np.isnan(fit.coef.to_numpy()), np.isnan(r_coef))
    np.testing.assert_allclose(fit.coef.to_numpy(), r_coef, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(fit.se.to_numpy(), r_se, rtol=1e-7, atol=1e-9)
    assert fit.deviance == pytest.approx(case["deviance"], rel=1e-9)
    assert fit.null_deviance == pytest.approx(case["null_deviance"], rel=1e-9)
    assert fit.aic == pytest.approx(case["aic"], rel=1e-9)
    assert fit.df_resid == case["df_residual"]
    np.testing.assert_allclose(fit.influence()["hat"].to_numpy()[:20], case["hat"], atol=1e-8)
    pred = fit.predict(DATA.iloc[:10], type="link", se=True)
    np.testing.assert_allclose(pred["fit"], case["predict_link"], rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(pred["se"], case["predict_link_se"], rtol=1e-6, atol=1e-9)


def test_names_follow_r_order() -> None:
    fit = _fit("ygamma ~ x1 + x1:C(g) + x2", "gamma", False)
    # R: names(coef(glm(ygamma ~ x1 + x1:g + x2, Gamma(link = "log"), d))) ->
    #   "(Intercept)" "x1" "x2" "x1:gL002" ... "x1:gL150"
    names = list(fit.coef.index)
    assert names[:4] == ["Intercept", "x1", "x2", "x1:C(g)[T.L002]"]
    assert names[-1] == "x1:C(g)[T.L150]" and len(names) == 152


# --- the categorical path gives the dense path's numbers ---------------------------------
@pytest.mark.parametrize("family", ["poisson", "binomial", "gaussian", "gamma"])
def test_categorical_equals_dense(family: str) -> None:
    formula = f"{RESPONSE[family]} ~ x1 + C(g) + x2"
    # binomial: proportions of 8 trials, and level L077 has weight 0 (aliased in both)
    kw = {"weights": "trials"} if family == "binomial" else {}
    cat = _fit(formula, family, False, **kw)
    den = _fit(formula, family, True, **kw)
    assert list(cat.coef.index) == list(den.coef.index)
    np.testing.assert_array_equal(cat.aliased, den.aliased)
    assert cat.aliased.sum() == (family == "binomial")
    np.testing.assert_allclose(cat.coef, den.coef, rtol=0, atol=1e-9)  # NaN where aliased
    np.testing.assert_allclose(cat.se, den.se, rtol=0, atol=1e-9)
    assert cat.deviance == pytest.approx(den.deviance, rel=1e-12, abs=1e-9)
    assert cat.aic == pytest.approx(den.aic, rel=1e-12, abs=1e-9)
    assert cat.n_iter == den.n_iter
    np.testing.assert_allclose(cat.vcov, den.vcov, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "formula, family",
    [("ycount ~ x1 + C(g):x2", "poisson"), ("ygauss ~ 0 + x1 + C(g)", "gaussian")],
)
def test_interaction_and_no_intercept_equal_dense(formula: str, family: str) -> None:
    cat = _fit(formula, family, False)
    den = _fit(formula, family, True)
    assert list(cat.coef.index) == list(den.coef.index)
    np.testing.assert_allclose(cat.coef, den.coef, rtol=0, atol=1e-9)
    np.testing.assert_allclose(cat.se, den.se, rtol=0, atol=1e-9)
    assert cat.deviance == pytest.approx(den.deviance, rel=1e-12)


def test_influence_and_predict_equal_dense() -> None:
    formula = "yprop ~ x1 + C(g) + x2"
    cat = _fit(formula, "binomial", False, weights="trials")
    den = _fit(formula, "binomial", True, weights="trials")
    ic, id_ = cat.influence(), den.influence()
    assert list(ic.columns) == list(id_.columns)
    np.testing.assert_allclose(
        ic.to_numpy(dtype=float), id_.to_numpy(dtype=float), rtol=1e-8, atol=1e-10
    )
    new = DATA.iloc[[3, 500, 1499]]
    pc = cat.predict(new, se=True)
    np.testing.assert_allclose(pc.to_numpy(), den.predict(new, se=True).to_numpy(), atol=1e-12)
    np.testing.assert_allclose(cat.predict(), den.predict(), rtol=0, atol=1e-12)
    missing = new.assign(g=["L001", None, "L150"])  # a missing level: NaN (R's na.pass)
    pm = cat.predict(missing, se=True)
    assert np.isnan(pm["fit"].iloc[1]) and np.isnan(pm["se"].iloc[1])
    both = cat.predict(missing.iloc[[0, 2]])
    np.testing.assert_allclose(pm["fit"].iloc[[0, 2]], both, rtol=1e-12)


def test_unseen_level_in_new_data() -> None:
    fit = _fit("ycount ~ x1 + C(g) + x2", "poisson", False)
    new = DATA.iloc[:2].assign(g=["L001", "L999"])
    with pytest.raises(glmx.DataError, match="'L999'"):
        fit.predict(new)


def test_anova_with_categorical_block() -> None:
    fit = _fit("ycount ~ x1 + C(g) + x2", "poisson", False)
    tab = fit.anova()
    # R: anova(glm(ycount ~ x1 + g + x2, poisson, d)): rows NULL, x1, g, x2
    assert list(tab.index) == ["NULL", "x1", "C(g)", "x2"]
    assert tab["resid_dev"].iloc[-1] == pytest.approx(fit.deviance, rel=1e-9)
    assert int(tab["df"].iloc[2]) == 149


# --- the design built from the formula equals formulaic's dense one -----------------------
@pytest.mark.parametrize(
    "formula",
    ["ycount ~ x1 + C(g) + x2", "ycount ~ C(gid) + x1", "ycount ~ g", "ycount ~ x2:C(g) - 1",
     "ycount ~ log(z + 5) + C(g) + I(x1 ** 2)"],
)  # fmt: skip
def test_design_equals_formulaic(formula: str) -> None:
    data = DATA.assign(gid=DATA["g"].str[1:].astype(int) * 10)  # C(gid): levels 10 .. 1500
    cat, den = _designs(formula, data)
    assert isinstance(cat, CategoricalDesign) and isinstance(den, DenseDesign)
    assert cat.column_names == den.column_names
    np.testing.assert_array_equal(cat.rows(np.arange(cat.shape[0])), den.X)


@pytest.mark.parametrize(
    ("formula", "direct"),
    [("ycount ~ x1 + C(g) + k", True), ("ycount ~ x2:C(g) - 1", True), ("ycount ~ g + x1", True),
     ("ycount ~ x1 + C(g) + h", False), ("ycount ~ np.log(z + 5) + C(g)", False),
     ("ycount ~ x1 + C(g) + x1:k", False)],
)  # fmt: skip
def test_plain_columns_come_straight_from_the_data(formula, direct, monkeypatch) -> None:
    """Intercept, numeric columns and C(g) or C(g):x are read from the frame (formulaic
    lays out the design on the first rows only); anything else is materialized by
    formulaic on all rows.  Both give formulaic's dense design."""
    data = DATA.assign(k=np.arange(len(DATA)) % 7, h=DATA["g"].str[:3])  # k int, h 16 levels
    through_formulaic = []
    split = cterms._split
    monkeypatch.setattr(cterms, "_split", lambda *a: through_formulaic.append(1) or split(*a))
    cat, den = _designs(formula, data)
    assert isinstance(cat, CategoricalDesign)
    assert (not through_formulaic) is direct
    assert cat.column_names == den.column_names
    np.testing.assert_array_equal(cat.rows(np.arange(cat.shape[0])), den.X)


def test_level_without_rows_after_na_is_dropped() -> None:
    data = DATA.copy()
    data.loc[data["g"] == "L010", "x1"] = np.nan  # R's na.omit drops the level's rows
    cat, den = _designs("ycount ~ x1 + C(g)", data)
    assert "C(g)[T.L010]" not in cat.column_names
    assert cat.shape == (len(DATA) - int((DATA["g"] == "L010").sum()), 150)
    assert cat.column_names == den.column_names
    np.testing.assert_array_equal(cat.rows(np.arange(cat.shape[0])), den.X)


def test_unsupported_uses_fall_back_to_dense() -> None:
    # two terms of the factor (a main effect and a slope per level), other contrasts, or
    # few levels: the dense design
    small = DATA.assign(h=DATA["g"].str[:3])  # 16 levels
    with _threshold(100):
        for formula, p in (
            ("ycount ~ C(g) + C(g):x1", 300),
            ("ycount ~ C(g, contr.sum)", 150),
            ("ycount ~ x1 + C(h)", 17),
        ):
            mf = build_model_frame(formula, small)
            assert isinstance(mf.X, DenseDesign) and mf.X.shape[1] == p


@pytest.mark.parametrize(
    ("formula", "row", "column", "value", "message"),
    [
        (
            "ycount ~ x1 + x2 + C(g)",
            "r7",
            "x2",
            np.inf,
            r"design column 'x2' has 1 non-finite value\(s\) \(first at row 'r7': inf\)",
        ),
        (
            "ycount ~ x1:C(g)",
            "r9",
            "x1",
            -np.inf,
            r"values of its numeric part\)' has 1 non-finite value\(s\) \(first at row 'r9': -inf\)",
        ),
    ],
)
def test_infinite_values_are_named_with_their_row(formula, row, column, value, message) -> None:
    # the categorical design checks its dense block by one blocked pass, then names the
    # column and the first row of a non-finite value
    data = DATA.copy()
    data.index = [f"r{i}" for i in range(len(data))]
    with _threshold(100):
        assert isinstance(build_model_frame(formula, data).X, CategoricalDesign)
        data.loc[row, column] = value
        with pytest.raises(glmx.DataError, match=message):
            build_model_frame(formula, data)
