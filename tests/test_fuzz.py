"""The fuzz suite of issue 15, item 14: random frames, formulas, families, links, weights,
offsets and sources (tests/fuzz_strategies.py), with four invariants:

(a) every call returns a result or raises a ``glmx.GlmxError`` (warnings: ``GlmxWarning``
    subclasses only), whose message holds no ``np.float64``, ANSI escape or traceback;
(b) nothing runs past a few seconds on small data (hypothesis deadlines of 5 s);
(c) a fit with ``converged=True`` satisfies its own optimality check: the Newton decrement
    U'(X'WX)^{-1}U below 1e-8 (|deviance| + 0.1), KKT at an edge of the valid region;
(d) the same model through each source (pandas, polars, Arrow, dict, Parquet file,
    Parquet directory with stray files, Dask with empty and drifting partitions, a saved
    model file, the command line) gives the same numbers to 1e-8.

The default profile runs a few hundred examples per invariant, derandomized (the same
examples on every run); ``pytest --hypothesis-profile=deep tests/test_fuzz.py`` draws
thousands at random.  Each failure found is kept below as an ``@example``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import glmx
from fuzz_strategies import (
    FAMILIES,
    FAMILY_ALIASES,
    Case,
    build_frame,
    call,
    cases,
    check_message,
    clean_cases,
    column_names,
    formula_for,
    glm_kwargs,
    glmm_cases,
    honest,
    newton_decrement,
    quoted,
    rel,
    to_container,
)
from glmx.cli import main as cli_main
from glmx.errors import DataError, GlmxError

DEEP = settings.get_current_profile_name() == "deep"
RTOL = 1e-8


def fuzz(n: int, deadline_ms: int = 5000) -> settings:
    """n examples (x20 under the deep profile), 5 s a call; derandomized unless deep."""
    return settings(
        max_examples=n * 20 if DEEP else n,
        deadline=deadline_ms,
        derandomize=not DEEP,
        database=None if not DEEP else settings.default.database,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )


def predicts_its_data(fit: Any, data: Any, case: Case, kw: dict[str, Any]) -> None:
    """A model predicts the data it was fitted on (rows it dropped: NaN), except a factor
    level seen only in rows dropped for a missing value: the fit never saw it, and R's
    predict refuses it too ("factor g has new levels")."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", glmx.GlmxWarning)
        try:
            pred = fit.predict(data, offset=kw.get("offset") if case.offset == "array" else None)
        except glmx.DataError as exc:
            assert case.missing != "none" and "not fitted with" in str(exc), str(exc)
            return
    assert len(pred) == case.n


def certified(fit: Any) -> None:
    """Invariant (c) for a GLM that says it converged."""
    assert np.isfinite(fit.deviance), f"converged with deviance {fit.deviance}"
    kept = ~fit.aliased.to_numpy()
    assert np.isfinite(fit.coef.to_numpy()[kept]).all(), f"converged with {fit.coef}"
    dec = newton_decrement(fit)
    assert dec <= 1e-8 * (abs(fit.deviance) + 0.1), (
        f"converged=True but the Newton decrement is {dec:.3g} (deviance {fit.deviance!r})"
    )


