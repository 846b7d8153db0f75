"""Streamed sources at their edges: Dask frames with empty, one-row or all-missing
partitions, columns whose type drifts between files or partitions, damaged and stray
files in a Parquet dataset, a file or partition lacking a column, and data-file paths
given to ``glmx.glm``.  Each either gives the in-memory fit's numbers (1e-8) or raises a
one-line DataError naming the file, partition or column."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import glmx
from glmx.errors import DataError

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")

RTOL = 1e-8
FORMULA = "y ~ x + g + offset(log_t)"
STATS = ("deviance", "null_deviance", "aic", "loglik", "dispersion")


def make_frame(n: int, seed: int) -> pd.DataFrame:
    """A poisson response, a covariate with a few missing values, a three-level factor."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    g = rng.choice(["a", "b", "c"], size=n)
    log_t = np.log(rng.uniform(0.5, 2.0, size=n))
    y = rng.poisson(np.exp(0.3 + 0.4 * x + (g == "b") * 0.5 + log_t)).astype(float)
    df = pd.DataFrame({"x": x, "g": g, "log_t": log_t, "y": y})
    df.loc[rng.choice(n, size=3, replace=False), "x"] = np.nan
    return df


def rel(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0)))


def assert_same_fit(fit: Any, ref: Any) -> None:
    assert list(fit.coef.index) == list(ref.coef.index)
    assert rel(fit.coef, ref.coef) < RTOL
    assert rel(fit.se, ref.se) < RTOL
    for name in STATS:
        assert rel(getattr(fit, name), getattr(ref, name)) < RTOL, name
    assert fit.nobs == ref.nobs and fit.n_dropped == ref.n_dropped


def assert_glmx_message(exc: BaseException, *phrases: str) -> None:
    """One line in glmx's words, naming what is at fault."""
    text = str(exc)
    assert isinstance(exc, DataError)
    assert "\n" not in text and "\x1b" not in text and "np.float64" not in text
    assert "Traceback" not in text and "pyarrow" not in text and "magic bytes" not in text
    for phrase in phrases:
        assert phrase in text, (phrase, text)


def cut(df: pd.DataFrame, sizes: list[int]) -> list[pd.DataFrame]:
    """The frame cut into consecutive parts of the given sizes (zeros: empty parts)."""
    edges = np.cumsum([0, *sizes])
    assert edges[-1] == len(df)
    return [df.iloc[a:b] for a, b in zip(edges[:-1], edges[1:])]


def dask_frame(parts: list[pd.DataFrame], verify_meta: bool = True) -> Any:
    meta = parts[0].iloc[0:0] if verify_meta else parts[-1].iloc[0:0]
    return dd.from_delayed([dask.delayed(p) for p in parts], meta=meta, verify_meta=verify_meta)


def parquet_dir(tmp_path: Path, parts: list[pd.DataFrame], name: str = "data") -> Path:
    d = tmp_path / name
    d.mkdir()
    for k, part in enumerate(parts):
        part.to_parquet(d / f"part-{k:02d}.parquet", index=False)
    return d


# --- empty partitions and the same numbers through every source --------------------------


@pytest.mark.parametrize(
    ("sizes", "seed"),
    [([0, 60, 60, 60], 1), ([60, 0, 0, 120], 2), ([120, 60, 0], 3), ([1, 0, 179, 0], 4)],
    ids=["first", "middle", "last", "one-row"],
)
def test_dask_empty_partitions_are_skipped(sizes: list[int], seed: int) -> None:
    df = make_frame(180, seed)
    ref = glmx.glm(FORMULA, df, family="poisson")
    fit = glmx.glm(FORMULA, dask_frame(cut(df, sizes)), family="poisson")
    assert_same_fit(fit, ref)


