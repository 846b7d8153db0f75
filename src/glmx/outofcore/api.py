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
from functools import partial
from typing import Any

import numpy as np

from glmx.design.formula import _spec_variables
from glmx.errors import BoundaryWarning, DataError, FamilyError, FormulaError
from glmx.families import Family, get_family
from glmx.families.exponential import Binomial
from glmx.families.links import Link
from glmx.families.negbin import NegativeBinomial
from glmx.fitting import _call_text
from glmx.outofcore.chunkdesign import ChunkData, ModelPlan, chunk_data, model_columns, plan_model
from glmx.outofcore.daskbackend import DaskSource, is_dask_dataframe
from glmx.outofcore.results import ChunkedGLM
from glmx.outofcore.sources import ChunkSource, as_source, survey
from glmx.outofcore.statistics import FinalSums, FitTotals, final_pass
from glmx.outofcore.streaming import RowPasses, S, StreamingResult, streaming_irls
from glmx.progress import Progress
from glmx.results.loaded import SavedFit
from glmx.solvers.state import Array, IRLSInputs


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
    has no per-row values (fitted values, residuals): see :class:`ChunkedGLM`.
    ``progress`` shows a line with the passes and the deviance once the fit has run two
    seconds (default: in a terminal or notebook only).
    """
    fam = get_family(family, link)
    if isinstance(fam, NegativeBinomial):
        raise FamilyError(
            "the negative binomial family estimates theta by its own alternation, which "
            "glm_chunked does not run; fit poisson or give a fixed-theta family"
        )
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise DataError(f"tol must be a positive number, got {tol!r}")
    if not (isinstance(max_iter, (int, np.integer)) and max_iter >= 1):
        raise DataError(f"max_iter must be a positive integer, got {max_iter!r}")
    src = DaskSource(source) if is_dask_dataframe(source) else as_source(source, chunk_rows)
    columns = model_columns(formula, weights, offset)
    absent = sorted(set(columns) - set(src.column_names()))
    if absent:
        raise FormulaError(
            f"formula {formula!r} (or weights/offset) names column(s) "
            f"{', '.join(map(repr, absent))} not in the data"
        )
    found = src.survey(columns) if isinstance(src, DaskSource) else survey(src, columns)
    plan = plan_model(formula, fam, weights, offset, columns, found)
    rows: RowPasses = src.passes(plan) if isinstance(src, DaskSource) else _ChunkStream(src, plan)

    with (
        warnings.catch_warnings(record=True) as caught,
        Progress("glmx.glm_chunked", enabled=progress, unit="pass") as bar,
    ):
        warnings.simplefilter("always")
        res = streaming_irls(rows, _full_design, fam, _r_mustart, tol, max_iter, bar)
        passes = 1 + res.n_passes
        null_fit = None
        if plan.has_intercept and (bool(plan.terms.offset_terms) or plan.offset is not None):
            null_fit = _null_fit(rows, fam, res, tol, max_iter)
            passes += null_fit.n_passes
        totals = FitTotals(
            deviance=res.deviance,
            n_positive=res.totals.n_positive,
            sum_w=res.totals.sum_w,
            null_mu=res.totals.sum_wy / res.totals.sum_w if plan.has_intercept else None,
            null_needed=null_fit is None,
        )
        sums = final_pass(rows, _full_design, fam, res.beta, res.last_point, _r_mustart, totals)
        passes += 1
        if sums.n_boundary:
            what = (
                "probabilities numerically 0 or 1"
                if isinstance(fam, Binomial)
                else "rates numerically 0"
            )
            warnings.warn(
                f"fitted {what} occurred for {sums.n_boundary} observation(s)",
                BoundaryWarning,
                stacklevel=2,
            )
    caught = list({str(m.message): m for m in caught}.values())  # each message once
    for wmsg in caught:
        warnings.warn_explicit(wmsg.message, wmsg.category, wmsg.filename, wmsg.lineno)
    null_deviance = null_fit.deviance if null_fit is not None else sums.null_deviance
    call = _call_text(formula, family, fam, weights, None, offset)
    fit = _saved_fit(plan, res, sums, null_deviance, found.n_dropped, tol, max_iter)
    fit = dataclasses.replace(
        fit,
        call=call.replace("glm(", "glm_chunked(", 1),
        warnings=tuple(str(m.message) for m in caught),
    )
    return ChunkedGLM(fit, passes)


class _ChunkStream:
    """Passes over a chunk source in a loop (a :class:`RowPasses`).  The first pass
    checks the values (response range, weights, design), naming the chunk and row."""

    def __init__(self, source: ChunkSource, plan: ModelPlan) -> None:
        self.source, self.plan = source, plan
        self.passes = 0

    def map_sum(self, fn: Callable[[ChunkData], S]) -> S | None:
        total: S | None = None
        for data in self._rows():
            part = fn(data)
            total = part if total is None else total + part
        return total

    def _rows(self) -> Iterator[ChunkData]:
        check = self.passes == 0
        self.passes += 1
        for chunk in self.source.chunks(self.plan.columns):
            data = chunk_data(self.plan, chunk, check)
            if data is not None:
                yield data


def _full_design(data: ChunkData) -> object:
    return data.X


def _ones_design(data: ChunkData) -> object:
    return np.ones((data.y.shape[0], 1))


def _r_mustart(data: ChunkData, inp: IRLSInputs) -> Array:
    """R's mustart: the family's ``initialize`` expression."""
    return inp.family.starting_mu(inp.y, inp.weights)


def _full_fit_mu(data: ChunkData, inp: IRLSInputs, beta: Array) -> Array:
    """The full fit's means on a chunk, g^{-1}(X beta + offset)."""
    eta = np.asarray(data.X @ beta).ravel() + data.offset
    return inp.family.link.inverse(eta)