# ------------------------------------------------------------------ (a), (b), (c): glm
@fuzz(300)
@given(case=cases())
# y ~ 0, an empty model: LAPACK's potri refused the 0 x 0 matrix (LinAlgError)
@example(case=Case(n=1, terms=(), intercept=False))
# a negative weight was printed as np.float64(-1.0) (glmx/fitting.py)
@example(case=Case(n=1, weights="negative"))
# one row, an exact gaussian fit: numpy's divide-by-zero warning from log(deviance 0)
@example(case=Case(n=1))
# y ~ 0 + offset, binomial: the separation check took the max of an empty matrix
@example(case=Case(n=1, family="binomial", terms=(), offset="huge", intercept=False))
# poisson y ~ 1 on two equal counts: the dispersion test divided by a zero sd
@example(case=Case(n=2, family="poisson", terms=()))
# gamma, one row: dispersion 0, ZeroDivisionError in the log-likelihood (R: NaN)
@example(case=Case(n=1, family="gamma"))
# inverse gaussian, one row: numpy's divide-by-zero warning from log(deviance 0)
@example(case=Case(n=1, family="inverse_gaussian", terms=()))
# complex numbers: numpy's ComplexWarning, imaginary parts dropped silently
@example(case=Case(n=5, x_dtype="complex128"))
# durations: fitted in nanoseconds, then predict() refused the same frame
@example(case=Case(n=5, x_dtype="timedelta64[ns]"))
# x on the 1e-150 scale: numpy's overflow warning in (X'WX)^-1 (solvers/linalg.py)
@example(case=Case(n=4, seed=2, n_levels=1, scale=1e-150, family="binomial"))
# scale() of a constant column: np.float64(inf) in the message (design/formula.py)
@example(case=Case(n=2, terms=("scale({x})",), scale=1e-300))
# x:g with x missing in the only row of level 'c': predict on the data refuses the level
@example(case=Case(n=3, seed=0, n_levels=3, missing="nan_x", family="gaussian", terms=("{x}:{g}",)))
# y ~ -1 + 1 on one poisson row: numpy's warning in the dispersion test's sd (0 df)
@example(case=Case(n=1, seed=0, n_levels=1, family="poisson", terms=("-1",)))
# tweedie, huge offsets: means from 1e-308 to 1e133; the oracle's V(mu) underflowed (the fit
# was the exact maximum: the intercept solves the score equation to the last digit)
@example(case=Case(n=8, seed=581, n_levels=1, family="tweedie", terms=(), offset="huge"))
# gamma log, huge offsets: numpy's overflow warning in the step's decrement (driver.py)
@example(case=Case(n=4, seed=1, n_levels=1, family="gamma", link="log", terms=(), offset="huge"))
# tweedie, huge offsets: numpy's overflow warning squaring working residuals (dispersion)
@example(case=Case(n=4, seed=0, n_levels=1, family="tweedie", terms=(), offset="huge"))
# poisson, huge offsets: numpy's overflow warning squaring Pearson residuals (results/glm.py)
@example(case=Case(n=4, seed=0, n_levels=1, family="poisson", terms=(), offset="huge"))
# two rows, x on the 1e-150 scale, poisson: numpy's overflow warning in the eigen-based
# inverse of a boundary fit (solvers/linalg.py, EigenFactorization)
@example(case=Case(n=2, seed=1, n_levels=1, scale=1e-150, family="poisson"))
def test_glm_on_random_frames_formulas_families_is_honest(case: Case) -> None:
    df = build_frame(case)
    data = to_container(df, case.container)
    formula = formula_for(case)
    kw = glm_kwargs(case, df)
    fit = call(glmx.glm, formula, data, **kw)
    if fit is None:
        return
    with honest():
        str(fit.summary())
        fit.coef_table  # noqa: B018 - computed on access
        fit.confint(method="wald")
    if fit.converged:
        certified(fit)
    predicts_its_data(fit, data, case, kw)


