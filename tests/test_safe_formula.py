"""Safe formulas (glmx.design.safe): untrusted formulas are checked with Python's
tokenizer and ``ast`` before formulaic evaluates anything.

A table of refused formulas (each must name the offending token in its message), a
table of accepted ones, and canary tests: a formula whose evaluation would write a file
is refused by ``safe_glm`` and the file never appears, while plain ``glmx.glm`` (the
trusted Python API, formulaic's full power) does evaluate it, which shows that the
canary would catch an evaluation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import glmx
from glmx.design.safe import check_formula, formula_variables, safe_glm

COLUMNS = ["y", "x", "z", "g", "s", "f", "t", "my col"]

# (formula, a piece of the message that names the offending token)
REFUSED = [
    ("__import__('os').system('ls') ~ x", "'__import__'"),
    ("y ~ np.log(x)", "attribute access 'np.log'"),
    ("y ~ x.__class__", "'__class__'"),
    ("y ~ ().__class__.__bases__[0].__subclasses__()", "'__class__'"),
    ("y ~ x.real", "attribute access 'x.real'"),
    ("y ~ eval('1')", "call to 'eval'"),
    ("y ~ exec('import os')", "call to 'exec'"),
    ("y ~ x + import os", "Python keyword 'import'"),
    ("y ~ open('f')", "call to 'open'"),
    ("y ~ getattr(x, 'y')", "call to 'getattr'"),
    ("y ~ [i for i in x]", "Python keyword 'for'"),
    ("y ~ (lambda: 1)()", "Python keyword 'lambda'"),
    ("y ~ f'{x}'", "f-string"),
    ("y ~ b'x'", "prefixed string"),
    ("y ~ x[0]", "subscript 'x[0]'"),
    ("y ~ {x}", "'{'"),
    ("y ~ I(x ** 10**10)", "exponent"),
    ("y ~ I(9 ** 99 ** 99)", "exponent"),
    ("y ~ I((x ** 2) ** 50)", "nested powers"),
    ("y ~ bs(x, df=10**9)", "must be a literal"),
    ("y ~ bs(x, df=100000)", "larger than 100"),
    ("y ~ x; import os", "';'"),
    ("y ~ x if z else x", "Python keyword 'if'"),
    ("y ~ x and z", "Python keyword 'and'"),
    ("y ~ (x := 1)", "':='"),
    ("y ~ x @ z", "'@'"),
    ("y ~ x << 100", "'<<'"),
    ("y ~ 'x'", "the literal 'x'"),
    ("y ~ w", "name 'w' is not a column"),
    ("y ~ log", "function 'log' is named but not called"),
    ("y ~ sum(x)", "call to 'sum'"),
    ("y ~ C(g, contr.__class__)", "'__class__'"),
    ("y ~ C(g, 'sum')", "contrasts \"'sum'\""),
    ("y ~ bs(x, extrapolation='`') + open('f') + I(z, k='`')", "the string '`' may hold"),
    ('y ~ center(x, k=\'")+open("f")+("\')', "may hold only letters"),
    ("y ~ C(g, levels=['a)', 'b'])", "the string 'a)' may hold"),
    ("y ~ `__class__`", "backquoted name '__class__'"),
    ("y ~ `offset(x`) + `a`", "backquoted name 'offset(x'"),
    ("y ~ `a~b`", "backquoted name 'a~b'"),
    ("y ~ `x", "'`' is not closed"),
    ("y ~ x # comment", "'# comment'"),
    ("y ~ x\\\n + z", "backslash"),
    ("y ~ bs(x, e='''a''')", "triple-quoted"),
    ("y ~ x ~ z", "more than one '~'"),
    ("y ~ (x ~ z)", "'~' inside parentheses"),
    ("y ~ ", "nothing follows '~'"),
    ("y ~ log(x:z)", "':' inside a function call"),
    ("y ~ (x > 3)", "only allowed inside I() or C()"),
    ("y ~ cbind(s, f)", "cbind() is only allowed as the whole response"),
    ("offset(x) ~ z", "offset() is only allowed"),
    ("y ~ log(offset(t))", "offset() is only allowed"),
    ("y ~ x + " * 1000 + "x", "longer than 5000"),
    ("y ~ bs(x, df=4, **{'a': 1})", "'{'"),
    ("y ~ bs(x, **kw)", "keyword '**kw' in bs()"),
    ("y ~ log(*x)", "starred argument"),
    ("y ~ 1j", "the literal 1j"),
]

ALLOWED = [
    "y ~ log(x) + I(x**2) + C(g):z + bs(x, df=4)",
    "cbind(s, f) ~ x + offset(log(t))",
    "y ~ `my col` + log(`my col`) + `my col`:x",
    "y ~ (x + z + g)^2 - 1",
    "y ~ 0 + x + z",
    "y ~ x %in% g",
    "y ~ x * z / g",
    "y ~ bs(x, knots=[1, 2.5], degree=3, extrapolation='extend') + cr(z, df=3)",
    "y ~ poly(x, 2) + poly(z, degree=3) + center(x) + scale(z)",
    "y ~ C(g, contr.sum) + C(g, contr.treatment(base='b'), levels=['a', 'b'])",
    "y ~ I(x > 2) + C(x >= 3) + I(x ** -1) + I((x + 1) / (z - 2))",
    "log(y) ~ sqrt(x) + abs(z) + log1p(x) + expm1(z) + exp(-x)",
    "I(s / (s + f)) ~ x",
    "~ x + z",
    "y ~ " + " + ".join(["x"] * 400),  # a long sum is a loop, not deep recursion
]


@pytest.mark.parametrize(("formula", "names"), REFUSED, ids=[r[0][:40] for r in REFUSED])
def test_refused_formulas_name_the_offending_token(formula, names):
    with pytest.raises(glmx.FormulaError, match="is refused") as info:
        check_formula(formula, COLUMNS)
    assert names in str(info.value)
    assert len(str(info.value)) < 600  # one readable line, even for a huge formula
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("formula", ALLOWED, ids=[a[:40] for a in ALLOWED])
def test_allowed_formulas_pass(formula):
    assert check_formula(formula, COLUMNS) is None
    assert check_formula(formula) is None  # any identifier may be a column


def test_columns_none_accepts_identifiers_but_not_dunders():
    check_formula("y ~ anything + log(other)")
    with pytest.raises(glmx.FormulaError, match="'__dict__'"):
        check_formula("y ~ __dict__")
    with pytest.raises(glmx.FormulaError, match="both a column and a function"):
        check_formula("y ~ log(x)", ["y", "x", "log"])


def test_formula_variables():
    got = formula_variables("cbind(s, f) ~ log(`my col`) + C(g, contr.sum):x + offset(log(t))")
    assert got == {"s", "f", "my col", "g", "x", "t"}
    assert formula_variables("~ bs(x, df=4, extrapolation='extend')") == {"x"}
    with pytest.raises(glmx.FormulaError):
        formula_variables("~ np.log(x)")


# --- safe_glm: refused formulas are never evaluated ----------------------------------------
@pytest.fixture()
def data() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"x": rng.uniform(1, 5, 40), "g": rng.choice(["a", "b"], 40)})
    df["y"] = rng.poisson(df["x"])
    return df


def canary_formulas(canary) -> list[str]:
    path = repr(str(canary))
    return [
        f"y ~ x + I(open({path}, 'w').write('1'))",
        f"y ~ x + I(__import__('pathlib').Path({path}).touch())",
        f"y ~ I(x + 0*len(open({path}, 'a').name))",
        f"y ~ x + offset(open({path}, 'w').write('1'))",
        f"I(open({path}, 'w').write('1')) ~ x",
        f"cbind(y, open({path}, 'w').write('1')) ~ x",
        f"y ~ x + C(g, open({path}, 'w'))",
        f"y ~ bs(x, df=open({path}, 'w'))",
        f"y ~ x + np.log(x) + I(np.save({path}, x))",
        f"y ~ x + I(globals()['__builtins__']['open']({path}, 'w'))",
        f"y ~ x + I(vars()['open']({path}, 'w'))",
        f"y ~ x + I([open({path}, 'w') for _ in [1]])",
        f"y ~ x + I((lambda: open({path}, 'w'))())",
        f"y ~ x + I(x.__class__.__init__.__globals__['open']({path}, 'w'))",
        f"y ~ x + {{open({path}, 'w')}}",
        f"y ~ x + I(f'{{open({path}, \"w\")}}')",
        "y ~ x + I(breakpoint())",
        f"y ~ x + I(exec(\"open({path}, 'w')\"))",
        f"y ~ x + I(eval(\"open({path}, 'w')\"))",
        f"y ~ x + I(compile('1', {path}, 'eval'))",
        f"y ~ x + I(getattr(__builtins__, 'open')({path}, 'w'))",
        f"y ~ x + I(print('x', file=open({path}, 'w')))",
    ]


def test_plain_glm_does_evaluate_the_canary(data, tmp_path):
    # the trusted Python API evaluates formula terms: this is what the canary detects
    canary = tmp_path / "canary.txt"
    try:
        glmx.glm(canary_formulas(canary)[0], data, family="poisson")
    except glmx.GlmxError:
        pass
    assert canary.exists()


@pytest.mark.parametrize("i", range(22))
def test_safe_glm_refuses_before_evaluation(data, tmp_path, i):
    canary = tmp_path / "canary.txt"
    with pytest.raises(glmx.FormulaError, match="is refused"):
        safe_glm(canary_formulas(canary)[i], data, family="poisson")
    assert not canary.exists()


def test_safe_glm_fits_like_glm(data):
    formula = "y ~ log(x) + I(x**2) + C(g) + bs(x, df=4)"
    a = safe_glm(formula, data, family="poisson")
    b = glmx.glm(formula, data, family="poisson")
    pd.testing.assert_series_equal(a.coef, b.coef, check_exact=True)
    assert a.deviance == b.deviance
    with pytest.raises(glmx.FormulaError, match="name 'w' is not a column"):
        safe_glm("y ~ w", data, family="poisson")
    # polars and dict data are checked against their columns too
    safe_glm("y ~ x", data.to_dict("list"), family="poisson")
