"""Hypothesis strategies for the fuzz suite (tests/test_fuzz*.py): random data frames in
every container glmx accepts, random formulas from glmx's grammar, families, links,
weights and offsets, and the checks every call must pass.

A drawn case is a :class:`Case` of plain values (sizes, dtype names, a seed): the data
are rebuilt from it deterministically by :func:`build_frame`, so that each failure
hypothesis finds can be pasted back into the test file as ``@example(case=Case(...))``.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from hypothesis import currently_in_test_context, event
from hypothesis import strategies as st
from scipy import optimize

import glmx
from glmx.errors import GlmxError, GlmxWarning

try:  # optional containers: drawn only when installed
    import polars as pl
except ImportError:  # pragma: no cover
    pl = None
try:
    import pyarrow as pa
except ImportError:  # pragma: no cover
    pa = None

# ------------------------------------------------------------------ the vocabulary
FAMILIES = (
    "gaussian",
    "binomial",
    "poisson",
    "gamma",
    "inverse_gaussian",
    "negative_binomial",
    "tweedie",
    "quasibinomial",
    "quasipoisson",
)
FAMILY_ALIASES = ("Poisson", "negbin", "nb", "logistic", "normal", "Gaussian", "poison", "")
LINKS = (
    None,
    "identity",
    "log",
    "logit",
    "probit",
    "cloglog",
    "loglog",
    "cauchit",
    "inverse",
    "inverse_squared",
    "sqrt",
)
GLMM_FAMILIES = (
    "gaussian",
    "binomial",
    "poisson",
    "negative_binomial",
    "gamma",
    "inverse_gaussian",
)

# dtypes of the numeric covariate x (names resolved by _cast)
NUMERIC_DTYPES = (
    "float64",
    "float32",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint64",
    "Int64",
    "Float64",
    "boolean",
    "bool",
    "object",
    "double[pyarrow]",
    "int32[pyarrow]",
    "decimal[pyarrow]",
    "datetime64[ns]",
    "timedelta64[ns]",
    "complex128",
)
# dtypes of the factor g
FACTOR_DTYPES = (
    "object",
    "category",
    "ordered",
    "string[python]",
    "string[pyarrow]",
    "large_string[pyarrow]",
    "dictionary[pyarrow]",
    "bool",
    "int",
    "numeric_strings",
    "mixed_object",
)
MISSING = ("none", "nan_x", "none_g", "inf_x", "nan_y", "inf_y", "na_all_x", "nan_w")
RESPONSES = ("family", "family", "family", "constant", "separated", "zeros", "negative", "wild")
SCALES = (1.0, 1.0, 1.0, 1e-7, 1e7, 1e-150, 1e150, 1e-300)
CONTAINERS = ("pandas", "polars", "arrow", "dict")
NAMES = ("plain", "odd", "duplicate", "keyword")

# formula pieces: {x} {z} {g} {h} {w} {off} are replaced by the (quoted) column names
GLM_TERMS = (
    "{x}",
    "{z}",
    "{g}",
    "C({g})",
    "{x}:{g}",
    "{x}*{g}",
    "{x}*{z}",
    "({x} + {z})**2",
    "({x} + {z} + {g})**3",
    "({x} + {z})**30",
    "log({x})",
    "log1p({z})",
    "exp({z})",
    "sqrt({x})",
    "abs({z})",
    "expm1({z})",
    "I({x}**2)",
    "I({x} > 0)",
    "I({z} * 2 + 1)",
    "center({z})",
    "scale({x})",
    "poly({z}, 2)",
    "bs({z}, df=4)",
    "cr({z}, df=4)",
    "C({g}, contr.sum)",
    "C({g}, contr.poly)",
    "C({g}, Treatment('b'))",
    "C({g}, Sum)",
    "offset({off})",
    "{z} %in% {g}",
    "{g}/{z}",
    "{g}:{h}",
    "-1",
    "0",
    "1",
)
# terms glmx does not support: each a clear FormulaError, never a raw exception
BAD_TERMS = (
    "factor({g})",
    "ns({z}, df=3)",
    "logg({x})",
    "(1 | {g})",
    "{x}.mean()",
    "__import__('os')",
    "{nosuch}",
    "({x} + {z})**1000",
    "poly({z}, 500)",
    "C({g}, contr.nonsense)",
    "I(",
)
RE_TERMS = (
    "(1 | {g})",
    "(1 | {h})",
    "({z} | {g})",
    "({z} || {g})",
    "(1 | {g}/{h})",
    "(1 | {g}:{h})",
    "(0 + {z} | {g})",
)


@dataclasses.dataclass(frozen=True)
class Case:
    """One drawn input, rebuilt by :func:`build_frame` (a repr that is valid Python)."""

    n: int = 20
    seed: int = 0
    x_dtype: str = "float64"
    g_dtype: str = "object"
    n_levels: int = 3
    missing: str = "none"
    response: str = "family"
    scale: float = 1.0
    container: str = "pandas"
    names: str = "plain"
    family: str = "gaussian"
    link: str | None = None
    terms: tuple[str, ...] = ("{x}",)
    weights: str | None = None  # None, "column", "array", "zero", "negative"
    offset: str | None = None  # None, "column", "array", "huge"
    intercept: bool = True


# ------------------------------------------------------------------ strategies
def glm_terms(bad: bool = True) -> st.SearchStrategy[tuple[str, ...]]:
    """Up to four terms of the grammar; one case in six adds a term glmx refuses."""
    good = st.lists(st.sampled_from(GLM_TERMS), min_size=0, max_size=4).map(tuple)
    if not bad:
        return good
    worse = st.tuples(good, st.sampled_from(BAD_TERMS)).map(lambda t: (*t[0], t[1]))
    return st.one_of(*([good] * 5), worse)


def often(common: Any, rare: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    """``common`` in about two cases of three, else one of ``rare``."""
    return st.one_of(st.just(common), st.just(common), st.sampled_from(rare))


def cases(
    families: tuple[str, ...] = FAMILIES + FAMILY_ALIASES,
    terms: st.SearchStrategy[tuple[str, ...]] | None = None,
    containers: tuple[str, ...] = CONTAINERS,
    max_n: int = 30,
) -> st.SearchStrategy[Case]:
    """Random frames, formulas, families, links, weights and offsets: each oddity in a
    minority of cases, so that most cases reach a fit."""
    available = tuple(c for c in containers if c not in _missing_containers())
    fams = tuple(f for f in families if f in FAMILIES)
    return st.builds(
        Case,
        n=st.one_of(st.sampled_from([0, 1, 2, 3]), st.integers(4, max_n), st.integers(4, max_n)),
        seed=st.integers(0, 2**16),
        x_dtype=often("float64", NUMERIC_DTYPES),
        g_dtype=often("object", FACTOR_DTYPES),
        n_levels=st.integers(1, 5),
        missing=often("none", MISSING),
        response=often("family", RESPONSES),
        scale=often(1.0, SCALES),
        container=st.sampled_from(available),
        names=often("plain", NAMES),
        family=st.one_of(st.sampled_from(fams), st.sampled_from(fams), st.sampled_from(families)),
        link=often(None, LINKS),
        terms=terms if terms is not None else glm_terms(),
        weights=often(None, ("column", "array", "zero", "negative")),
        offset=often(None, ("column", "array", "huge")),
        intercept=st.sampled_from([True, True, True, False]),
    )


def glmm_cases() -> st.SearchStrategy[tuple[Case, tuple[str, ...], int]]:
    """(case, random-effect terms, nagq): mostly gaussian, binomial and poisson models
    with one or two random-effect terms and the Laplace approximation."""
    main = ("gaussian", "binomial", "poisson")
    case = cases(
        families=main * 4 + GLMM_FAMILIES + ("quasipoisson", "Poisson", "poison"),
        terms=st.lists(st.sampled_from(GLM_TERMS[:12]), max_size=2).map(tuple),
        max_n=40,
    ).map(lambda c: c if c.n >= 4 or c.seed % 4 == 0 else dataclasses.replace(c, n=c.n + 20))
    re_terms = st.one_of(
        st.sampled_from(RE_TERMS).map(lambda t: (t,)),
        st.sampled_from(RE_TERMS).map(lambda t: (t,)),
        st.lists(st.sampled_from(RE_TERMS), min_size=0, max_size=2, unique=True).map(tuple),
    )
    nagq = often(1, (3, 9, 30))
    return st.tuples(case, re_terms, nagq)


def clean_cases(families: tuple[str, ...] = FAMILIES, max_n: int = 40) -> st.SearchStrategy[Case]:
    """Ordinary data a fit should succeed on: the family's own response, float and factor
    columns of common dtypes, formulas of plain terms (for comparing sources)."""
    simple = ("{x}", "{z}", "{g}", "{x}:{g}", "{x}*{z}", "I({x}**2)", "C({g}, contr.sum)")
    return st.builds(
        Case,
        n=st.integers(25, max_n),
        seed=st.integers(0, 2**16),
        x_dtype=st.sampled_from(["float64", "float32", "int64", "Float64"]),
        g_dtype=st.sampled_from(["object", "category", "string[python]", "string[pyarrow]"]),
        n_levels=st.integers(2, 4),
        missing=st.sampled_from(["none", "none", "nan_x", "none_g"]),
        response=st.just("family"),
        scale=st.just(1.0),
        container=st.just("pandas"),
        names=st.sampled_from(["plain", "plain", "odd"]),
        family=st.sampled_from(families),
        link=st.just(None),
        terms=st.lists(st.sampled_from(simple), min_size=1, max_size=3, unique=True).map(tuple),
        weights=st.sampled_from([None, "column"]),
        offset=st.sampled_from([None, "column"]),
        intercept=st.just(True),
    )


def _missing_containers() -> set[str]:
    return {name for name, mod in (("polars", pl), ("arrow", pa)) if mod is None}


# ------------------------------------------------------------------ building the data
def column_names(names: str) -> dict[str, str]:
    """Placeholder -> column name in the frame."""
    base = {k: k for k in ("y", "x", "z", "g", "h", "w", "off", "k")}
    if names == "odd":
        base.update({"x": "my x", "z": "z.2", "g": "grp-1", "y": "resp onse", "off": "log/t"})
    elif names == "keyword":
        base.update({"x": "class", "z": "lambda_", "g": "Intercept", "y": "y_1"})
    return base


def quoted(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else f"`{name}`"


def formula_for(case: Case, random_terms: tuple[str, ...] = ()) -> str:
    cols = column_names(case.names)
    subs = {k: quoted(v) for k, v in cols.items()} | {"nosuch": "nosuch_column"}
    rhs = [t.format(**subs) for t in case.terms + random_terms]
    if not case.intercept:
        rhs.append("0")
    return f"{subs['y']} ~ {' + '.join(rhs) if rhs else '1'}"


def _family_response(case: Case, eta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    fam = case.family.lower()
    n = eta.shape[0]
    if fam in ("binomial", "quasibinomial", "logistic"):
        return rng.binomial(1, 1.0 / (1.0 + np.exp(-eta))).astype(float)
    if fam in ("poisson", "quasipoisson", "negative_binomial", "negbin", "nb"):
        return rng.poisson(np.exp(eta)).astype(float)
    if fam in ("gamma", "inverse_gaussian"):
        return rng.gamma(4.0, np.exp(eta) / 4.0)
    if fam == "tweedie":
        return rng.poisson(np.exp(eta)) * rng.gamma(2.0, 0.5, size=n)
    return eta + rng.normal(scale=0.5, size=n)


def _cast_numeric(values: np.ndarray, dtype: str) -> Any:
    if dtype == "float64":
        return pd.array(values, dtype="float64")
    if dtype == "float32":
        with np.errstate(over="ignore"):  # 1e150 is inf in float32
            return values.astype(np.float32)
    if dtype in ("int8", "int16", "int32", "int64", "uint8", "uint64"):
        info = np.iinfo(np.dtype(dtype))
        r = np.nan_to_num(np.round(values), nan=0.0, posinf=info.max, neginf=info.min)
        with np.errstate(invalid="ignore"):  # uint64's max is no exact float
            return np.clip(r, info.min, info.max).astype(dtype)
    if dtype in ("Int64", "int32[pyarrow]"):
        bound = 1e15 if dtype == "Int64" else 2e9
        r = np.round(np.clip(values, -bound, bound))
        ints = [int(v) if np.isfinite(v) else None for v in r]
        return pd.array(ints, dtype=dtype)
    if dtype in ("Float64", "double[pyarrow]"):
        return pd.array(values, dtype="Float64").astype(dtype)
    if dtype == "boolean":
        return pd.array(values > 0, dtype="boolean")
    if dtype == "bool":
        return values > 0
    if dtype == "object":
        return np.array(list(values), dtype=object)
    if dtype == "decimal[pyarrow]":
        import decimal

        vals = [decimal.Decimal(f"{v:.3f}") if np.isfinite(v) else None for v in values]
        if any(v is not None and abs(v) >= 10**6 for v in vals):
            vals = [None if v is None else decimal.Decimal(1) for v in vals]
        return pd.array(vals, dtype=pd.ArrowDtype(pa.decimal128(12, 3)))
    if dtype == "datetime64[ns]":
        return pd.to_datetime(np.clip(np.nan_to_num(values), -1e4, 1e4), unit="D")
    if dtype == "timedelta64[ns]":
        return pd.to_timedelta(np.clip(np.nan_to_num(values), -1e6, 1e6), unit="s")
    if dtype == "complex128":
        return values.astype(np.complex128)
    raise AssertionError(dtype)


def _factor(labels: np.ndarray, n_levels: int, dtype: str) -> Any:
    words = np.array(["a", "b", "c", "d", "e"])[:n_levels]
    codes = labels % n_levels
    strs = words[codes]
    if dtype == "object":
        return np.array(strs, dtype=object)
    if dtype == "category":
        return pd.Categorical(strs)
    if dtype == "ordered":
        return pd.Categorical(strs, categories=sorted(set(words), reverse=True), ordered=True)
    if dtype in ("string[python]", "string[pyarrow]"):
        return pd.array(strs, dtype=dtype)
    if dtype == "large_string[pyarrow]":
        return pd.array(strs, dtype=pd.ArrowDtype(pa.large_string()))
    if dtype == "dictionary[pyarrow]":
        arr = pa.array(strs).dictionary_encode()
        return pd.array(arr.to_pandas().astype(str), dtype=pd.ArrowDtype(pa.string()))
    if dtype == "bool":
        return codes % 2 == 0
    if dtype == "int":
        return codes.astype(np.int64)
    if dtype == "numeric_strings":
        return pd.array(np.array(["10", "20", "30", "40", "50"])[codes], dtype="string")
    if dtype == "mixed_object":
        return np.array([s if i % 3 else i for i, s in enumerate(strs)], dtype=object)
    raise AssertionError(dtype)


def build_frame(case: Case) -> pd.DataFrame:
    """The pandas frame of a case (columns named by ``column_names``)."""
    rng = np.random.default_rng(case.seed)
    n = case.n
    xs = rng.normal(size=n)
    z = rng.uniform(0.1, 2.0, size=n)
    glab = rng.integers(0, 5, size=n)
    hlab = rng.integers(0, 3, size=n)
    eta = 0.3 + 0.4 * xs - 0.2 * z + 0.3 * (glab % case.n_levels == 1)
    y = _family_response(case, eta, rng)
    if case.response == "constant":
        y = np.full(n, 1.0)
    elif case.response == "separated":
        y = (xs > 0).astype(float)
    elif case.response == "zeros":
        y = np.zeros(n)
    elif case.response == "negative":
        y = rng.normal(size=n) - 1.0
    elif case.response == "wild":
        y = rng.standard_cauchy(size=n) * 1e6
    x = xs * case.scale
    w = rng.uniform(0.5, 2.0, size=n)
    off = rng.normal(scale=0.1, size=n)
    if case.missing == "nan_x" and n:
        x[rng.integers(n)] = np.nan
    elif case.missing == "inf_x" and n:
        x[rng.integers(n)] = np.inf
    elif case.missing == "na_all_x":
        x[:] = np.nan
    elif case.missing == "nan_y" and n:
        y[rng.integers(n)] = np.nan
    elif case.missing == "inf_y" and n:
        y[rng.integers(n)] = -np.inf
    elif case.missing == "nan_w" and n:
        w[rng.integers(n)] = np.nan
    if case.weights == "zero":
        w[:] = 0.0
    elif case.weights == "negative" and n:
        w[0] = -1.0
    if case.offset == "huge":
        off = off * 1e4
    g = _factor(glab, case.n_levels, case.g_dtype)
    if case.missing == "none_g" and n:
        g = pd.array(g, dtype=object) if not isinstance(g, pd.Categorical) else g.copy()
        g[rng.integers(n)] = None
    cols = column_names(case.names)
    data = {
        cols["y"]: y,
        cols["x"]: _cast_numeric(x, case.x_dtype),
        cols["z"]: z,
        cols["g"]: g,
        cols["h"]: np.array(["p", "q", "r"])[hlab],
        cols["w"]: w,
        cols["off"]: off,
        cols["k"]: rng.integers(0, 5, size=n),
    }
    df = pd.DataFrame(data)
    if case.names == "duplicate":  # a second column named x
        df = pd.concat([df, df[[cols["z"]]].rename(columns={cols["z"]: cols["x"]})], axis=1)
    return df


def to_container(df: pd.DataFrame, container: str) -> Any:
    """The frame as the user would pass it; pandas where the container cannot hold it
    (polars has no duplicate names, complex numbers or timedeltas of every kind)."""
    try:
        if container == "polars" and pl is not None:
            return pl.from_pandas(df)
        if container == "arrow" and pa is not None:
            return pa.Table.from_pandas(df, preserve_index=False)
        if container == "dict" and df.columns.is_unique:
            return {c: df[c].to_numpy() for c in df.columns}
    except Exception:  # noqa: BLE001 - the container's own limits, not glmx's
        pass
    return df


def glm_kwargs(case: Case, df: pd.DataFrame) -> dict[str, Any]:
    cols = column_names(case.names)
    kw: dict[str, Any] = {"family": case.family, "link": case.link}
    if case.weights in ("column", "zero", "negative"):
        kw["weights"] = cols["w"]
    elif case.weights == "array":
        kw["weights"] = df[cols["w"]].to_numpy()
    if case.offset in ("column", "huge"):
        kw["offset"] = cols["off"]
    elif case.offset == "array":
        kw["offset"] = df[cols["off"]].to_numpy()
    return kw


# ------------------------------------------------------------------ the invariants
FORBIDDEN = (
    ("np.float64", "numpy scalar repr"),
    ("np.int64", "numpy scalar repr"),
    ("\x1b", "ANSI escape"),
    ("Traceback", "a traceback"),
    ('File "', "a traceback line"),
)


def check_message(text: str, what: str) -> None:
    """A glmx message: no numpy scalar reprs, no terminal codes, no foreign traceback."""
    for needle, why in FORBIDDEN:
        assert needle not in text, f"{what} contains {why}: {text!r}"
    assert text.strip(), f"{what} is empty"
    assert len(text) < 2000, f"{what} is {len(text)} characters long: {text[:300]!r}..."


def note(what: str) -> None:
    """Count an outcome in hypothesis' statistics (--hypothesis-show-statistics)."""
    if currently_in_test_context():
        event(what)