# ------------------------------------------------------------------ (a), (b): glmm
@fuzz(120, deadline_ms=10_000)  # mixed fits of up to 2 s, on a shared 2-core machine
@given(drawn=glmm_cases())
# no fixed effects, y ~ (1 | g) + 0: IndexError on the empty covariance (mixed/fit.py)
@example(
    drawn=(
        Case(n=20, seed=1, n_levels=2, family="binomial", terms=(), intercept=False),
        ("(1 | {g})",),
        1,
    )
)
# separated by a huge offset: numpy's warning (and a raw OverflowError) from quantiles of
# infinite Pearson residuals in summary() (results/mixed_summary.py)
@example(
    drawn=(
        Case(n=20, seed=1, n_levels=2, family="binomial", terms=(), offset="huge"),
        ("(1 | {g})",),
        1,
    )
)
# separated binomial GLMMs with a non-canonical link, g fixed and random: PIRLS halved each
# step 30 times at pdev's floor (10 s), BOBYQA ran to its cap with the deviance falling to 0
@example(
    drawn=(
        Case(n=20, seed=194, n_levels=5, family="binomial", link="loglog",
             terms=("C({g})", "{x}:{g}")),
        ("(1 | {g})",),
        1,
    )
)  # fmt: skip
@example(
    drawn=(
        Case(n=20, seed=194, n_levels=5, family="binomial", link="cauchit",
             terms=("{z}", "{x}*{g}")),
        ("(1 | {g})",),
        1,
    )
)  # fmt: skip
# an Arrow decimal column with a missing value: pandas' to_numeric dropped it (ValueError)
@example(
    drawn=(
        Case(n=20, seed=1, x_dtype="decimal[pyarrow]", n_levels=1, missing="nan_x", terms=()),
        ("(1 | {g})",),
        1,
    )
)
# x on the 1e-300 scale: numpy's warning in summary()'s correlation of the fixed effects
@example(drawn=(Case(n=20, seed=1, n_levels=2, scale=1e-300), ("(1 | {g})",), 1))
# x as text (a factor) with a level only in a row dropped for a missing g: predict refuses it
@example(
    drawn=(
        Case(n=20, seed=1, x_dtype="object", n_levels=2, missing="none_g", family="binomial"),
        ("(1 | {g})",),
        1,
    )
)
# huge offsets: numpy's overflow warning in the Pearson residuals (results/mixed.py)
@example(
    drawn=(
        Case(n=21, seed=12071, n_levels=2, family="binomial", offset="huge"),
        ("(1 | {g})",),
        1,
    )
)
# two rows fitted exactly: numpy's divide-by-zero warning in the Pearson residuals
@example(drawn=(Case(n=2, seed=4, n_levels=2, family="binomial", terms=()), ("(1 | {g}/{h})",), 1))
def test_glmm_on_random_frames_and_random_effects_is_honest(
    drawn: tuple[Case, tuple[str, ...], int],
) -> None:
    case, re_terms, nagq = drawn
    df = build_frame(case)
    data = to_container(df, case.container)
    formula = formula_for(case, re_terms)
    kw = glm_kwargs(case, df)
    fit = call(glmx.glmm, formula, data, nagq=nagq, **kw)
    if fit is None:
        return
    with honest():
        str(fit.summary())
        fit.varcorr  # noqa: B018
    if fit.converged:  # an honest claim: finite estimates and likelihood
        assert np.isfinite(fit.loglik), f"converged with loglik {fit.loglik}"
        assert np.isfinite(fit.coef.to_numpy()).all() or fit.coef.isna().any()
        assert np.isfinite(np.asarray(fit.theta, dtype=float)).all(), fit.theta
    predicts_its_data(fit, data, case, kw)


# ------------------------------------------------------------------ (a): formula text
FORMULA_FRAME = pd.DataFrame(
    {
        "y": [0.0, 1.0, 3.0, 2.0, 5.0, 1.0, 0.0, 4.0, 2.0, 3.0, 1.0, 2.0],
        "x": np.linspace(0.5, 3.0, 12),
        "z": np.tile([1.0, -1.0, 2.0], 4),
        "g": list("abcabcabcabc"),
        "h": list("ppqqrrppqqrr"),
    }
)
TOKENS = (
    ["y", "x", "z", "g", "h", "1", "0", "-1", "2", "3", "30", "1e400", "2.5", "`x`"]
    + ["+", "-", "*", "/", ":", "**", "^", "|", "||", "~", "%in%", "(", ")", ",", "="]
    + ["log(", "exp(", "sqrt(", "I(", "C(", "poly(", "bs(", "cr(", "scale(", "center("]
    + ["offset(", "cbind(", "factor(", "ns(", "np.log(", "df=3", "contr.sum", "'a'", " "]
    + ["__class__", ".", "[", "]", "lambda", "\n", "#", "\\", "\x00", "é", ">", "=="]
)