def _null_fit(
    rows: RowPasses, fam: Family, res: StreamingResult, tol: float, max_iter: int
) -> StreamingResult:
    """R's null model with an offset: the intercept-only fit started from the full
    fit's means (mustart = fitted values, recomputed per chunk)."""
    start_mu: Callable[[ChunkData, IRLSInputs], Array] = partial(_full_fit_mu, beta=res.beta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return streaming_irls(rows, _ones_design, fam, start_mu, tol, max_iter)


def _saved_fit(
    plan: ModelPlan,
    res: StreamingResult,
    sums: FinalSums,
    null_deviance: float,
    n_dropped: int,
    tol: float,
    max_iter: int,
) -> SavedFit:
    """The results' content, as a model file would hold it."""
    from glmx import __version__

    fam = plan.family
    rank = int((~res.aliased).sum())
    nobs = res.totals.n_positive
    df_resid = nobs - rank
    if fam.fixed_dispersion:
        dispersion = 1.0
    else:  # R's summary.glm: sum(W r^2) / df_resid, W of the last step
        dispersion = sums.dispersion_sum / df_resid if df_resid > 0 else float("nan")
    n_params = rank + fam.n_scale_params
    variables = _spec_variables(plan.terms) | ({plan.offset} if plan.offset else set())
    return SavedFit(
        family=fam, columns=plan.column_names, coef=res.coef, aliased=res.aliased,
        vcov=dispersion * res.cov_unscaled, terms=plan.terms, variables=frozenset(variables),
        formula=plan.formula, call="", method="irls", cov_type=None, theta_se=None,
        dispersion=dispersion, deviance=res.deviance, null_deviance=null_deviance,
        pearson_chi2=sums.pearson_chi2, loglik=sums.loglik,
        aic=-2.0 * sums.loglik + 2.0 * n_params,
        bic=-2.0 * sums.loglik + np.log(nobs) * n_params,
        tol=tol, df_resid=df_resid, df_null=nobs - int(plan.has_intercept), nobs=nobs,
        n_dropped=n_dropped, rank=rank, n_iter=res.n_iter, max_iter=max_iter,
        converged=res.converged, has_intercept=plan.has_intercept,
        residual_values=np.array([sums.min_residual, sums.max_residual]),
        notes=(), warnings=(), glmx_version=__version__,
    )  # fmt: skip


__all__ = ["glm_chunked"]
