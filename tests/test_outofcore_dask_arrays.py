"""glm_fit on dask arrays: the in-memory glm_fit numbers (which the R reference tests tie
to R's glm.fit) on a distributed.LocalCluster with two workers and on the threaded
scheduler; each pass reads every row block once; a bad block is named in a prompt
DataError; the LocalCluster example runs."""

from __future__ import annotations

import runpy
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import glmx
from glmx.errors import DataError, DataWarning
from glmx.outofcore import ChunkedGLM
from outofcore_cases import RTOL, make_data, rel

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

BLOCK = 12_500  # rows per block: 4 blocks
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "dask_localcluster.py"


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    """The shared out-of-core data without its rows with missing values, as arrays: X has
    a column of ones, x and the dummies of the four-level factor g."""
    df = make_data().dropna().reset_index(drop=True)
    g = df["g"].to_numpy()
    dummies = [(g == level).astype(float) for level in ("east", "north", "west")]
    X = np.column_stack([np.ones(len(df)), df["x"], *dummies])
    arrays = {c: df[c].to_numpy(dtype=float) for c in df.columns if c != "g"}
    return {"X": X, **arrays}


def _blocks(v: np.ndarray, rows: int = BLOCK) -> Any:
    return da.from_array(v, chunks=(rows,) + v.shape[1:])


# (response, family, keywords, how the dask arguments are cut)
CASES = [
    # poisson with an offset: X's columns in two blocks, the offset a numpy vector
    ("count", "poisson", {"offset": "log_exposure"}, "split columns, numpy offset"),
    # binomial 0/1: y in blocks other than X's (rechunked to them)
    ("event", "binomial", {}, "y in other blocks"),
    ("prop", "binomial", {"weights": "trials"}, "aligned"),
    ("cost", "gamma", {"link": "log"}, "aligned"),
]


def _dask_arguments(data: dict[str, np.ndarray], y: str, kw: dict[str, str], how: str) -> Any:
    X = da.from_array(data["X"], chunks=(BLOCK, 3) if how.startswith("split") else (BLOCK, 5))
    yd = _blocks(data[y], 10_000 if how == "y in other blocks" else BLOCK)
    extra: dict[str, Any] = {}
    for name in ("weights", "offset"):
        if name in kw:
            v = data[kw[name]]
            extra[name] = v if "numpy " + name in how else _blocks(v)
    return X, yd, extra


@pytest.mark.parametrize(("y", "family", "kw", "how"), CASES, ids=[c[0] for c in CASES])
def test_dask_array_fit_matches_in_memory_glm_fit(
    data: dict[str, np.ndarray], scheduler: str, y: str, family: str, kw: dict[str, str], how: str
) -> None:
    link = kw.get("link")
    vectors = {k: data[v] for k, v in kw.items() if k != "link"}
    full = glmx.glm_fit(data["X"], data[y], family=family, link=link, **vectors)
    X, yd, extra = _dask_arguments(data, y, kw, how)
    if scheduler == "distributed":
        with distributed.get_task_stream() as stream:
            fit = glmx.glm_fit(X, yd, family=family, link=link, **extra)
        # every pass ran one task per block, on both of the cluster's workers
        ran = [t for t in stream.data if "_block_value" in str(t["key"])]
        assert len({t["worker"] for t in ran}) == 2
        assert len(ran) == 4 * fit.n_passes
    else:
        fit = glmx.glm_fit(X, yd, family=family, link=link, **extra)
    assert isinstance(fit, ChunkedGLM)
    assert list(fit.coef.index) == list(full.coef.index) == ["x0", "x1", "x2", "x3", "x4"]
    for name in ("coef", "se"):
        assert rel(getattr(fit, name), getattr(full, name)) < RTOL, name
    for name in ("deviance", "null_deviance", "aic", "bic", "loglik", "dispersion"):
        assert rel(getattr(fit, name), getattr(full, name)) < RTOL, name
    assert rel(fit.vcov.to_numpy(), full.vcov.to_numpy()) < RTOL
    assert fit.nobs == full.nobs == 49_996 and fit.df_resid == full.df_resid
    assert fit.df_null == full.df_null and fit.n_iter == full.n_iter and fit.converged
    # no survey pass: the IRLS steps, the statistics, R's null refit with an offset
    null_passes = fit.n_passes - fit.n_iter - 2
    assert (null_passes > 0) == ("offset" in kw)


def test_no_column_of_ones_means_no_intercept(data: dict[str, np.ndarray]) -> None:
    X = data["X"][:, 1:]  # x and the dummies: the null model is mu = g^{-1}(0)
    names = ["x", "g_east", "g_north", "g_west"]
    full = glmx.glm_fit(X, data["cost"], family="gamma", link="log", column_names=names)
    fit = glmx.glm_fit(_blocks(X), _blocks(data["cost"]), family="gamma", link="log",
                       column_names=names)  # fmt: skip
    assert list(fit.coef.index) == names
    assert fit.df_null == full.df_null == 49_996
    for name in ("coef", "se", "null_deviance", "deviance", "aic"):
        assert rel(getattr(fit, name), getattr(full, name)) < RTOL, name