@fuzz(300)
@given(
    tokens=st.lists(st.sampled_from(TOKENS), min_size=0, max_size=12),
    tilde=st.booleans(),
    mixed=st.booleans(),
)
@example(tokens=["(", "x", "+", "z", ")", "**", "30"], tilde=True, mixed=False)
# formulaic's parser failing inside: AttributeError 'Token' object has no attribute 'fixity'
@example(tokens=["(", "]"], tilde=True, mixed=False)
@example(tokens=["(", "]"], tilde=True, mixed=True)
@example(tokens=["(", "1", "|", "g", ")"], tilde=True, mixed=False)
@example(tokens=["factor(", "g", ")"], tilde=True, mixed=False)
def test_any_formula_text_is_a_result_or_a_formula_error(
    tokens: list[str], tilde: bool, mixed: bool
) -> None:
    text = ("y ~ " if tilde else "") + " ".join(tokens)
    if mixed:
        call(glmx.glmm, text, FORMULA_FRAME, family="poisson")
    else:
        call(glmx.glm, text, FORMULA_FRAME, family="poisson")


# ------------------------------------------------------------------ (d): in-memory sources
def same_fit(fit: Any, ref: Any, what: str) -> None:
    assert list(fit.coef.index) == list(ref.coef.index), what
    assert rel(fit.coef, ref.coef) < RTOL, (what, fit.coef, ref.coef)
    assert rel(fit.se, ref.se) < RTOL, (what, fit.se, ref.se)
    for name in ("deviance", "null_deviance", "aic", "dispersion"):
        assert rel(getattr(fit, name), getattr(ref, name)) < RTOL, (what, name)
    assert fit.nobs == ref.nobs and fit.n_dropped == ref.n_dropped, what