@contextmanager
def honest() -> Iterator[list[warnings.WarningMessage]]:
    """Every exception inside must be a GlmxError and every warning a GlmxWarning, with
    clean messages (invariant (a)); a GlmxError is swallowed (the call refused the input,
    as it may)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield caught
        except GlmxError as exc:
            note(f"refused: {type(exc).__name__}")
            check_message(str(exc), type(exc).__name__)
    for w in caught:
        assert issubclass(w.category, GlmxWarning), (
            f"{w.category.__name__} from {w.filename}:{w.lineno}: {w.message}"
        )
        check_message(str(w.message), w.category.__name__)


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any | None:
    """``fn(*args, **kwargs)`` under :func:`honest`: its result, or None if glmx refused."""
    out = None
    with honest():
        out = fn(*args, **kwargs)
        note(f"result, converged={getattr(out, 'converged', None)}")
    return out


# the edges a maximum can sit on: (family, link) -> (bound of mu, eta there, side)
EDGES = {
    ("binomial", "log"): (1.0, 0.0, -1.0),
    ("quasibinomial", "log"): (1.0, 0.0, -1.0),
    ("poisson", "identity"): (0.0, 0.0, 1.0),
    ("poisson", "sqrt"): (0.0, 0.0, 1.0),
    ("quasipoisson", "identity"): (0.0, 0.0, 1.0),
    ("quasipoisson", "sqrt"): (0.0, 0.0, 1.0),
}


def newton_decrement(res: Any) -> float:
    """U'(X'WX)^{-1}U at the estimate (tests/test_r_generated.py): the deviance one more
    Fisher step would remove; at an edge of the valid region (EDGES) the step keeps the
    rows at the bound on the valid side (the KKT conditions), by scipy's SLSQP."""
    X, _ = res._design_for(None, None)
    X = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=float)
    X = X[:, ~res.aliased.to_numpy()]
    eta, mu = np.asarray(res.linear_predictor), np.asarray(res.fitted)
    w = np.asarray(res.prior_weights) * np.asarray(res.freq_weights)
    fam = res.family
    used = w > 0
    y = np.asarray(res.y)
    with np.errstate(all="ignore"):  # mu on the edge: inf, not a pass
        dmu = fam.link.mu_eta(eta)
        var = fam.variance(mu)
        a = dmu / var
        # V(mu) under- or overflowed (means near 1e-308 or beyond 1e154): d / V from logs
        odd = ~np.isfinite(a) | (var <= 0) | ~np.isfinite(var)
        if odd.any():
            a[odd] = np.sign(dmu[odd]) * np.exp(
                np.log(np.abs(dmu[odd])) - fam.log_variance(mu[odd])
            )
        u = X[used].T @ (w * (y - mu) * a)[used]
        info = X[used].T @ (X[used] * (w * dmu * a)[used][:, None])
    if not (np.isfinite(u).all() and np.isfinite(info).all()):
        return np.inf
    free = float(u @ np.linalg.lstsq(info, u, rcond=None)[0])
    edge = EDGES.get((fam.name, fam.link.name))
    if edge is None:
        return free
    bound, eta_b, side = edge
    rows = used & (y == bound)
    A, slack = side * X[rows], side * (eta[rows] - eta_b)
    qp = optimize.minimize(
        lambda d: -(u @ d) + 0.5 * d @ info @ d,
        np.zeros(X.shape[1]),
        jac=lambda d: -u + info @ d,
        constraints=[{"type": "ineq", "fun": lambda d: A @ d + slack, "jac": lambda d: A}],
        method="SLSQP",
        options={"ftol": 1e-16, "maxiter": 1000},
    )
    return float(-2.0 * qp.fun)


def rel(a: Any, b: Any) -> float:
    """Largest difference of a from b, relative to max(|b|, 1); NaN where both are NaN."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    assert a.shape == b.shape, (a.shape, b.shape)
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a - b) / np.maximum(np.abs(b), 1.0))
    return float(np.max(diff, initial=0.0)) if not np.isnan(diff).any() else np.inf


def glmx_version() -> str:
    return glmx.__version__
