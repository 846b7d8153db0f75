"""Formula and design edges (issue 15): string columns are factors, ordered factors take R's
polynomial contrasts, powers expand fast and refuse what is meaningless, duplicate column
names, unknown functions and random-effect terms in a GLM formula give one-line glmx errors.

R reference numbers: tests/fixtures/ordered_contrasts.R (R 4.2.2) wrote
tests/fixtures/ordered_contrasts.json.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import formulaic
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import glmx
from glmx.design.formula import build_model_frame
from glmx.design.parsing import MAX_POWER, parse
from glmx.design.safe import check_formula
from glmx.errors import DataError, FormulaError

FIXTURES = Path(__file__).parent / "fixtures"
R_ORDERED = json.loads((FIXTURES / "ordered_contrasts.json").read_text())
SEEDS = [0, 1, 2]


def one_line_glmx_message(exc: BaseException) -> str:
    """The message, checked to be one line in glmx's words (no colours, no np.float64)."""
    text = str(exc)
    assert "\n" not in text, text
    assert "\x1b" not in text and "⧛" not in text, text
    assert "np.float64" not in text and "Traceback" not in text, text
    return text


def frame(seed: int, n: int = 90) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "y": rng.poisson(3.0, n).astype(float),
            "x": rng.normal(size=n),
            "z": rng.normal(size=n),
            "g": rng.choice(["10", "20", "30"], n),
            "w": rng.choice(["apple", "pear", "plum", "fig"], n),
        }
    )


# --- item 1: every string-like dtype is a factor ---------------------------------------

STRING_DTYPES = {
    "object": object,
    "str": "str",
    "string": "string",
    "string[python]": "string[python]",
    "string[pyarrow]": "string[pyarrow]",
    "arrow string": pd.ArrowDtype(pa.string()),
    "arrow large_string": pd.ArrowDtype(pa.large_string()),
    "arrow dictionary": pd.ArrowDtype(pa.dictionary(pa.int32(), pa.string())),
}


def with_dtype(df: pd.DataFrame, columns: list[str], dtype: object) -> pd.DataFrame:
    out = df.copy()
    for c in columns:
        if isinstance(dtype, pd.ArrowDtype) and pa.types.is_dictionary(dtype.pyarrow_dtype):
            arr = pa.array([None if pd.isna(v) else v for v in out[c]]).dictionary_encode()
            out[c] = pd.Series(pd.arrays.ArrowExtensionArray(arr), index=out.index)
        else:
            out[c] = out[c].astype(object).astype(dtype)
    return out


def arrow_and_polars_sources(df: pd.DataFrame) -> list[object]:
    """The frame's columns y, x, g, w as pyarrow tables (each string type) and polars."""
    pl = pytest.importorskip("polars")
    types = [pa.string(), pa.large_string()]
    if hasattr(pa, "string_view"):
        types.append(pa.string_view())
    numbers = {"y": df.y.to_numpy(), "x": df.x.to_numpy()}
    text = {c: [None if pd.isna(v) else v for v in df[c]] for c in ("g", "w")}
    sources: list[object] = [
        pa.table({**numbers, **{c: pa.array(v, type=t) for c, v in text.items()}}) for t in types
    ]
    polars = pl.DataFrame({"y": df.y, "x": df.x, **text})
    sources += [polars, polars.with_columns(pl.col("g").cast(pl.Categorical))]
    return sources


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype", [*STRING_DTYPES, "arrow and polars"], ids=str)
def test_every_string_dtype_is_a_factor(dtype, seed):
    df = frame(seed)
    df.loc[df.index[:3], "w"] = None  # missing values drop rows as for object columns
    ref = glmx.glm("y ~ g + w + x", df, family="poisson")
    assert "g[T.20]" in ref.coef.index and "w[T.pear]" in ref.coef.index
    if dtype == "arrow and polars":
        sources = arrow_and_polars_sources(df)
    else:
        sources = [with_dtype(df, ["g", "w"], STRING_DTYPES[dtype])]
    for data in sources:
        fit = glmx.glm("y ~ g + w + x", data, family="poisson")
        assert list(fit.coef.index) == list(ref.coef.index)
        assert fit.nobs == ref.nobs == len(df) - 3
        np.testing.assert_allclose(fit.coef, ref.coef, rtol=1e-12)