def reference_fit(case: Case) -> tuple[pd.DataFrame, str, dict[str, Any], Any]:
    df = build_frame(case)
    formula = formula_for(case)
    kw = glm_kwargs(case, df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", glmx.GlmxWarning)
        ref = call(glmx.glm, formula, df, **kw)
    if ref is not None and (not ref.converged or ref.warnings):
        ref = None  # separation, boundary: the estimates are not unique to 1e-8
    return df, formula, kw, ref


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(list(argv))
    return rc, out.getvalue(), err.getvalue()


@fuzz(50)
@given(case=clean_cases())
def test_in_memory_sources_saved_models_and_cli_agree(case: Case) -> None:
    df, formula, kw, ref = reference_fit(case)
    if ref is None:
        return
    for container in ("polars", "arrow", "dict"):
        data = to_container(df, container)
        if data is df:
            continue
        fit = call(glmx.glm, formula, data, **kw)
        assert fit is not None, f"{container} refused what pandas fitted"
        same_fit(fit, ref, container)
    cols = column_names(case.names)
    with tempfile.TemporaryDirectory() as tmp:
        model = str(Path(tmp) / "model.json")
        ref.save(model)
        loaded = glmx.load(model)
        assert rel(loaded.coef, ref.coef) < RTOL
        assert rel(loaded.predict(df), ref.predict(df)) < RTOL
        # the command line: fit a CSV, save, predict
        csv = str(Path(tmp) / "data.csv")
        # float32 as float64: CSV keeps float32's shortest digits, not its exact value, and
        # the CLI reads doubles (a float32 column's I(x**2) is computed in float32)
        df64 = df.astype({c: "float64" for c in df.columns if df[c].dtype == np.float32})
        df64.to_csv(csv, index=False)
        if df64.dtypes.to_dict() != df.dtypes.to_dict():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", glmx.GlmxWarning)
                ref = glmx.glm(formula, df64, **kw)
        args = ["fit", csv, formula, "--family", case.family, "--format", "json"]
        if case.weights == "column":
            args += ["--weights", cols["w"]]
        if case.offset == "column":
            args += ["--offset", cols["off"]]
        rc, out, err = cli(*args, "--save", str(Path(tmp) / "cli.json"))
        assert rc == 0, err
        doc = json.loads(out)
        est = [c["estimate"] for c in doc["coefficients"]]
        assert rel(est, ref.coef.to_numpy()) < RTOL
        pred_csv = str(Path(tmp) / "pred.csv")
        rc, _, err = cli("predict", str(Path(tmp) / "cli.json"), csv, "-o", pred_csv)
        assert rc == 0, err
        pred = pd.read_csv(pred_csv)["fit"].to_numpy()
        offset_given = case.offset == "column"  # not in the data the CLI predicts for
        if not offset_given:
            assert rel(pred, ref.predict(df64)) < RTOL


# ------------------------------------------------------------------ (d): streamed sources
def parts_of(df: pd.DataFrame, cuts: list[int], empties: list[int]) -> list[pd.DataFrame]:
    """The frame cut at the given row positions, with empty parts inserted."""
    edges = sorted({0, len(df), *(c % (len(df) + 1) for c in cuts)})
    parts = [df.iloc[a:b] for a, b in zip(edges[:-1], edges[1:]) if b > a]
    for pos in empties:
        parts.insert(pos % (len(parts) + 1), df.iloc[0:0])
    return parts


@fuzz(15)
# a factor column named `grp-1`: read as the expression grp - 1, refused as numeric
@example(case=Case(n=25, n_levels=2, names="odd", terms=("{g}",)), cuts=[], empties=[], drift=False)
@given(
    case=clean_cases(families=("gaussian", "poisson", "binomial", "gamma")),
    cuts=st.lists(st.integers(0, 60), max_size=3),
    empties=st.lists(st.integers(0, 5), max_size=2),
    drift=st.booleans(),
)
def test_parquet_and_dask_sources_agree(
    case: Case, cuts: list[int], empties: list[int], drift: bool
) -> None:
    df, formula, kw, ref = reference_fit(case)
    if ref is None or not all(isinstance(v, str | None) for v in kw.values()):
        return
    df = df.astype({c: "object" for c in df.columns if isinstance(df[c].dtype, pd.StringDtype)})
    parts = parts_of(df, cuts, empties)
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / "one.parquet"
        df.to_parquet(one, index=False)
        fit = call(glmx.glm, formula, str(one), **kw)
        assert fit is not None, "a Parquet file refused what pandas fitted"
        same_fit(fit, ref, "parquet file")
        ds = Path(tmp) / "ds"
        ds.mkdir()
        for k, part in enumerate(p for p in parts if len(p)):
            part.to_parquet(ds / f"part-{k:02d}.parquet", index=False)
        (ds / "_SUCCESS").write_text("")
        (ds / ".part-00.parquet.crc").write_bytes(b"\x00crc")
        fit = call(glmx.glm, formula, str(ds), **kw)
        assert fit is not None, "a Parquet directory refused what pandas fitted"
        same_fit(fit, ref, "parquet directory")
        (ds / "notes.txt").write_text("not parquet")
        with pytest.raises(DataError, match="notes.txt") as exc:
            glmx.glm(formula, str(ds), **kw)
        check_message(str(exc.value), "DataError")
    dd = pytest.importorskip("dask.dataframe")
    dask = pytest.importorskip("dask")
    k = column_names(case.names)["k"]
    if drift:  # integers in some partitions, floats in others
        parts = [p.astype({k: "float64"}) if i % 2 else p for i, p in enumerate(parts)]
    ddf = dd.from_delayed(
        [dask.delayed(p) for p in parts], meta=parts[0].iloc[0:0], verify_meta=False
    )
    with dask.config.set(scheduler="synchronous"):
        fit = call(glmx.glm, formula, ddf, **kw)
    assert fit is not None, "a Dask frame refused what pandas fitted"
    same_fit(fit, ref, "dask")


# ------------------------------------------------------------------ (a): the command line
@pytest.fixture(scope="module")
def cli_files() -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        df = build_frame(Case(n=30, family="poisson", seed=3))
        df["y"] = df["y"].round()
        df.to_csv(d / "data.csv", index=False)
        df.to_parquet(d / "data.parquet", index=False)
        df.head(0).to_csv(d / "empty.csv", index=False)
        df.assign(g=df["g"].where(df.index % 4 > 0, None)).to_csv(d / "holes.csv", index=False)
        (d / "junk.csv").write_bytes(b"\x00\x01,\xff\n\x02")
        (d / "junk.parquet").write_bytes(b"PAR1 not really")
        glmx.glm("y ~ x + g", df, family="poisson").save(str(d / "model.json"))
        (d / "bad.json").write_text('{"glmx": 1, "coef": [')
        yield d


CLI_FORMULAS = (
    "y ~ x + g",
    "y ~ x * g + offset(off)",
    "y ~ poly(z, 2) + C(g, contr.sum)",
    "y ~ x + (1 | g)",
    "y ~ nosuch",
    "y ~ __import__('os')",
    "y ~ (x + z)**40",
    "",
)


@fuzz(150)
@given(
    command=st.sampled_from(["fit", "glmm", "predict"]),
    data=st.sampled_from(
        ["data.csv", "data.parquet", "empty.csv", "holes.csv", "junk.csv", "junk.parquet"]
        + ["missing.csv", "data.xyz"]
    ),
    formula=st.sampled_from(CLI_FORMULAS),
    family=st.sampled_from(FAMILIES[:6] + FAMILY_ALIASES),
    extra=st.lists(
        st.sampled_from(
            [
                ["--link", "log"],
                ["--link", "sqrt"],
                ["--link", "nope"],
                ["--weights", "w"],
                ["--weights", "nope"],
                ["--offset", "off"],
                ["--format", "json"],
                ["--format", "markdown"],
                ["--theta", "2"],
                ["--power", "1.5"],
                ["--nagq", "5"],
                ["--nagq", "-1"],
                ["--se"],
                ["--type", "link"],
                ["--ml"],
            ]
        ),
        max_size=3,
    ),
    model=st.sampled_from(["model.json", "bad.json", "data.csv", "none.json"]),
)
@example(command="predict", data="holes.csv", formula="", family="", extra=[], model="model.json")
# a binomial response out of range: the row printed as np.int64(9) (families/base.py)
@example(
    command="fit", data="holes.csv", formula="y ~ x + g", family="binomial", extra=[],
    model="model.json",
)  # fmt: skip
def test_the_command_line_exits_0_or_2_with_one_line(
    cli_files: Path,
    command: str,
    data: str,
    formula: str,
    family: str,
    extra: list[list[str]],
    model: str,
) -> None:
    if command == "predict":
        argv = ["predict", str(cli_files / model), str(cli_files / data)]
    else:
        argv = [command, str(cli_files / data), formula, "--family", family]
    argv += [a for opt in extra for a in opt]
    try:
        rc, out, err = cli(*argv)
    except SystemExit as exc:  # argparse: usage errors exit 2
        assert exc.code == 2, exc
        return
    assert rc in (0, 2), f"exit {rc}: {err}"
    check_message(err or "-", "stderr")
    if rc == 2:
        lines = [ln for ln in err.splitlines() if ln.startswith("glmx: error:")]
        assert len(lines) == 1, err
    else:
        assert out.strip(), "exit 0 without output"


# ------------------------------------------------------------------ the helpers themselves
def test_the_helpers_catch_what_they_must() -> None:
    """honest() lets GlmxErrors through and fails on anything else; the Newton decrement
    of a fit stopped early is large; a frame of every kind is built."""
    with honest():
        raise DataError("refused")
    with pytest.raises(AssertionError, match="ANSI"):
        with honest():
            raise DataError("\x1b[31mred\x1b[0m")
    with pytest.raises(ZeroDivisionError):
        with honest():
            raise ZeroDivisionError
    with pytest.raises(AssertionError, match="RuntimeWarning"):
        with honest():
            warnings.warn("overflow", RuntimeWarning, stacklevel=1)
    df = build_frame(Case(n=40, family="poisson", seed=1))
    good = glmx.glm("y ~ x + g", df, family="poisson")
    assert good.converged and newton_decrement(good) < 1e-10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", glmx.GlmxWarning)
        early = glmx.glm("y ~ x + g", df, family="poisson", max_iter=1)
    assert not early.converged and newton_decrement(early) > 1e-6
    for name in ("plain", "odd", "keyword", "duplicate"):
        frame = build_frame(Case(n=5, names=name))
        assert len(frame) == 5
        assert all(quoted(c) in formula_for(Case(names=name)) or c not in "x" for c in frame)


def test_glmx_errors_are_the_only_refusals() -> None:
    """The class hierarchy invariant (a) relies on."""
    for cls in (glmx.DataError, glmx.FormulaError, glmx.FamilyError, glmx.ConvergenceError):
        assert issubclass(cls, GlmxError)


# ------------------------------------------------------------------ found by the deep profile
def test_glmm_cauchit_crossed_intercepts_fits_in_5_seconds() -> None:
    case = Case(n=37, family="binomial", link="cauchit")
    df = build_frame(case)
    start = time.perf_counter()
    fit = call(
        glmx.glmm,
        formula_for(case, ("(1 | {g})", "(1 | {h})")),
        df,
        family="binomial",
        link="cauchit",
    )
    assert fit is not None
    assert time.perf_counter() - start < 5.0


def test_glmm_cauchit_nested_and_slope_without_fixed_effects_fits_in_5_seconds() -> None:
    """A hang guard: BOBYQA without an analytic gradient, and a dense factor for a model
    this small (once minutes of finite-difference L-BFGS-B over sparse stages)."""
    case = Case(
        n=26, seed=1114, n_levels=5, family="binomial", link="cauchit", terms=(), intercept=False
    )
    df = build_frame(case)
    start = time.perf_counter()
    formula = formula_for(case, ("(1 | {g}/{h})", "({z} | {g})"))
    fit = call(glmx.glmm, formula, df, family="binomial", link="cauchit")
    assert fit is not None
    assert time.perf_counter() - start < 5.0


# found by the random probes (../shared/hooks/probe.py): negative binomial fits with a link
# whose likelihood is not concave took 12-28 s on 12-30 rows.  Every profile point of the
# theta search tries every start, and each start's last step was halved 60 times before
# IRLS accepted that no step lowers the deviance.  A hang guard over drawn cases of the
# class: near-collinear and wide-scaled covariates, sqrt and identity links.
# open: run with GLMX_FUZZ_OPEN=1 until fixed, then drop the gate
@pytest.mark.skipif(
    not os.environ.get("GLMX_FUZZ_OPEN"),
    reason="open: the two probe findings now fit in under 1 s, but drawn cases of the class "
    "still take 2-6 s (every start at every theta of the profile search)",
)
@pytest.mark.parametrize("link", ["sqrt", "identity"])
@pytest.mark.parametrize("seed", range(4))
def test_negative_binomial_nonconcave_links_on_small_data_fit_in_5_seconds(
    seed: int, link: str
) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.choice([12, 30]))
    df = pd.DataFrame(
        {
            "x1": 582.258 + 1e-4 * rng.standard_normal(n),
            "x2": 40.0 * rng.standard_normal(n),
            "x3": 60.0 * rng.standard_normal(n),
        }
    )
    mu = np.maximum(8.0 + 0.05 * df["x2"] - 0.03 * df["x3"], 0.5) ** (2 if link == "sqrt" else 1)
    df["y"] = rng.negative_binomial(2.0, 2.0 / (2.0 + mu)).astype(float)
    start = time.perf_counter()
    fit = call(glmx.glm, "y ~ x1 + x2 + x3", df, family="negative_binomial", link=link)
    assert time.perf_counter() - start < 5.0
    if fit is not None and fit.converged:
        certified(fit)
