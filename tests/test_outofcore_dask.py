"""The Dask backend of out-of-core fits: glm_chunked on a dask DataFrame gives the
in-memory glmx.glm numbers (which the R reference tests tie to R's glm) on a
distributed.LocalCluster with two workers and on the default threaded scheduler; each
pass reads every partition once; a bad partition is named in a prompt DataError."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

import glmx
from glmx.errors import DataError
from glmx.outofcore import ChunkedGLM, glm_chunked
from glmx.outofcore.daskbackend import is_dask_dataframe
from outofcore_cases import CASES, RTOL, make_data, rel

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

N_PARTITIONS = 5
ROWS = 50_000


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return make_data(ROWS)


@pytest.mark.parametrize(("formula", "family", "kw"), CASES, ids=[c[1] for c in CASES])
def test_dask_dataframe_fit_matches_in_memory_fit(
    data: pd.DataFrame, scheduler: str, formula: str, family: str, kw: dict[str, str]
) -> None:
    full = glmx.glm(formula, data, family=family, **kw)
    ddf = dd.from_pandas(data, npartitions=N_PARTITIONS)
    if scheduler == "distributed":
        with distributed.get_task_stream() as stream:
            fit = glm_chunked(formula, ddf, family=family, **kw)
        # the partitions' tasks ran on the cluster's workers
        ran = [t for t in stream.data if "_partition_value" in str(t["key"])]
        assert len({t["worker"] for t in ran}) == 2
        assert len(ran) == N_PARTITIONS * (fit.n_passes - 1)  # the survey has its own
    else:
        fit = glm_chunked(formula, ddf, family=family, **kw)
    assert isinstance(fit, ChunkedGLM)
    assert list(fit.coef.index) == list(full.coef.index)
    assert "g[T.east]" in fit.coef.index
    for name in ("coef", "se"):
        assert rel(getattr(fit, name), getattr(full, name)) < RTOL, name
    for name in ("deviance", "null_deviance", "aic", "bic", "loglik", "dispersion"):
        assert rel(getattr(fit, name), getattr(full, name)) < RTOL, name
    assert rel(fit.vcov.to_numpy(), full.vcov.to_numpy()) < RTOL
    assert fit.nobs == full.nobs and fit.df_resid == full.df_resid
    assert fit.n_dropped == full.n_dropped == 4
    assert fit.n_iter == full.n_iter and fit.converged


class _CountingReader:
    """Returns rows [a, b) of the data and records each call (one per partition read)."""

    def __init__(self, data: pd.DataFrame) -> None:
        self.data, self.lock = data, threading.Lock()
        self.reads: list[int] = []

    def __call__(self, bound: tuple[int, int]) -> pd.DataFrame:
        with self.lock:
            self.reads.append(bound[0])
        return self.data.iloc[bound[0] : bound[1]]

    def __dask_tokenize__(self) -> str:
        return f"counting-reader-{id(self)}"


def test_each_pass_reads_every_partition_once(data: pd.DataFrame) -> None:
    step = ROWS // N_PARTITIONS
    bounds = [(a, a + step) for a in range(0, ROWS, step)]
    reader = _CountingReader(data)
    ddf = dd.from_map(reader, bounds, meta=data.iloc[:0])
    fit = glm_chunked("cost ~ x + g", ddf, family="gamma", link="log")
    # a pass is one read of each partition: the survey, the IRLS steps, the statistics
    assert len(reader.reads) == N_PARTITIONS * fit.n_passes
    assert sorted(set(reader.reads)) == [a for a, _ in bounds]
    assert fit.n_passes == fit.n_iter + 3


def test_bad_partition_is_named_promptly(data: pd.DataFrame, scheduler: str) -> None:
    bad = data.copy()
    bad.loc[3 * (ROWS // N_PARTITIONS) + 17, "count"] = -1.0
    ddf = dd.from_pandas(bad, npartitions=N_PARTITIONS)
    assert ddf.divisions[3] == 3 * (ROWS // N_PARTITIONS)
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"'count'.*partition 3, row 17: -1\.0"):
        glm_chunked("count ~ x + g", ddf, family="poisson")
    # the task's error comes back at once: no retries, no restarted workers
    assert time.perf_counter() - start < 10.0
    if scheduler == "distributed":
        client = distributed.default_client()
        assert len(client.scheduler_info()["workers"]) == 2


def test_glmx_does_not_import_dask_until_given_a_dask_dataframe() -> None:
    code = (
        "import sys, pandas as pd, glmx\n"
        "df = pd.DataFrame({'y': [1.0, 0.0, 2.0, 3.0], 'x': [0.1, 0.4, 0.2, 0.9]})\n"
        "glmx.glm_chunked('y ~ x', df, family='poisson', chunk_rows=2)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert is_dask_dataframe(dd.from_pandas(pd.DataFrame({"x": [1.0]}), npartitions=1))
    assert not is_dask_dataframe(pd.DataFrame({"x": [1.0]}))


def test_glm_on_a_dask_dataframe_streams_it(data: pd.DataFrame, scheduler: str) -> None:
    formula, family, kw = CASES[0]
    full = glmx.glm(formula, data, family=family, **kw)
    fit = glmx.glm(formula, dd.from_pandas(data, npartitions=N_PARTITIONS), family=family, **kw)
    assert isinstance(fit, ChunkedGLM)
    for name in ("coef", "se", "deviance", "aic"):
        assert rel(getattr(fit, name), getattr(full, name)) < RTOL, name
    with pytest.raises(DataError, match="a Dask DataFrame does not take cov_type"):
        glmx.glm(formula, dd.from_pandas(data, npartitions=2), family=family, cov_type="HC0")