@pytest.mark.parametrize("seed", [3, 4])
def test_dask_frame_filtered_to_empty_partitions_fits_and_gives_rows(seed: int) -> None:
    df = make_frame(240, seed).sort_values("log_t", ignore_index=True)
    ddf = dd.from_pandas(df, npartitions=6)
    kept = ddf[ddf.log_t > 0.3]  # the first partitions are left empty
    assert 0 in kept.map_partitions(len).compute().tolist()
    ref = glmx.glm(FORMULA, df[df.log_t > 0.3], family="poisson")
    fit = glmx.glm(FORMULA, kept, family="poisson")
    assert_same_fit(fit, ref)
    assert np.allclose(np.asarray(fit.fitted), ref.fitted, rtol=1e-8)
    assert np.allclose(np.asarray(fit.residuals()), ref.residuals(), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_same_model_through_every_source_gives_the_same_numbers(tmp_path: Path, seed: int) -> None:
    df = make_frame(200, seed)
    rng = np.random.default_rng(seed)
    sizes = list(rng.multinomial(200, [0.3, 0.0, 0.5, 0.2]))  # one empty part
    file = tmp_path / "all.parquet"
    df.to_parquet(file, index=False)
    fits = {
        "pandas": glmx.glm(FORMULA, df, family="poisson"),
        "parquet file": glmx.glm(FORMULA, file, family="poisson"),
        "parquet dir": glmx.glm(FORMULA, parquet_dir(tmp_path, cut(df, sizes)), family="poisson"),
        "dask": glmx.glm(FORMULA, dask_frame(cut(df, sizes)), family="poisson"),
    }
    for fit in fits.values():
        assert_same_fit(fit, fits["pandas"])


# --- columns whose type drifts ------------------------------------------------------------


def drifted(df: pd.DataFrame, column: str, how: str) -> list[pd.DataFrame]:
    """Two parts of the frame, the column of the second made integers, or strings."""
    first, second = df.iloc[:100].copy(), df.iloc[100:].copy()
    if how == "int":
        first[column] = first[column].round().astype("int64")
        second[column] = second[column].round().astype("float64")
    else:
        second[column] = second[column].astype(str)
    return [first, second]


@pytest.mark.parametrize("source", ["parquet", "dask"])
def test_integer_and_float_parts_of_a_column_are_read_as_floats(
    tmp_path: Path, source: str
) -> None:
    df = make_frame(200, 8)
    parts = drifted(df, "y", "int")
    ref = glmx.glm(FORMULA, pd.concat(parts), family="poisson")
    data = parquet_dir(tmp_path, parts) if source == "parquet" else dask_frame(parts, False)
    assert_same_fit(glmx.glm(FORMULA, data, family="poisson"), ref)


@pytest.mark.parametrize("column", ["x", "y"])
@pytest.mark.parametrize("source", ["parquet", "dask"])
def test_number_and_string_parts_of_a_column_are_refused_naming_it(
    tmp_path: Path, source: str, column: str
) -> None:
    parts = drifted(make_frame(200, 9).dropna(), column, "str")
    if source == "parquet":
        data: Any = parquet_dir(tmp_path, parts)
        where = ("file part-00.parquet", "file part-01.parquet")
    else:
        data, where = dask_frame(parts, False), ("partition 0", "partition 1")
    with pytest.raises(DataError) as info:
        glmx.glm(FORMULA, data, family="poisson")
    assert_glmx_message(info.value, f"column {column!r}", "numbers", "strings", *where)


def test_a_factor_coded_as_numbers_in_one_file_is_refused_naming_it(tmp_path: Path) -> None:
    df = make_frame(200, 10)
    first = df.iloc[:100].copy()
    first["g"] = first["g"].map({"a": 1, "b": 2, "c": 3})
    with pytest.raises(DataError) as info:
        glmx.glm(FORMULA, parquet_dir(tmp_path, [first, df.iloc[100:]]), family="poisson")
    assert_glmx_message(info.value, "column 'g'", "file part-00.parquet", "part-01.parquet")


# --- damaged, stray and incomplete files --------------------------------------------------


def test_stray_file_in_a_parquet_directory_is_named(tmp_path: Path) -> None:
    d = parquet_dir(tmp_path, cut(make_frame(100, 11), [50, 50]))
    (d / "notes.txt").write_text("not data\n")
    with pytest.raises(DataError) as info:
        glmx.glm(FORMULA, d, family="poisson")
    assert_glmx_message(info.value, "'notes.txt'", str(d))


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.999])
@pytest.mark.parametrize("layout", ["file", "first of dir", "last of dir"])
def test_truncated_parquet_file_is_named(tmp_path: Path, keep: float, layout: str) -> None:
    parts = cut(make_frame(120, 12), [40, 40, 40])
    d = parquet_dir(tmp_path, parts)
    victim = d / ("part-00.parquet" if layout == "first of dir" else "part-02.parquet")
    raw = victim.read_bytes()
    victim.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(DataError) as info:
        glmx.glm(FORMULA, victim if layout == "file" else d, family="poisson")
    assert_glmx_message(info.value, victim.name if layout != "file" else str(victim))