@pytest.mark.parametrize("dtype", list(STRING_DTYPES), ids=str)
def test_string_columns_of_new_data_predict_as_factors(dtype):
    df = frame(3)
    fit = glmx.glm(
        "y ~ g * x + w", with_dtype(df, ["g", "w"], STRING_DTYPES[dtype]), family="poisson"
    )
    new = with_dtype(df.iloc[:7], ["g", "w"], STRING_DTYPES[dtype])
    np.testing.assert_allclose(fit.predict(new), fit.predict(df.iloc[:7]), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["string[python]", "string[pyarrow]"])
def test_numeric_looking_strings_are_levels_not_numbers(dtype):
    df = frame(4)
    df["g"] = pd.array(["10", "20", "30"] * 30, dtype=dtype)
    fit = glmx.glm("y ~ g", df, family="poisson")
    assert list(fit.coef.index) == ["Intercept", "g[T.20]", "g[T.30]"]


# --- item 11: duplicate column names ---------------------------------------------------


@pytest.mark.parametrize("formula", ["y ~ x", "y ~ z", "y ~ 1", "y ~ x * z"])
@pytest.mark.parametrize("source", ["pandas", "arrow"])
def test_duplicate_column_names_raise_a_data_error_naming_them(formula, source):
    rng = np.random.default_rng(5)
    values = rng.normal(size=(30, 4))
    names = ["y", "x", "z", "x"]
    data: object = pd.DataFrame(values, columns=names)
    if source == "arrow":
        data = pa.table([pa.array(values[:, j]) for j in range(4)], names=names)
    with pytest.raises(DataError) as info:
        glmx.glm(formula, data)
    text = one_line_glmx_message(info.value)
    assert "'x'" in text and "more than one column" in text


def test_duplicate_column_names_in_new_data_raise_a_data_error():
    df = frame(6)
    fit = glmx.glm("y ~ x + g", df, family="poisson")
    new = pd.concat([df[["x", "g"]], df[["x"]]], axis=1).iloc[:4]
    with pytest.raises(DataError, match="'x'") as info:
        fit.predict(new)
    one_line_glmx_message(info.value)


# --- item 5: ordered factors take R's contr.poly ---------------------------------------


def r_data() -> pd.DataFrame:
    d = pd.DataFrame(R_ORDERED["data"])
    d["dose"] = pd.Categorical(d["dose"], categories=R_ORDERED["dose_levels"], ordered=True)
    d["grade"] = pd.Categorical(d["grade"], categories=R_ORDERED["grade_levels"], ordered=True)
    return d


