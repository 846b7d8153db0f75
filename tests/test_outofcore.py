"""Out-of-core fits (glmx.outofcore.glm_chunked) give the in-memory glmx.glm numbers
(which the R reference tests tie to R's glm): a multi-file Parquet dataset and an
iterator of data frames, poisson with an offset, binomial 0/1 and proportions, Gamma
(log), a factor column, rows with missing values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import glmx
from glmx.errors import DataError
from glmx.outofcore import ChunkedGLM, glm_chunked
from outofcore_cases import CASES, RTOL, make_data, rel

pq = pytest.importorskip("pyarrow.parquet")
pa = pytest.importorskip("pyarrow")

N_FILES = 5
ROWS_PER_FILE = 10_000


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return make_data(N_FILES * ROWS_PER_FILE)


@pytest.fixture(scope="module")
def parquet_dir(data: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("dataset")
    for k in range(N_FILES):
        part = data.iloc[k * ROWS_PER_FILE : (k + 1) * ROWS_PER_FILE]
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), root / f"part-{k}.parquet")
    return str(root)


def _assert_same_fit(chunked: ChunkedGLM, full: glmx.GLMResults, rtol: float = RTOL) -> None:
    assert list(chunked.coef.index) == list(full.coef.index)
    for name in ("coef", "se"):
        assert rel(getattr(chunked, name), getattr(full, name)) < rtol, name
    for name in ("deviance", "null_deviance", "aic", "bic", "loglik", "dispersion"):
        assert rel(getattr(chunked, name), getattr(full, name)) < rtol, name
    assert rel(chunked.vcov.to_numpy(), full.vcov.to_numpy()) < rtol
    assert chunked.nobs == full.nobs
    assert chunked.df_resid == full.df_resid and chunked.df_null == full.df_null
    assert chunked.n_dropped == full.n_dropped == 4
    assert chunked.n_iter == full.n_iter
    assert chunked.converged


@pytest.mark.parametrize(("formula", "family", "kw"), CASES, ids=[c[1] for c in CASES])
def test_parquet_dataset_matches_in_memory_fit(
    data: pd.DataFrame, parquet_dir: str, formula: str, family: str, kw: dict[str, str]
) -> None:
    full = glmx.glm(formula, data, family=family, **kw)
    chunked = glm_chunked(formula, parquet_dir, family=family, chunk_rows=4_000, **kw)
    _assert_same_fit(chunked, full)
    # one pass to learn the model, one per IRLS step, one for the statistics, and the
    # null model's passes with an offset
    assert chunked.n_passes >= chunked.n_iter + 3


def test_iterator_of_frames_matches_in_memory_fit(data: pd.DataFrame) -> None:
    formula, kw = "cost ~ x + g", {"family": "gamma", "link": "log"}
    full = glmx.glm(formula, data, **kw)
    pieces = [data.iloc[a : a + 6_000] for a in range(0, len(data), 6_000)]
    chunked = glm_chunked(formula, lambda: iter(pieces), **kw)
    _assert_same_fit(chunked, full)
    np.testing.assert_allclose(chunked.confint(), full.confint(method="wald"), rtol=RTOL)


def test_row_order_and_chunk_size_do_not_change_the_fit(data: pd.DataFrame) -> None:
    formula = "count ~ x + g + offset(log_exposure)"
    a = glm_chunked(formula, data, family="poisson", chunk_rows=3_000)
    shuffled = data.sample(frac=1.0, random_state=3)
    b = glm_chunked(formula, shuffled, family="poisson", chunk_rows=17_000)
    for name in ("coef", "se"):
        assert rel(getattr(a, name), getattr(b, name)) < 1e-10
    for name in ("deviance", "null_deviance", "aic", "dispersion"):
        assert rel(getattr(a, name), getattr(b, name)) < 1e-10


def test_factor_levels_in_r_order_even_when_a_chunk_lacks_some(data: pd.DataFrame) -> None:
    # the first chunk holds only two of the four levels; the design still has all
    ordered = data.sort_values("g", kind="stable")
    chunked = glm_chunked("event ~ x + g", ordered, family="binomial", chunk_rows=5_000)
    full = glmx.glm("event ~ x + g", data, family="binomial")
    assert list(chunked.coef.index) == ["Intercept", "x", "g[T.east]", "g[T.north]", "g[T.west]"]
    _assert_same_fit(chunked, full)


def test_bad_value_in_third_file_names_column_and_file(data: pd.DataFrame, tmp_path) -> None:
    bad = data.copy()
    bad.loc[2 * ROWS_PER_FILE + 17, "count"] = -1.0
    for k in range(N_FILES):
        part = bad.iloc[k * ROWS_PER_FILE : (k + 1) * ROWS_PER_FILE]
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), tmp_path / f"p{k}.parquet")
    with pytest.raises(DataError, match=r"'count'.*file p2\.parquet, row 17: -1\.0"):
        glm_chunked("count ~ x + g", str(tmp_path), family="poisson", chunk_rows=4_000)


def test_bad_value_in_a_frame_chunk_names_the_chunk(data: pd.DataFrame) -> None:
    bad = data.copy()
    bad.loc[25_003, "cost"] = 0.0
    pieces = [bad.iloc[a : a + 10_000] for a in range(0, len(bad), 10_000)]
    with pytest.raises(DataError, match=r"positive.*'cost'.*chunk 2, row 5003: 0\.0"):
        glm_chunked("cost ~ x", lambda: iter(pieces), family="gamma", link="log")


def test_rows_with_missing_values_are_dropped_and_counted() -> None:
    df = make_data(N_FILES * ROWS_PER_FILE, seed=11).iloc[:3_000].copy()
    df.loc[[0, 5, 2_999], "cost"] = np.nan
    chunked = glm_chunked("cost ~ x + g", df, family="gamma", link="log", chunk_rows=1_000)
    full = glmx.glm("cost ~ x + g", df, family="gamma", link="log")
    assert chunked.n_dropped == full.n_dropped == 4  # row 11 (x) and three costs
    assert chunked.nobs == full.nobs == 2_996
    assert rel(chunked.coef, full.coef) < RTOL


def test_outputs_needing_all_rows_say_so(data: pd.DataFrame) -> None:
    chunked = glm_chunked("event ~ x", data, family="binomial", chunk_rows=25_000)
    for name in ("hat", "influence", "cooks_distance"):
        with pytest.raises(DataError, match="out-of-core fit does not keep"):
            getattr(chunked, name)
        assert not hasattr(chunked, name)
    text = str(chunked.summary())
    assert "glm_chunked(formula = event ~ x" in text
    assert "Number of Fisher Scoring iterations" in text
    # predictions on new data use the fit's design state
    full = glmx.glm("event ~ x", data, family="binomial")
    new = data.iloc[:50].dropna()
    assert rel(chunked.predict(new), full.predict(new)) < RTOL


def test_a_one_shot_iterator_is_refused(data: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="callable returning a fresh iterator"):
        glm_chunked("event ~ x", iter([data]), family="binomial")


def test_glm_on_a_parquet_path_streams_it(data: pd.DataFrame, parquet_dir: str) -> None:
    formula, family, kw = CASES[0]
    full = glmx.glm(formula, data, family=family, **kw)
    streamed = glmx.glm(formula, parquet_dir, family=family, **kw)
    assert isinstance(streamed, ChunkedGLM)
    _assert_same_fit(streamed, full)
    with pytest.raises(glmx.DataError, match="cov_type"):
        glmx.glm(formula, parquet_dir, family=family, cov_type="HC0", **kw)
    with pytest.raises(glmx.DataError, match="no Parquet file or directory"):
        glmx.glm(formula, parquet_dir + "-nosuch", family=family, **kw)


def test_progress_line_counts_passes(data: pd.DataFrame, monkeypatch) -> None:
    import io

    import glmx.progress

    out = io.StringIO()
    original = glmx.progress.Progress.__init__

    def immediate(self, label, delay=2.0, enabled=None, stream=None, unit="step"):
        original(self, label, delay=0.0, enabled=enabled, stream=out, unit=unit)

    monkeypatch.setattr(glmx.progress.Progress, "__init__", immediate)
    formula, family, kw = CASES[0]
    fit = glm_chunked(formula, data, family=family, chunk_rows=10_000, progress=True, **kw)
    text = out.getvalue()
    assert text.startswith("\rglmx.glm_chunked: pass 2, deviance ") and text.endswith("\n")
    assert f"pass {1 + fit.n_iter}, " in text  # the survey, then one pass per step
    out.truncate(0)
    glm_chunked(formula, data, family=family, chunk_rows=10_000, progress=False, **kw)
    assert out.getvalue() == ""


# --- the numpy route of a chunk's rows (glmx.outofcore.fastdesign) -------------------

FAST_CASES = [
    ("count ~ x + g + offset(log_exposure)", "poisson", {}),
    ("event ~ x * g", "binomial", {}),
    ("prop ~ x + g", "binomial", {"weights": "trials"}),
    ("count ~ 0 + C(g):x + trials", "poisson", {"offset": "log_exposure"}),
]


def _plan(formula: str, source: object, family: str, **kw: str):
    """The plan glm_chunked makes (its survey pass included)."""
    from glmx.families import get_family
    from glmx.outofcore.chunkdesign import model_columns, plan_model
    from glmx.outofcore.sources import as_source, survey

    src = as_source(source, 10_000)
    columns = model_columns(formula, kw.get("weights"), kw.get("offset"))
    fam = get_family(family, kw.get("link"))
    return plan_model(
        formula, fam, kw.get("weights"), kw.get("offset"), columns, survey(src, columns)
    )


def _assert_close_fit(a: ChunkedGLM, b: object, rtol: float) -> None:
    assert list(a.coef.index) == list(b.coef.index)
    for name in ("coef", "se", "deviance", "null_deviance", "aic", "dispersion"):
        assert rel(getattr(a, name), getattr(b, name)) < rtol, name
    assert a.nobs == b.nobs and a.n_iter == b.n_iter


@pytest.mark.parametrize(("formula", "family", "kw"), FAST_CASES, ids=[c[0] for c in FAST_CASES])
def test_numpy_route_and_formula_route_give_the_in_memory_fit(
    data: pd.DataFrame, parquet_dir: str, monkeypatch, formula: str, family: str, kw: dict
) -> None:
    import glmx.outofcore.chunkdesign as chunkdesign

    assert _plan(formula, parquet_dir, family, **kw).fast is not None
    full = glmx.glm(formula, data, family=family, **kw)
    fast_parquet = glm_chunked(formula, parquet_dir, family=family, chunk_rows=7_000, **kw)
    fast_frames = glm_chunked(formula, data, family=family, chunk_rows=7_000, **kw)
    monkeypatch.setattr(chunkdesign, "fast_design", lambda *a, **k: None)
    assert _plan(formula, parquet_dir, family, **kw).fast is None
    slow = glm_chunked(formula, parquet_dir, family=family, chunk_rows=7_000, **kw)
    for fit in (fast_parquet, fast_frames, slow):
        _assert_close_fit(fit, full, 1e-10)
    _assert_close_fit(fast_parquet, slow, 1e-12)


def test_formulas_beyond_the_numpy_route_take_the_formula_route(
    data: pd.DataFrame, parquet_dir: str
) -> None:
    # a transform, sum contrasts and a cbind() response: formulaic builds every chunk
    cases = [
        ("count ~ np.log(trials) + g", "poisson"),
        ("count ~ x + C(g, contr.sum)", "poisson"),
        ("cbind(event, 1 - event) ~ x + g", "binomial"),
    ]
    for formula, family in cases:
        assert _plan(formula, parquet_dir, family).fast is None, formula
        full = glmx.glm(formula, data, family=family)
        _assert_close_fit(glm_chunked(formula, parquet_dir, family=family), full, 1e-10)


def test_a_recipe_that_disagrees_with_formulaic_is_not_used(
    data: pd.DataFrame, monkeypatch
) -> None:
    import glmx.outofcore.chunkdesign as chunkdesign

    right = chunkdesign.fast_design

    def swapped(*args, **kwargs):  # two interaction columns in the wrong order
        recipe = right(*args, **kwargs)
        products = list(recipe.products)
        products[-1], products[-2] = products[-2], products[-1]
        return dataclasses.replace(recipe, products=tuple(products))

    monkeypatch.setattr(chunkdesign, "fast_design", swapped)
    assert _plan("event ~ x * g", data, "binomial").fast is None
    full = glmx.glm("event ~ x * g", data, family="binomial")
    _assert_close_fit(glm_chunked("event ~ x * g", data, family="binomial"), full, 1e-10)


@pytest.mark.parametrize("route", ["numpy", "formula"])
def test_a_level_new_in_a_later_pass_names_the_chunk_and_row(
    data: pd.DataFrame, monkeypatch, route: str
) -> None:
    import glmx.outofcore.chunkdesign as chunkdesign

    if route == "formula":
        monkeypatch.setattr(chunkdesign, "fast_design", lambda *a, **k: None)
    pieces = [data.iloc[a : a + 10_000].copy() for a in range(0, len(data), 10_000)]
    changed = [p.copy() for p in pieces]
    changed[1].loc[changed[1].index[3], "g"] = "nowhere"
    calls = []

    def chunks():  # the column names and the survey see the data without the new level
        calls.append(1)
        return iter(pieces if len(calls) <= 2 else changed)

    with pytest.raises(DataError, match=r"column 'g' has a level not seen .* chunk 1, row 3"):
        glm_chunked("count ~ x + g", chunks, family="poisson")


def test_parquet_types_the_numpy_route_reads(tmp_path, data: pd.DataFrame) -> None:
    # integer covariates, a dictionary-encoded (categorical) factor with nulls, a float
    # response with nulls: the same rows as pandas' conversion
    df = data.iloc[:20_000].copy()
    df["k"] = np.arange(len(df)) % 7
    df.loc[5, "count"] = np.nan  # with x missing in rows 11 and 12,345
    df["g"] = df["g"].astype("category")
    table = pa.Table.from_pandas(df, preserve_index=False)
    assert pa.types.is_dictionary(table.schema.field("g").type)
    pq.write_table(table, tmp_path / "one.parquet", row_group_size=3_000)
    formula = "count ~ x + k + g + offset(log_exposure)"
    assert _plan(formula, str(tmp_path), "poisson").fast is not None
    chunked = glm_chunked(formula, str(tmp_path), family="poisson", chunk_rows=2_500)
    plain = df.assign(g=df["g"].astype(object))  # glmx reads Arrow dictionaries as strings
    full = glmx.glm(formula, plain, family="poisson")
    _assert_close_fit(chunked, full, 1e-10)
    assert chunked.n_dropped == full.n_dropped == 3


def test_the_parquet_example_runs(tmp_path) -> None:
    import re
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "outofcore_parquet.py"
    cmd = [sys.executable, str(example), "--rows", "40000", "--dir", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    assert "glm_chunked(formula = claims ~ x1 + x2" in out
    # the data's coefficient of x1 is 0.3 (standard error about 0.004 at 40,000 rows)
    x1 = float(re.search(r"^x1\s+(\S+)", out, re.MULTILINE).group(1))
    assert abs(x1 - 0.3) < 0.03
    assert re.search(r"peak resident memory of the fit: \d\.\d\d GB \(within the budget\)", out)
    assert list(tmp_path.iterdir()) == []  # the dataset is removed