def test_damaged_parquet_data_pages_are_named(tmp_path: Path) -> None:
    d = parquet_dir(tmp_path, cut(make_frame(400, 13), [200, 200]))
    victim = d / "part-01.parquet"
    raw = bytearray(victim.read_bytes())
    raw[8:1500] = b"\xff" * (1500 - 8)  # data pages, the footer intact
    victim.write_bytes(bytes(raw))
    try:
        fit = glmx.glm(FORMULA, d, family="poisson")
    except DataError as exc:
        assert_glmx_message(exc, "'part-01.parquet'")
    else:  # pages pyarrow could decode: then finite numbers, or a glmx error above
        assert np.all(np.isfinite(fit.coef))


@pytest.mark.parametrize("lacking", [0, 1, 2])
def test_parquet_file_lacking_a_column_is_named(tmp_path: Path, lacking: int) -> None:
    parts = cut(make_frame(120, 14), [40, 40, 40])
    parts[lacking] = parts[lacking].drop(columns="g")
    with pytest.raises(DataError) as info:
        glmx.glm(FORMULA, parquet_dir(tmp_path, parts), family="poisson")
    assert_glmx_message(info.value, f"'part-{lacking:02d}.parquet'", "'g'")


def test_dask_partition_lacking_a_column_is_named(tmp_path: Path) -> None:
    df = make_frame(120, 15)
    parts = [df.iloc[:60], df.iloc[60:90].drop(columns="g"), df.iloc[90:]]
    with pytest.raises(DataError) as info:
        glmx.glm(FORMULA, dask_frame(parts, False), family="poisson")
    assert_glmx_message(info.value, "partition 1", "'g'")
    # Dask's own Parquet reader cannot read the file lacking it: the partition is named
    ddf = dd.read_parquet(parquet_dir(tmp_path, [parts[0], parts[1]]))
    with pytest.raises(DataError) as info:
        glmx.glm(FORMULA, ddf, family="poisson")
    assert_glmx_message(info.value, "partition 1")


def test_zero_row_sources_say_so(tmp_path: Path) -> None:
    empty = make_frame(10, 16).iloc[0:0]
    for data in (parquet_dir(tmp_path, [empty, empty]), dask_frame([empty, empty])):
        with pytest.raises(DataError) as info:
            glmx.glm(FORMULA, data, family="poisson")
        assert_glmx_message(info.value, "no rows")


# --- odd partitions that still have an answer ---------------------------------------------


def odd_parts(df: pd.DataFrame, kind: str) -> list[pd.DataFrame]:
    """Parts of the frame with one odd part: every x missing, a factor level only it has,
    or a single row."""
    first, rest = df.iloc[:40].copy(), df.iloc[40:]
    if kind == "all-missing":
        first["x"] = np.nan
    elif kind == "own level":
        first.loc[first.index[:5], "g"] = "z"
    else:
        return [df.iloc[:1], df.iloc[1:2], df.iloc[2:]]
    return [rest.iloc[:70], first, rest.iloc[70:]]


@pytest.mark.parametrize("kind", ["all-missing", "own level", "one row"])
@pytest.mark.parametrize("source", ["parquet", "dask"])
def test_odd_parts_give_the_in_memory_numbers(tmp_path: Path, source: str, kind: str) -> None:
    parts = odd_parts(make_frame(160, 17), kind)
    ref = glmx.glm(FORMULA, pd.concat(parts, ignore_index=True), family="poisson")
    data = parquet_dir(tmp_path, parts) if source == "parquet" else dask_frame(parts)
    assert_same_fit(glmx.glm(FORMULA, data, family="poisson"), ref)