@pytest.mark.parametrize("case", R_ORDERED["cases"], ids=lambda c: c["name"])
def test_ordered_factor_fit_matches_r_contr_poly(case):
    # R 4.2.2: see case["r_call"], glm.control(epsilon = 1e-12); coef, sqrt(diag(vcov)),
    # deviance and predict(fit, newdata = d[1:5, ]) in tests/fixtures/ordered_contrasts.json
    fit = glmx.glm(case["formula"], r_data(), family=case["family"])
    if "treatment" not in case["name"]:
        r_names = [n.replace("(Intercept)", "Intercept") for n in case["coef_names"]]
        assert list(fit.coef.index) == r_names
    se = np.asarray(case["se"])
    np.testing.assert_allclose(fit.coef.to_numpy(), case["coef"], rtol=1e-8, atol=1e-10 * se.max())
    np.testing.assert_allclose(fit.se.to_numpy(), se, rtol=1e-7)
    assert fit.deviance == pytest.approx(case["deviance"], rel=1e-9)
    eta = fit.predict(r_data().iloc[:5], type="link")
    np.testing.assert_allclose(eta, case["predict_link"], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("k", range(2, 8))
def test_ordered_factor_columns_are_r_contr_poly_with_r_names(k):
    # R: contr.poly(k) for k = 2..7; names x.L, x.Q, x.C, x^4, ... as model.matrix gives
    levels = [f"l{i}" for i in range(k)][::-1]  # level order is the declared order
    rng = np.random.default_rng(k)
    x = pd.Categorical(np.tile(levels, 4), categories=levels, ordered=True)
    df = pd.DataFrame({"x": x, "y": rng.normal(size=4 * k)})
    fit = glmx.glm("y ~ x", df)
    suffix = [".L", ".Q", ".C"] + [f"^{j}" for j in range(4, k)]
    assert list(fit.coef.index) == ["Intercept"] + [f"x{s}" for s in suffix[: k - 1]]
    X = build_model_frame("y ~ x", df).X.X  # rows 0..k-1: one per level, in order
    np.testing.assert_allclose(X[:k, 1:], R_ORDERED["contr_poly"][k - 2], atol=1e-12)
    # the fitted level means: the same as any full-rank coding of the factor
    means = df.groupby("x", observed=True)["y"].mean().to_numpy()
    np.testing.assert_allclose(fit.predict(df.iloc[:k]), means, rtol=1e-10, atol=1e-12)


def test_ordered_factor_without_an_intercept_has_one_column_per_level():
    # R: model.matrix(~ grade + 0) has gradeC, gradeB, gradeA for an ordered grade
    fit = glmx.glm("ok ~ grade + 0", r_data(), family="binomial")
    assert list(fit.coef.index) == ["gradeC", "gradeB", "gradeA"]


def test_ordered_factor_unused_levels_are_dropped_before_coding():
    d = r_data()
    d["dose"] = (
        d["dose"]
        .cat.add_categories(["never"])
        .cat.reorder_categories(["never", *R_ORDERED["dose_levels"]], ordered=True)
    )
    fit = glmx.glm("y ~ dose", d)
    ref = R_ORDERED["cases"][0]  # R drops the unused level (model.frame drop.unused.levels)
    np.testing.assert_allclose(fit.coef.to_numpy(), ref["coef"], rtol=1e-8)


@pytest.mark.parametrize(
    "term",
    ["C(dose)", "C(dose, contr.treatment)", "C(dose, Treatment)", "C(dose, Treatment('low'))"],
)
def test_treatment_contrasts_for_an_ordered_factor_on_request(term):
    d = r_data()
    fit = glmx.glm(f"count ~ {term} + z", d, family="poisson")
    assert [n.rsplit("[", 1)[-1] for n in fit.coef.index[1:-1]] == [
        "T.mid]",
        "T.high]",
        "T.max]",
        "T.over]",
    ]
    ref = R_ORDERED["cases"][3]  # R: glm(count ~ C(dose, contr.treatment) + z, poisson, d)
    np.testing.assert_allclose(fit.coef.to_numpy(), ref["coef"], rtol=1e-8)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "formula", ["count ~ dose", "count ~ dose * z + grade", "count ~ grade:z + dose"]
)
def test_ordered_factor_model_predicts_after_save_and_load(formula, seed, tmp_path):
    d = r_data()
    fit = glmx.glm(formula, d, family="poisson")
    rng = np.random.default_rng(seed)
    new = d.sample(8, random_state=seed).assign(z=rng.normal(size=8))
    plain = new.assign(dose=new["dose"].astype(str), grade=new["grade"].astype(str))
    path = tmp_path / "model.json"
    fit.save(path)
    loaded = glmx.load(path)
    expected = fit.predict(new)
    np.testing.assert_allclose(fit.predict(plain), expected, rtol=1e-12)
    np.testing.assert_allclose(loaded.predict(new), expected, rtol=1e-12)
    np.testing.assert_allclose(loaded.predict(plain), expected, rtol=1e-12)
    assert list(loaded.coef.index) == list(fit.coef.index)
    assert any(name.endswith(".L") for name in fit.coef.index)  # R's contr.poly coding


