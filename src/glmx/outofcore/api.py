"""``glm_chunked``: a GLM fitted out of core, with R's numbers.

Passes over the data: one to learn the model (levels, rows, missing values), one per
IRLS step (plus one per step-halving), one for the fit statistics, and for a model with
an offset and an intercept the passes of the intercept-only fit behind the null
deviance (R refits it).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from glmx.design.formula import _spec_variables
from glmx.errors import DataError, FormulaError
from glmx.families import Family, get_family
from glmx.families.links import Link
from glmx.fitting import _call_text
from glmx.outofcore.chunkdesign import ChunkData, ModelPlan, chunk_data, model_columns, plan_model
from glmx.outofcore.daskbackend import DaskPasses, DaskSource, is_dask_dataframe
from glmx.outofcore.finish import check_options, finish, full_design, r_mustart, reissue, saved_fit
from glmx.outofcore.results import ChunkedGLM, RowValues
from glmx.outofcore.sources import ChunkSource, ParquetSource, as_source, survey
from glmx.outofcore.streaming import S, streaming_irls
from glmx.progress import Progress
from glmx.solvers.state import Array


def glm_chunked(
    formula: str,
    source: Any,
    family: str | Family = "gaussian",
    link: str | Link | None = None,
    weights: str | None = None,
    offset: str | None = None,
    chunk_rows: int = 250_000,
    tol: float = 1e-10,
    max_iter: int = 100,
    progress: bool | None = None,
) -> ChunkedGLM:
    """Fit a GLM to data read in chunks: the estimates, covariance and fit statistics of
    ``glmx.glm`` (R's ``glm``), with memory bounded by one chunk.

    ``source`` is a Parquet file or directory (read in record batches of ``chunk_rows``
    rows, only the needed columns), a callable returning a fresh iterator of pandas
    DataFrames (called once per pass), a list of DataFrames, or one DataFrame (cut into
    ``chunk_rows``-row chunks), or a ``dask.dataframe.DataFrame``, whose partitions are
    the chunks: each pass is one task per partition on the active Dask scheduler, and only
    the p x p sums come back (``chunk_rows`` is not used).  ``weights`` and ``offset`` name
    columns.  Rows with a
    missing value in a used column are dropped and counted (``n_dropped``).  The result
    keeps no rows: its per-row values (fitted values, residuals) are computed when asked,
    by a pass over the source (a lazy dask array for a Dask DataFrame): see
    :class:`ChunkedGLM`.
    ``progress`` shows a line with the passes and the deviance once the fit has run two
    seconds (default: in a terminal or notebook only).
    """
    fam = get_family(family, link)
    check_options(fam, tol, max_iter)
    src = DaskSource(source) if is_dask_dataframe(source) else as_source(source, chunk_rows)
    columns = model_columns(formula, weights, offset)
    absent = sorted(set(columns) - set(src.column_names()))
    if absent and isinstance(src, ParquetSource):
        src.check_absent(absent)
    if absent:
        raise FormulaError(
            f"formula {formula!r} (or weights/offset) names column(s) "
            f"{', '.join(map(repr, absent))} not in the data"
        )
    found = src.survey(columns) if isinstance(src, DaskSource) else survey(src, columns)
    plan = plan_model(formula, fam, weights, offset, columns, found)
    rows: DaskPasses | _ChunkStream = (
        src.passes(plan) if isinstance(src, DaskSource) else _ChunkStream(src, plan)
    )

    with (
        warnings.catch_warnings(record=True) as caught,
        Progress("glmx.glm_chunked", enabled=progress, unit="pass") as bar,
    ):
        warnings.simplefilter("always")
        res = streaming_irls(rows, full_design, fam, r_mustart, tol, max_iter, bar)
        has_offset = bool(plan.terms.offset_terms) or plan.offset is not None
        done = finish(rows, fam, res, plan.has_intercept, has_offset, tol, max_iter)
    call = _call_text(formula, family, fam, weights, None, offset)
    variables = _spec_variables(plan.terms) | ({plan.offset} if plan.offset else set())
    fit = saved_fit(
        fam, plan.column_names, res, done, plan.has_intercept, tol, max_iter,
        terms=plan.terms, variables=variables, formula=plan.formula,
        call=call.replace("glm(", "glm_chunked(", 1), n_dropped=found.n_dropped,
    )  # fmt: skip
    fit = dataclasses.replace(fit, warnings=reissue(caught))
    passes = 1 + res.n_passes + done.passes
    return ChunkedGLM(fit, passes, rows)


class _ChunkStream:
    """Passes over a chunk source in a loop (a :class:`RowPasses` and a
    :class:`RowSource`).  The first pass checks the values (response range, weights,
    design), naming the chunk and row, and counts the model rows."""

    def __init__(self, source: ChunkSource, plan: ModelPlan) -> None:
        self.source, self.plan = source, plan
        self.passes = 0
        self.n_rows = 0  # model rows (after na.omit), counted by the first pass

    def map_sum(self, fn: Callable[[ChunkData], S]) -> S | None:
        total: S | None = None
        for data in self._rows():
            part = fn(data)
            total = part if total is None else total + part
        return total

    def map_rows(self, fn: RowValues) -> Array:
        """``fn`` on every chunk, written into one vector of the n model rows."""
        out = np.empty(self.n_rows)
        start = 0
        for data in self._rows():
            stop = start + data.y.shape[0]
            if stop > self.n_rows:
                break
            out[start:stop] = fn(data, start)
            start = stop
        if start != self.n_rows:
            raise DataError(
                f"the source yielded other rows than when the model was fitted ({self.n_rows} "
                "rows after dropping missing values): it must yield the same data at every pass"
            )
        return out

    def _rows(self) -> Iterator[ChunkData]:
        check = self.passes == 0
        self.passes += 1
        for chunk in self.source.chunks(self.plan.columns):
            data = chunk_data(self.plan, chunk, check)
            if data is not None:
                self.n_rows += data.y.shape[0] if check else 0
                yield data


__all__ = ["glm_chunked"]