# --- data-file paths ----------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".feather", ".csv.gz"])
def test_data_file_path_is_read_as_the_command_line_reads_it(tmp_path: Path, suffix: str) -> None:
    df = make_frame(90, 18)
    path = tmp_path / f"data{suffix}"
    if suffix == ".feather":
        df.to_feather(path)
    else:
        df.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    ref = glmx.glm(FORMULA, df, family="poisson")
    for data in (path, str(path)):
        assert_same_fit(glmx.glm(FORMULA, data, family="poisson"), ref)


def test_unreadable_csv_path_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        glmx.glm(FORMULA, tmp_path / "absent.csv", family="poisson")
    assert_glmx_message(info.value, "absent.csv")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b'x,y\n1,2\n3,"4\n')  # an unclosed quote
    with pytest.raises(DataError) as info:
        glmx.glm(FORMULA, bad, family="poisson")
    assert_glmx_message(info.value, "bad.csv")
    assert re.search(r"cannot read", str(info.value))


def test_a_part_with_every_value_missing_says_nothing_of_the_column_type(
    tmp_path: Path,
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = make_frame(150, 19)
    first, rest = df.iloc[:50].copy(), df.iloc[50:]
    ref = glmx.glm(FORMULA, rest, family="poisson")
    ref_rows = ref.nobs
    # a Parquet file whose x is of Arrow's null type, or strings that are all null
    for column in (pa.nulls(50), pa.nulls(50, pa.string())):
        d = tmp_path / f"nulls-{column.type}"
        d.mkdir()
        table = pa.Table.from_pandas(first, preserve_index=False)
        pq.write_table(table.set_column(0, "x", column), d / "a.parquet")
        rest.to_parquet(d / "b.parquet", index=False)
        fit = glmx.glm(FORMULA, d, family="poisson")
        assert_same_fit_rows(fit, ref, ref_rows, 50)
    # a Dask partition whose x is an object column of None
    first["x"] = pd.Series([None] * 50, index=first.index, dtype=object)
    fit = glmx.glm(FORMULA, dask_frame([first, rest], False), family="poisson")
    assert_same_fit_rows(fit, ref, ref_rows, 50)


def assert_same_fit_rows(fit: Any, ref: Any, nobs: int, extra_dropped: int) -> None:
    assert list(fit.coef.index) == list(ref.coef.index)
    assert rel(fit.coef, ref.coef) < RTOL and rel(fit.deviance, ref.deviance) < RTOL
    assert fit.nobs == nobs and fit.n_dropped == ref.n_dropped + extra_dropped


def test_factor_levels_sort_when_parts_mix_categorical_and_strings() -> None:
    df = make_frame(150, 20)
    first = df.iloc[:75].copy()
    first["g"] = pd.Categorical(first["g"], categories=["c", "a", "b"])
    ref = glmx.glm(FORMULA, df, family="poisson")  # plain strings: sorted levels
    fit = glmx.glm(FORMULA, dask_frame([first, df.iloc[75:]], False), family="poisson")
    assert_same_fit(fit, ref)
    assert "g[T.b]" in fit.coef.index and "g[T.c]" in fit.coef.index


@pytest.mark.parametrize("source", ["parquet", "dask"])
def test_bad_values_in_streamed_errors_print_as_plain_numbers(tmp_path: Path, source: str) -> None:
    df = make_frame(100, 21)
    df.loc[7, "x"] = np.inf
    df.loc[7, "log_t"] = 0.0
    parts = cut(df, [50, 50])
    data = parquet_dir(tmp_path, parts) if source == "parquet" else dask_frame(parts)
    with pytest.raises(DataError) as info:
        glmx.glm(FORMULA, data, family="poisson")
    assert_glmx_message(info.value, "'x'", "row 7", ": inf")