def test_safe_formulas_take_contrast_classes():
    cols = ["y", "g"]
    for ok in [
        "y ~ C(g, Treatment)",
        "y ~ C(g, Treatment('b'))",
        "y ~ C(g, Sum)",
        "y ~ C(g, Poly)",
    ]:
        check_formula(ok, cols)
    for bad in ["y ~ C(g, Treatment(g))", "y ~ C(g, Other)", "y ~ C(g, Treatment('a', 'b'))"]:
        with pytest.raises(FormulaError):
            check_formula(bad, cols)


# --- item 10: powers ---------------------------------------------------------------------

POWER_FORMULAS = [
    "(a + b)**{k}",
    "(a + b + c)^{k}",
    "(a * b)**{k}",
    "(a:b + c)**{k}",
    "(a + b + c + d)**{k} + e",
    "((a + b)**2 + c)**{k}",
    "(a + b + c)**{k} - a:b",
    "(a + b + c + d + e)**{k}",
]


def power_frame(seed: int, p: int = 5, n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = list("abcde") if p == 5 else [f"x{i}" for i in range(p)]
    df = pd.DataFrame(rng.normal(size=(n, p)), columns=names)
    df["y"] = rng.normal(size=n)
    return df


@pytest.mark.parametrize("template", POWER_FORMULAS)
def test_formula_power_expands_as_r_in_time_linear_in_the_result(template):
    # small powers: formulaic's own expansion, term for term and in its order
    for k in (1, 2, 3, 4):
        text = "y ~ " + template.format(k=k)
        assert str(parse(text)) == str(formulaic.Formula(text))
    # large powers: the fixed point (every interaction of the terms), fast
    df = power_frame(len(template))
    full = list(glmx.glm("y ~ " + template.format(k=5), df).coef.index)
    for k in (12, 20, 50, MAX_POWER):
        start = time.perf_counter()
        fit = glmx.glm("y ~ " + template.format(k=k), df)
        assert time.perf_counter() - start < 2.0
        assert list(fit.coef.index) == full


@pytest.mark.parametrize("p", [8, 10])
def test_formula_power_of_many_terms_is_fast(p):
    # (x0 + ... + x[p-1])**k has 1 + sum over j <= k of C(p, j) terms
    df = power_frame(p, p=p)
    inner = " + ".join(df.columns[:p])
    for k in (3, p, 3 * p):
        start = time.perf_counter()
        X = build_model_frame(f"y ~ ({inner})**{k}", df).X
        assert time.perf_counter() - start < 5.0
        assert X.shape[1] == 1 + sum(math.comb(p, j) for j in range(1, min(k, p) + 1))


def test_formula_power_refuses_an_expansion_past_the_term_limit():
    df = power_frame(0, p=20, n=50)
    inner = " + ".join(df.columns[:20])
    start = time.perf_counter()
    with pytest.raises(FormulaError, match="more than") as info:
        glmx.glm(f"y ~ ({inner})**20", df)
    assert time.perf_counter() - start < 5.0
    one_line_glmx_message(info.value)


@pytest.mark.parametrize(
    "power", ["0", "-1", "2.5", "1e3", str(MAX_POWER + 1), "10**6", "x", "(2)"]
)
@pytest.mark.parametrize("op", ["**", "^"])
def test_formula_power_refuses_meaningless_exponents(power, op):
    df = frame(8)
    start = time.perf_counter()
    with pytest.raises(FormulaError, match="whole number from 1 to") as info:
        glmx.glm(f"y ~ (x + z){op}{power}", df, family="poisson")
    assert time.perf_counter() - start < 2.0
    one_line_glmx_message(info.value)
    # inside a function call a power is arithmetic, with any number
    df = df.assign(x=lambda d: d.x.abs() + 1)
    fit = glmx.glm("y ~ I(x**0.5) + I(x**-1) + np.power(z, 2)", df, family="poisson")
    assert len(fit.coef) == 4


# --- item 13: unknown functions, random-effect terms, parse errors ----------------------


@pytest.mark.parametrize(
    "term, hint",
    [
        ("logg(x)", "did you mean log()"),
        ("factor(w)", "C(w)"),
        ("as.factor(w)", "C(w)"),
        ("ordered(w)", "C(w)"),
        ("ns(x, df = 3)", "cr(x, df=...)"),
        ("splines.ns(x, 3)", "bs(x, df=...)"),
        ("s(x)", "cr(x"),
        ("foo(x) + bar(z)", "formulas know"),
        ("I(logit(x))", "formulas know"),
    ],
)
def test_unknown_function_is_reported_as_unknown_function(term, hint):
    with pytest.raises(FormulaError) as info:
        glmx.glm(f"y ~ {term}", frame(10), family="poisson")
    text = one_line_glmx_message(info.value)
    assert "unknown function" in text and hint in text
    assert "not in the data" not in text
    # known functions, numpy and methods of a column are no unknown functions
    for known in ["I(x.clip(0))", "np.log1p(x**2)", "center(x)", "log(abs(x) + 1)", "I(round(x))"]:
        assert len(glmx.glm(f"y ~ {known}", frame(11), family="poisson").coef) == 2


@pytest.mark.parametrize(
    "formula",
    ["y ~ x + (1 | g)", "y ~ x + (x || g)", "y ~ (1 | g/w)", "y ~ x + (1 + x | g) + z"],
)
def test_random_effect_term_in_glm_points_to_glmm(formula):
    with pytest.raises(FormulaError, match=r"glmx\.glmm") as info:
        glmx.glm(formula, frame(12), family="poisson")
    text = one_line_glmx_message(info.value)
    assert "random-effect term '(" in text
    # '|' inside I() is Python's 'or', no random-effect term
    df = frame(13).assign(a=lambda d: d.x > 0, b=lambda d: d.z > 0)
    assert len(glmx.glm("y ~ I(a | b)", df, family="poisson").coef) == 2


@pytest.mark.parametrize("formula", ["y ~ x + (", "y ~ x +* z", "y ~ x ~ z", "y ~ (x + z"])
def test_formula_parse_errors_are_one_line_without_colour(formula):
    with pytest.raises(FormulaError) as info:
        glmx.glm(formula, frame(14), family="poisson")
    one_line_glmx_message(info.value)


def test_float32_and_decimal_columns_fit_in_double_precision():
    """float32 columns and Arrow decimals are numbers in double precision: transforms of
    them equal the float64 fit's (float32 arithmetic in I(x**2) differs by ~1e-8)."""
    import decimal

    import pyarrow as pa

    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=60), 3).astype(np.float32)
    y = 1 + x + x.astype(float) ** 2 + rng.normal(size=60)
    ref = glmx.glm("y ~ x + I(x**2)", pd.DataFrame({"x": x.astype(float), "y": y}))
    f32 = glmx.glm("y ~ x + I(x**2)", pd.DataFrame({"x": x, "y": y}))
    pd.testing.assert_series_equal(ref.coef, f32.coef, rtol=1e-13)
    dec = pa.array([decimal.Decimal(f"{v:.3f}") for v in x.astype(float)], pa.decimal128(12, 3))
    table = pa.table({"x": dec, "y": y})
    fit = glmx.glm("y ~ x + I(x**2)", table)
    assert list(fit.coef.index) == ["Intercept", "x", "I(x ** 2)"]
    xd = np.array([float(f"{v:.3f}") for v in x.astype(float)])
    ref_dec = glmx.glm("y ~ x + I(x**2)", pd.DataFrame({"x": xd, "y": y}))
    np.testing.assert_allclose(fit.coef, ref_dec.coef, rtol=1e-12)


@pytest.mark.parametrize("kind", ["date", "duration"])
def test_date_and_duration_columns_are_refused_naming_them(kind):
    n = 20
    col = (
        pd.date_range("2020-01-01", periods=n)
        if kind == "date"
        else pd.to_timedelta(np.arange(n), "D")
    )
    df = pd.DataFrame({"when": col, "y": np.arange(n, dtype=float)})
    with pytest.raises(glmx.DataError, match="'when' hold dates or durations"):
        glmx.glm("y ~ when", df)