class _CountingReader:
    """Returns block k of a matrix and records each call (one per block read)."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix, self.lock = matrix, threading.Lock()
        self.reads: list[int] = []

    def __call__(self, k: int) -> np.ndarray:
        with self.lock:
            self.reads.append(k)
        return self.matrix[k * BLOCK : (k + 1) * BLOCK]


def test_each_pass_reads_every_block_once(data: dict[str, np.ndarray]) -> None:
    # X, y and the offset sliced from one array of blocks: a pass reads each block once
    matrix = np.column_stack([data["X"], data["count"], data["log_exposure"]])
    reader = _CountingReader(matrix)
    sizes = [len(matrix[a : a + BLOCK]) for a in range(0, len(matrix), BLOCK)]
    parts = [
        da.from_delayed(dask.delayed(reader)(k), shape=(rows, 7), dtype=float)
        for k, rows in enumerate(sizes)
    ]
    both = da.concatenate(parts)
    fit = glmx.glm_fit(both[:, :5], both[:, 5], family="poisson", offset=both[:, 6])
    assert len(reader.reads) == 4 * fit.n_passes
    assert sorted(set(reader.reads)) == [0, 1, 2, 3]
    full = glmx.glm_fit(data["X"], data["count"], family="poisson", offset=data["log_exposure"])
    assert rel(fit.coef, full.coef) < RTOL


@pytest.mark.parametrize(
    ("column", "row", "value", "message"),
    [
        ("count", 17, -1.0, r"poisson family needs .*response 'y' has invalid value\(s\): 1 "
                            r"in block 3, first at row 37517 of X \(row 17 of the block\): -1\.0"),
        ("x", 5, np.nan, r"column 'x1' of X has missing or non-finite value\(s\): 1 in block "
                         r"3, first at row 37505 of X \(row 5 of the block\): nan; glm_fit "
                         r"does not drop rows"),
        ("y", 9, np.inf, r"response 'y' has missing or non-finite value\(s\): 1 in block 3, "
                         r"first at row 37509 of X \(row 9 of the block\): inf"),
    ],
    ids=["negative count", "NaN in X", "inf in y"],
)  # fmt: skip
def test_bad_block_is_named_promptly(
    data: dict[str, np.ndarray], scheduler: str, column: str, row: int, value: float, message: str
) -> None:
    X, y = data["X"].copy(), data["count"].copy()
    if column == "x":
        X[3 * BLOCK + row, 1] = value
    else:
        y[3 * BLOCK + row] = value
    start = time.perf_counter()
    with pytest.raises(DataError, match=message):
        glmx.glm_fit(_blocks(X), _blocks(y), family="poisson")
    # the task's error comes back at once: no retries, no restarted workers
    assert time.perf_counter() - start < 10.0
    if scheduler == "distributed":
        assert len(distributed.default_client().scheduler_info()["workers"]) == 2
    with pytest.raises(DataError):  # the in-memory fit refuses the same value
        glmx.glm_fit(X, y, family="poisson")


def test_a_warning_raised_on_a_worker_reaches_the_client(
    data: dict[str, np.ndarray], scheduler: str
) -> None:
    y = data["count"].copy()
    y[2 * BLOCK + 3] = 2.5
    with pytest.warns(DataWarning, match="non-integer counts in poisson response 'y'"):
        fit = glmx.glm_fit(_blocks(data["X"]), _blocks(y), family="poisson")
    assert any("non-integer counts" in w for w in fit.warnings)


def test_what_cannot_be_streamed_is_refused(data: dict[str, np.ndarray]) -> None:
    X, y = _blocks(data["X"]), _blocks(data["count"])
    with pytest.raises(DataError, match="streamed from dask arrays does not take cov_type"):
        glmx.glm_fit(X, y, family="poisson", cov_type="HC0")
    with pytest.raises(DataError, match=r"does not take .*method='firth'"):
        glmx.glm_fit(X, _blocks(data["event"]), family="binomial", method="firth")
    with pytest.raises(DataError, match="X is a ndarray while y, weights or offset is a dask"):
        glmx.glm_fit(data["X"], y, family="poisson")
    with pytest.raises(DataError, match="response has length 49995 but X has 49996 rows"):
        glmx.glm_fit(X, y[:-1], family="poisson")
    with pytest.raises(DataError, match="weights has length 10 but there are 49996"):
        glmx.glm_fit(X, y, family="poisson", weights=np.ones(10))
    with pytest.raises(DataError, match="every observation has zero weight"):
        glmx.glm_fit(X, y, family="poisson", weights=da.zeros(len(data["count"]), chunks=BLOCK))
    frame = dd.from_pandas(pd.DataFrame(data["X"]), npartitions=2)
    with pytest.raises(DataError, match=r"not a dask array: fit a Dask DataFrame with glmx.glm"):
        glmx.glm_fit(frame, y, family="poisson")
    with pytest.raises(DataError, match="row blocks of unknown size"):
        glmx.glm_fit(frame.to_dask_array(), y, family="poisson")
    with pytest.raises(DataError, match="column_names has 2 names but X has 5 columns"):
        glmx.glm_fit(X, y, family="poisson", column_names=["a", "b"])


def test_the_localcluster_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    main = runpy.run_path(str(EXAMPLE))["main"]
    main(["--rows", "8000", "--partitions", "4", "--threads"])
    out = capsys.readouterr().out
    assert "cluster: 2 workers" in out
    assert out.count("Coefficients:") == 2 and "glmx.glm_fit(X, y)" in out
    gap = float(out.rsplit("coefficients: ", 1)[1].split()[0])
    assert gap < 1e-10  # the data frame and the array fits of the same rows agree
