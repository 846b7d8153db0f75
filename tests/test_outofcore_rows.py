"""Per-row outputs of out-of-core fits, computed on request by one more pass: fitted
values, the linear predictor, y, the weights and every residual type equal the in-memory
fit's (whose R agreement tests/test_r_reference.py checks) row for row, after na.omit,
for Parquet, list-of-frames, Dask DataFrame and dask-array sources; Dask outputs are lazy
dask arrays reading each partition once; what needs all rows at once stays refused."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import glmx
from glmx.errors import DataError, FamilyError
from glmx.outofcore import ChunkedGLM, glm_chunked
from glmx.outofcore.results import RowsNotKeptError
from outofcore_cases import make_data

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")

N = 12_000
SEED = 5  # of the quantile residuals
# the streamed coefficients differ from the in-memory ones in the last bits (sums in
# another order), so a value near 0 (eta, a residual) differs by ~1e-16 of the vector's
# scale: each value is compared to 1e-10 of itself, or 1e-12 of the largest value
RTOL, SCALE_TOL = 1e-10, 1e-12

CASES = [
    ("count ~ x + g + offset(log_exposure)", "poisson", {}),
    ("prop ~ x + g", "binomial", {"weights": "trials"}),
    ("cost ~ x + g", "gamma", {"link": "log"}),
]
IDS = ["poisson-offset", "binomial-trials", "gamma"]
OUTPUTS = ["fitted", "linear_predictor", "y", "prior_weights", "freq_weights"]
RESIDUALS = ["deviance", "pearson", "working", "response", "anscombe", "quantile"]


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    """12,000 rows of the shared out-of-core data, with missing values in used columns
    (rows 11, 300, 5,000, 7,777) and two binomial rows of zero trials (R: y set to 0)."""
    df = make_data().iloc[:N].reset_index(drop=True)
    df.loc[[5_000, 7_777], "cost"] = np.nan
    df.loc[300, "g"] = None
    df.loc[[20, 9_001], "trials"] = 0.0
    df.loc[[20, 9_001], "prop"] = 0.5
    return df


@pytest.fixture(scope="module")
def parquet(data: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rows")
    for k, start in enumerate(range(0, N, 5_000)):  # three files, the last shorter
        data.iloc[start : start + 5_000].to_parquet(folder / f"part{k}.parquet", index=False)
    return folder


def _outputs(fit: Any) -> dict[str, Any]:
    out = {name: getattr(fit, name) for name in OUTPUTS}
    for kind in RESIDUALS:
        out[f"residuals {kind}"] = fit.residuals(kind, seed=SEED)
    return out


def _assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    for name, expected in want.items():
        value = np.asarray(got[name])
        assert value.shape == expected.shape, name
        assert np.array_equal(np.isnan(value), np.isnan(expected)), name
        scale = np.nanmax(np.abs(expected))
        np.testing.assert_allclose(value, expected, rtol=RTOL, atol=SCALE_TOL * scale, err_msg=name)


@pytest.mark.parametrize(("formula", "family", "kw"), CASES, ids=IDS)
@pytest.mark.parametrize("source", ["parquet", "frames", "dask dataframe"])
def test_per_row_outputs_equal_the_in_memory_fit(
    data: pd.DataFrame, parquet: Path, source: str, formula: str, family: str, kw: dict[str, str]
) -> None:
    full = glmx.glm(formula, data, family=family, **kw)
    if source == "parquet":
        fit = glmx.glm(formula, parquet, family=family, **kw)
    elif source == "frames":
        pieces = [data.iloc[a : a + 2_500] for a in range(0, N, 2_500)]
        fit = glm_chunked(formula, pieces, family=family, **kw)
    else:
        fit = glmx.glm(formula, dd.from_pandas(data, npartitions=3), family=family, **kw)
    assert isinstance(fit, ChunkedGLM)
    assert fit.nobs == full.nobs and fit.n_dropped == full.n_dropped >= 2
    got = _outputs(fit)
    if source == "dask dataframe":
        assert all(isinstance(v, da.Array) for v in got.values())
        # one block per partition, its rows after na.omit (rows 11 and 300 in the first)
        (sizes,) = got["fitted"].chunks
        assert len(sizes) == 3 and sizes[0] == 3_998 and sum(sizes) == N - full.n_dropped
        got = dict(zip(got, dask.compute(*got.values())))
    else:
        assert all(type(v) is np.ndarray for v in got.values())
    _assert_same(got, _outputs(full))
    if family == "binomial":  # zero trials: y 0, quantile residual NaN, as in memory
        assert got["y"][19] == 0.0 and np.isnan(got["residuals quantile"][19])


@pytest.fixture(scope="module")
def arrays(data: pd.DataFrame) -> dict[str, np.ndarray]:
    """The complete rows as arrays: X has the intercept, x and the dummies of g."""
    df = data.dropna().reset_index(drop=True)
    g = df["g"].to_numpy()
    dummies = [(g == level).astype(float) for level in ("east", "north", "west")]
    X = np.column_stack([np.ones(len(df)), df["x"], *dummies])
    return {"X": X, **{c: df[c].to_numpy(dtype=float) for c in df.columns if c != "g"}}


ARRAY_CASES = [  # response, family, keywords (offset/weights columns), y in X's blocks
    ("count", "poisson", {"offset": "log_exposure"}, True),
    ("prop", "binomial", {"weights": "trials"}, True),
    ("cost", "gamma", {"link": "log"}, False),
]


@pytest.mark.parametrize(("y", "family", "kw", "aligned"), ARRAY_CASES, ids=IDS)
def test_dask_array_outputs_equal_the_in_memory_glm_fit(
    arrays: dict[str, np.ndarray], y: str, family: str, kw: dict[str, str], aligned: bool
) -> None:
    link = kw.get("link")
    vectors = {k: arrays[v] for k, v in kw.items() if k != "link"}
    full = glmx.glm_fit(arrays["X"], arrays[y], family=family, link=link, **vectors)
    X = da.from_array(arrays["X"], chunks=(3_000, 5))
    yd = da.from_array(arrays[y], chunks=3_000 if aligned else 2_000)  # rechunked to X's
    # the offset stays a numpy vector (cut into X's blocks), the weights a dask vector
    extra = {k: v if k == "offset" else da.from_array(v, chunks=3_000) for k, v in vectors.items()}
    fit = glmx.glm_fit(X, yd, family=family, link=link, **extra)
    got = _outputs(fit)
    assert all(isinstance(v, da.Array) for v in got.values())
    assert got["fitted"].chunks == X.chunks[:1]
    _assert_same(dict(zip(got, dask.compute(*got.values()))), _outputs(full))


class _CountingReader:
    """Partition k of a frame, recording each read."""

    def __init__(self, frame: pd.DataFrame, size: int) -> None:
        self.frame, self.size, self.lock = frame, size, threading.Lock()
        self.reads: list[int] = []

    def __call__(self, k: int) -> pd.DataFrame:
        with self.lock:
            self.reads.append(k)
        return self.frame.iloc[k * self.size : (k + 1) * self.size]

    def __dask_tokenize__(self) -> str:
        return f"counting-reader-{id(self)}"


def test_dask_outputs_are_lazy_and_read_each_partition_once(data: pd.DataFrame) -> None:
    reader = _CountingReader(data, 3_000)
    ddf = dd.from_map(reader, range(4), meta=data.iloc[:0])
    fit = glmx.glm("cost ~ x + g", ddf, family="gamma", link="log")
    assert len(reader.reads) == 4 * fit.n_passes  # the survey, IRLS and statistics
    reader.reads.clear()
    fitted, quantile = fit.fitted, fit.residuals("quantile", seed=SEED)
    assert isinstance(fitted, da.Array) and reader.reads == []  # nothing read yet
    assert fitted.npartitions == 4 and not np.isnan(fitted.shape[0])
    full = glmx.glm("cost ~ x + g", data, family="gamma", link="log")
    values = fitted.compute()
    assert sorted(reader.reads) == [0, 1, 2, 3]  # one read of each partition
    np.testing.assert_allclose(values, full.fitted, rtol=RTOL)
    reader.reads.clear()
    np.testing.assert_allclose(quantile.compute(), full.residuals("quantile", seed=SEED), rtol=1e-8)
    assert sorted(reader.reads) == [0, 1, 2, 3]


def test_dask_array_outputs_read_each_block_once(arrays: dict[str, np.ndarray]) -> None:
    reads: list[int] = []
    lock = threading.Lock()

    def counted(block: np.ndarray, block_info: Any = None) -> np.ndarray:
        with lock:
            reads.append(block_info[0]["chunk-location"][0])
        return block

    X = da.from_array(arrays["X"], chunks=(3_000, 5)).map_blocks(counted, dtype=float)
    fit = glmx.glm_fit(X, arrays["count"], family="poisson", offset=arrays["log_exposure"])
    reads.clear()
    residuals = fit.residuals("pearson")
    assert reads == []
    values = residuals.compute()
    assert sorted(reads) == [0, 1, 2, 3]
    full = glmx.glm_fit(arrays["X"], arrays["count"], family="poisson",
                        offset=arrays["log_exposure"])  # fmt: skip
    np.testing.assert_allclose(values, full.residuals("pearson"), rtol=1e-8)


def test_outputs_on_a_local_cluster(data: pd.DataFrame) -> None:
    distributed = pytest.importorskip("distributed")
    formula, family, kw = CASES[0]
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        fit = glmx.glm(formula, dd.from_pandas(data, npartitions=4), family=family, **kw)
        got = {"fitted": fit.fitted, "residuals quantile": fit.residuals("quantile", seed=SEED)}
        got = dict(zip(got, dask.compute(*got.values())))
    full = glmx.glm(formula, data, family=family, **kw)
    want = {"fitted": full.fitted, "residuals quantile": full.residuals("quantile", seed=SEED)}
    _assert_same(got, want)


def test_a_quantile_residual_is_the_same_draw_as_in_memory(data: pd.DataFrame) -> None:
    # poisson: discrete, so row i's residual uses the i-th uniform of default_rng(seed)
    pieces = [data.iloc[a : a + 1_000] for a in range(0, N, 1_000)]
    fit = glm_chunked("count ~ x + g + offset(log_exposure)", pieces, family="poisson")
    full = glmx.glm("count ~ x + g + offset(log_exposure)", data, family="poisson")
    for seed in (0, 123):
        np.testing.assert_allclose(
            fit.residuals("quantile", seed=seed), full.residuals("quantile", seed=seed),
            rtol=RTOL, atol=SCALE_TOL * 5,
        )  # fmt: skip
    other = fit.residuals("quantile", seed=1) - full.residuals("quantile", seed=2)
    assert np.abs(other).max() > 0.5  # another seed, other draws
    a, b = fit.residuals("quantile"), fit.residuals("quantile")  # seed None: fresh draws
    assert not np.array_equal(a, b)


def test_what_needs_all_rows_stays_refused(data: pd.DataFrame, tmp_path: Path) -> None:
    fit = glm_chunked("cost ~ x + g", data, family="gamma", link="log", chunk_rows=4_000)
    for name in ("hat", "influence", "cooks_distance", "rstandard", "anova", "vcov_robust"):
        with pytest.raises(RowsNotKeptError, match="out-of-core fit does not keep.*residuals"):
            getattr(fit, name)
        assert not hasattr(fit, name)
    with pytest.raises(DataError, match="saving a model file"):
        fit.save(tmp_path / "m.json")
    with pytest.raises(ValueError, match="unknown residual type 'partial'"):
        fit.residuals("partial")
    # a result built without its source refuses every per-row output
    bare = ChunkedGLM(fit._fit, fit.n_passes)
    for name in OUTPUTS:
        with pytest.raises(RowsNotKeptError, match="does not keep"):
            getattr(bare, name)
        assert not hasattr(bare, name)
    with pytest.raises(RowsNotKeptError, match="'residuals' needs the rows"):
        bare.residuals("deviance")


def test_quantile_residuals_of_a_quasi_family_are_refused_before_computing(
    data: pd.DataFrame,
) -> None:
    ddf = dd.from_pandas(data, npartitions=2)
    fit = glmx.glm("count ~ x + g", ddf, family="quasipoisson")
    with pytest.raises(FamilyError, match="quasi-likelihood"):
        fit.residuals("quantile")
    assert isinstance(fit.residuals("anscombe"), da.Array)


def test_a_source_that_changes_between_passes_is_named(data: pd.DataFrame) -> None:
    calls = [0]

    def frames() -> Iterator[pd.DataFrame]:
        calls[0] += 1
        shown = data if calls[0] < 20 else data.iloc[:6_000]
        return iter([shown.iloc[a : a + 3_000] for a in range(0, len(shown), 3_000)])

    fit = glm_chunked("cost ~ x + g", frames, family="gamma", link="log")
    calls[0] = 20  # the next pass yields half the rows
    with pytest.raises(DataError, match="other rows than when the model was fitted"):
        fit.fitted  # noqa: B018 - the property makes the pass
