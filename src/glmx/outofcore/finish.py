"""What every streamed fit shares around its IRLS passes: the checks of its options,
R's null fit and the statistics pass after IRLS, the results' content, and the
warnings, gathered during the fit and issued once each.

Used by ``glm_chunked`` (a formula over chunks or a Dask DataFrame) and by ``glm_fit``
on dask arrays; they differ only in how the rows are read.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from glmx.errors import BoundaryWarning, DataError, FamilyError, shown
from glmx.families import Family
from glmx.families.exponential import Binomial
from glmx.families.negbin import NegativeBinomial
from glmx.outofcore.chunkdesign import ChunkData
from glmx.outofcore.statistics import FinalSums, FitTotals, final_pass
from glmx.outofcore.streaming import RowPasses, StreamingResult, streaming_irls
from glmx.results.loaded import SavedFit
from glmx.solvers.state import Array, IRLSInputs


def check_options(fam: Family, tol: Any, max_iter: Any) -> None:
    """The family and the convergence settings a streamed fit can honour."""
    if isinstance(fam, NegativeBinomial):
        raise FamilyError(
            "the negative binomial family estimates theta by its own alternation, which a "
            "streamed fit does not run; fit poisson or give a fixed-theta family"
        )
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise DataError(f"tol must be a positive number, got {shown(tol)}")
    if not (isinstance(max_iter, (int, np.integer)) and max_iter >= 1):
        raise DataError(f"max_iter must be a positive integer, got {shown(max_iter)}")


def refuse_in_memory_options(
    source: str, options: dict[str, Any], method: str, advice: str
) -> None:
    """A streamed fit cannot honour options that need the rows in memory (frequency
    weights, start values, robust covariances, Firth's method): name those given."""
    given = [name for name, value in options.items() if value is not None]
    if method != "irls":
        given.append(f"method={method!r}")
    if given:
        raise DataError(f"a fit streamed from {source} does not take {', '.join(given)}; {advice}")


def full_design(data: ChunkData) -> object:
    return data.X


def ones_design(data: ChunkData) -> object:
    return np.ones((data.y.shape[0], 1))


def r_mustart(data: ChunkData, inp: IRLSInputs) -> Array:
    """R's mustart: the family's ``initialize`` expression."""
    return inp.family.starting_mu(inp.y, inp.weights)


def _full_fit_mu(data: ChunkData, inp: IRLSInputs, beta: Array) -> Array:
    """The full fit's means on a chunk, g^{-1}(X beta + offset)."""
    eta = np.asarray(data.X @ beta).ravel() + data.offset
    return inp.family.link.inverse(eta)


@dataclass(frozen=True)
class Finish:
    """After IRLS: the statistics pass's sums, the null deviance and the passes taken."""

    sums: FinalSums
    null_deviance: float
    passes: int


def finish(
    rows: RowPasses,
    fam: Family,
    res: StreamingResult,
    has_intercept: bool,
    has_offset: bool,
    tol: float,
    max_iter: int,
) -> Finish:
    """R's null fit when there is an offset and an intercept (the intercept-only model
    started from the full fit's means), then the statistics pass and R's boundary
    warning."""
    passes = 0
    null_fit = None
    if has_intercept and has_offset:
        start_mu: Callable[[ChunkData, IRLSInputs], Array] = partial(_full_fit_mu, beta=res.beta)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            null_fit = streaming_irls(rows, ones_design, fam, start_mu, tol, max_iter)
        passes += null_fit.n_passes
    totals = FitTotals(
        deviance=res.deviance,
        n_positive=res.totals.n_positive,
        sum_w=res.totals.sum_w,
        null_mu=res.totals.sum_wy / res.totals.sum_w if has_intercept else None,
        null_needed=null_fit is None,
    )
    sums = final_pass(rows, full_design, fam, res.beta, res.last_point, r_mustart, totals)
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
            stacklevel=3,
        )
    null_deviance = null_fit.deviance if null_fit is not None else sums.null_deviance
    return Finish(sums, null_deviance, passes)


def saved_fit(
    fam: Family,
    columns: list[str],
    res: StreamingResult,
    done: Finish,
    has_intercept: bool,
    tol: float,
    max_iter: int,
    **model: Any,
) -> SavedFit:
    """The results' content, as a model file would hold it; ``model`` gives the model's
    ``terms``, ``variables``, ``formula``, ``call`` and ``n_dropped`` (a ``glm_fit``
    has none of them)."""
    from glmx import __version__

    sums = done.sums
    rank = int((~res.aliased).sum())
    nobs = res.totals.n_positive
    df_resid = nobs - rank
    if fam.fixed_dispersion:
        dispersion = 1.0
    else:  # R's summary.glm: sum(W r^2) / df_resid, W of the last step
        dispersion = sums.dispersion_sum / df_resid if df_resid > 0 else float("nan")
    n_params = rank + fam.n_scale_params
    return SavedFit(
        family=fam, columns=columns, coef=res.coef, aliased=res.aliased,
        vcov=dispersion * res.cov_unscaled, terms=model.get("terms"),
        variables=frozenset(model.get("variables", ())), formula=model.get("formula"),
        call=model.get("call", ""), method="irls", cov_type=None, theta_se=None,
        dispersion=dispersion, deviance=res.deviance, null_deviance=done.null_deviance,
        pearson_chi2=sums.pearson_chi2, loglik=sums.loglik,
        aic=-2.0 * sums.loglik + 2.0 * n_params,
        bic=-2.0 * sums.loglik + np.log(nobs) * n_params,
        tol=tol, df_resid=df_resid, df_null=nobs - int(has_intercept), nobs=nobs,
        n_dropped=model.get("n_dropped", 0), rank=rank, n_iter=res.n_iter, max_iter=max_iter,
        converged=res.converged, has_intercept=has_intercept,
        residual_values=np.array([sums.min_residual, sums.max_residual]),
        notes=(), warnings=(), glmx_version=__version__,
    )  # fmt: skip


def reissue(caught: Sequence[warnings.WarningMessage]) -> tuple[str, ...]:
    """Issue the warnings recorded during a fit once each; their messages."""
    unique = list({str(m.message): m for m in caught}.values())
    for m in unique:
        warnings.warn_explicit(m.message, m.category, m.filename, m.lineno)
    return tuple(str(m.message) for m in unique)


__all__ = [
    "Finish",
    "check_options",
    "finish",
    "full_design",
    "ones_design",
    "r_mustart",
    "refuse_in_memory_options",
    "reissue",
    "saved_fit",
]
