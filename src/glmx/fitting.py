"""The GLM front end: ``glm(formula, data, ...)`` and ``glm_fit(X, y, ...)``.

Both validate their inputs, run IRLS (or the negative binomial alternation), compute the
null deviance as R does, check binomial fits for separation, and return
:class:`~glmx.results.glm.GLMResults`.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from glmx.allocator import reuse_freed_memory
from glmx.design.formula import build_model_frame
from glmx.design.matrix import DenseDesign, DesignMatrix, SparseDesign, as_design, ones_column
from glmx.design.parallel import single_threaded_blas
from glmx.design.scan import scan_dense
from glmx.errors import (
    BoundaryWarning,
    DataError,
    FamilyError,
    SeparationWarning,
    shown,
)
from glmx.families import Family, get_family
from glmx.families.exponential import Binomial, Poisson
from glmx.families.links import EPS, Link
from glmx.families.negbin import NegativeBinomial
from glmx.inference.covariance import COV_TYPES
from glmx.results.glm import GLMFit, GLMResults
from glmx.solvers.elementwise import total_deviance
from glmx.solvers.irls import irls
from glmx.solvers.negbin import fit_negative_binomial
from glmx.solvers.nullmodel import firth_null_deviance, null_model
from glmx.solvers.separation import detect_separation
from glmx.solvers.state import Array, IRLSInputs
from glmx.vectors import constant, is_constant


def glm(
    formula: str,
    data: Any,
    family: str | Family = "gaussian",
    link: str | Link | None = None,
    weights: str | Any | None = None,
    freq_weights: str | Any | None = None,
    offset: str | Any | None = None,
    start: Any | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
    method: str = "irls",
    cov_type: str | None = None,
    cluster: str | Any | None = None,
) -> GLMResults:
    """Fit a GLM from an R-style formula and a data frame (pandas, polars, pyarrow, dict),
    or a path to a Parquet file or directory, or a Dask DataFrame: those two are streamed
    in chunks (partitions) without loading them (``glmx.glm_chunked``; the result keeps
    no rows, and computes its per-row outputs by a pass over the data when asked).  A
    path ending in .csv, .tsv, .feather or .arrow (see ``glmx.io.datafiles``) is read
    into memory, as the command line reads it.

    ``weights`` are R's prior weights (binomial: trials for a proportion response);
    ``freq_weights`` are case counts; ``offset`` is on the link scale (``offset(x)`` terms
    in the formula work too).  Rows with a missing value in a used column are dropped and
    counted in ``n_dropped``.  ``method="firth"`` fits binomial models by Firth's
    bias-reduced likelihood; ``cov_type`` ("HC0".."HC3", "cluster" with ``cluster=``, a
    column or array of labels) makes ``vcov``, ``se`` and the tests robust.
    """
    from glmx.io.datafiles import file_kind, read_data
    from glmx.outofcore.daskbackend import is_dask_dataframe

    if isinstance(data, (str, os.PathLike)) and file_kind(data) in ("csv", "tsv", "arrow"):
        data = read_data(data)  # as the command line reads it
    if isinstance(data, (str, os.PathLike)) or is_dask_dataframe(data):  # streamed
        return _fit_out_of_core(
            formula, data, family, link, weights, offset, tol, max_iter,
            dict(freq_weights=freq_weights, start=start, cov_type=cov_type, cluster=cluster),
            method,
        )  # fmt: skip
    fam = get_family(family, link)
    mf = build_model_frame(
        formula,
        data,
        weights=weights,
        freq_weights=freq_weights,
        offset=offset,
        binomial=isinstance(fam, Binomial),
        cluster=cluster,
    )
    w = mf.weights
    if mf.trials is not None:  # cbind(s, f): trials multiply the prior weights, as R
        w = mf.trials if w is None else w * mf.trials
    call = _call_text(formula, family, fam, weights, freq_weights, offset)
    has_icpt = "Intercept" in mf.X.column_names
    return _fit(
        mf.X, mf.y, fam, w, mf.freq_weights, mf.offset, start, tol, max_iter,
        has_intercept=has_icpt, n_dropped=mf.n_dropped, terms=mf.terms, call=call,
        response_name=mf.terms.response, rows=mf.row_index,
        options=FitOptions(method, cov_type, mf.cluster),
    )  # fmt: skip


def _fit_out_of_core(
    formula: str, path: Any, family: Any, link: Any, weights: Any, offset: Any, tol: float,
    max_iter: int, unsupported: dict[str, Any], method: str,
) -> Any:  # fmt: skip
    """``glm`` on a Parquet path or a Dask DataFrame: ``glmx.outofcore.glm_chunked``,
    which keeps no rows."""
    from glmx.outofcore import glm_chunked
    from glmx.outofcore.finish import refuse_in_memory_options

    refuse_in_memory_options(
        _source_text(path), unsupported, method,
        "load the data into memory for those (or use glmx.glm_chunked's options)",
    )  # fmt: skip

    return glm_chunked(
        formula, path, family=family, link=link, weights=weights, offset=offset, tol=tol,
        max_iter=max_iter,
    )  # fmt: skip


def _source_text(data: Any) -> str:
    """How an error names streamed data: the Parquet path, or 'a Dask DataFrame'."""
    return repr(str(data)) if isinstance(data, (str, os.PathLike)) else "a Dask DataFrame"


def glm_fit(
    X: Any,
    y: Any,
    family: str | Family = "gaussian",
    link: str | Link | None = None,
    weights: Any | None = None,
    freq_weights: Any | None = None,
    offset: Any | None = None,
    start: Any | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
    column_names: list[str] | None = None,
    intercept: bool | None = None,
    method: str = "irls",
    cov_type: str | None = None,
    cluster: Any | None = None,
) -> GLMResults:
    """Fit a GLM to a design matrix (numpy, scipy.sparse, pandas DataFrame) and response.

    X is used as given, like R's ``glm.fit``: add a column of ones for an intercept.
    ``intercept`` says whether X has one (for the null deviance); by default a column of
    all ones is taken to be the intercept.  Missing values are an error here.  A dask
    array X is streamed over its row blocks on the active Dask scheduler
    (``glmx.outofcore.daskarrays``; per-row outputs are lazy dask arrays).
    """
    from glmx.outofcore.daskarrays import is_dask_collection

    if any(is_dask_collection(v) for v in (X, y, weights, offset)):  # streamed
        from glmx.outofcore.daskarrays import glm_fit_dask

        streamed: Any = glm_fit_dask(
            X, y, family, link, weights, freq_weights, offset, start, tol, max_iter,
            column_names, intercept, method, cov_type, cluster,
        )  # fmt: skip
        return streamed
    fam = get_family(family, link)
    if isinstance(X, pd.DataFrame):
        column_names = column_names or [str(c) for c in X.columns]
    design, ones = _checked_design(X, column_names)
    y_arr = _as_vector(y, "y")
    if intercept is None:
        intercept = _has_ones_column(design) if ones is None else ones
    return _fit(
        design, y_arr, fam, weights, freq_weights, offset, start, tol, max_iter,
        has_intercept=intercept, n_dropped=0, terms=None, call="glmx.glm_fit(X, y)",
        response_name="y",
        options=FitOptions(method, cov_type, None if cluster is None else np.asarray(cluster, dtype=object)),
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """How to estimate (``irls`` or ``firth``) and which covariance to report."""

    method: str = "irls"
    cov_type: str | None = None
    cluster: Any = None

    def check(self, fam: Family, n: int) -> None:
        if self.method not in ("irls", "firth"):
            raise DataError(f"method must be 'irls' or 'firth', got {self.method!r}")
        if self.method == "firth" and not isinstance(fam, Binomial):
            raise FamilyError(f"method='firth' is for binomial models, not {fam.name}")
        if self.cov_type is not None and self.cov_type not in COV_TYPES:
            raise DataError(f"cov_type must be one of {COV_TYPES} or None, got {self.cov_type!r}")
        if (self.cov_type == "cluster") != (self.cluster is not None):
            raise DataError("cov_type='cluster' and cluster= go together")
        if self.cluster is not None and len(self.cluster) != n:
            raise DataError(
                f"cluster has length {len(self.cluster)} but there are {n} observations"
            )


def _checked_design(X: Any, column_names: list[str] | None) -> tuple[DesignMatrix, bool | None]:
    """A DesignMatrix from user X, with errors that name the column at fault, and for a
    numpy X whether it has a column of ones (None: not looked at)."""
    if isinstance(X, (DenseDesign, SparseDesign)):
        return X, None
    if sp.issparse(X):
        data = np.asarray(X.data)
        if not np.issubdtype(data.dtype, np.number):
            raise DataError(f"X must be numeric, got {data.dtype}")
        design = as_design(X, column_names)
        assert isinstance(design, SparseDesign)
        csc = design.X.tocsc()
        bad = ~np.isfinite(csc.data)
        if bad.any():
            # the column of each stored value: its position among the column pointers
            cols = np.searchsorted(csc.indptr, np.flatnonzero(bad), side="right") - 1
            j = int(cols[0])
            raise DataError(
                f"column {design.column_names[j]!r} of X has {int((cols == j).sum())} missing "
                "or non-finite value(s); glm_fit does not drop rows"
            )
        return design, None
    try:
        arr = np.asarray(X.to_numpy(dtype=float) if isinstance(X, pd.DataFrame) else X, dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"X must be numeric, got {np.asarray(X).dtype}") from None
    if arr.ndim != 2:
        raise DataError(
            f"X must be a two-dimensional matrix (rows x columns), got shape {arr.shape}"
        )
    design = DenseDesign(arr, column_names)
    sums_finite, ones = scan_dense(arr)
    # the full element check only when a block's sum is not finite (or overflowed)
    bad = np.zeros((0, arr.shape[1]), dtype=bool) if sums_finite else ~np.isfinite(arr)
    if bad.any():
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        raise DataError(
            f"column {design.column_names[j]!r} of X has {int(bad[:, j].sum())} "
            "missing or non-finite value(s); glm_fit does not drop rows"
        )
    return design, ones


def _call_text(
    formula: str, family: str | Family, fam: Family, weights: Any, freq: Any, offset: Any
) -> str:
    label = family if isinstance(family, str) else type(family).__name__
    parts = [f"formula = {formula}", f"family = {label}(link = {fam.link.name})"]
    for label, v in (("weights", weights), ("freq_weights", freq), ("offset", offset)):
        if isinstance(v, str):
            parts.append(f"{label} = {v}")
        elif v is not None:
            parts.append(f"{label} = <array>")
    return "glm(" + ", ".join(parts) + ")"


def _has_ones_column(X: DesignMatrix) -> bool:
    return ones_column(X) is not None


def _as_vector(v: Any, name: str, n: int | None = None) -> Array:
    if isinstance(v, (pd.Series, pd.Index)):
        v = v.to_numpy(dtype=float, na_value=np.nan)
    try:
        arr = np.asarray(v, dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be numeric") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise DataError(f"{name} has length {arr.shape[0]} but there are {n} observations")
    return arr


def _check_finite(arr: Array, name: str) -> None:
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(arr)):  # one pass; the element check only when it fails
            return
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{name} has {int(bad.sum())} missing or non-finite value(s), first at row {i}: {float(arr[i])!r}"
        )


def _validated(
    n: int, weights: Any, freq_weights: Any, offset: Any, y: Array, response_name: str
) -> tuple[Array, Array, Array]:
    if y.shape[0] != n:
        raise DataError(f"response has length {y.shape[0]} but the design has {n} rows")
    if n == 0:
        raise DataError("there are no observations to fit")
    _check_finite(y, f"response {response_name!r}")
    out = []
    for name, v, default in (
        ("weights", weights, 1.0),
        ("freq_weights", freq_weights, 1.0),
        ("offset", offset, 0.0),
    ):
        if v is None:  # the default: nothing to check, and no memory taken
            out.append(constant(n, default))
            continue
        arr = _as_vector(v, name, n)
        _check_finite(arr, name)
        if name != "offset" and np.any(arr < 0):
            i = int(np.flatnonzero(arr < 0)[0])
            raise DataError(
                f"{name} must be non-negative; {int((arr < 0).sum())} negative, first at row {i}: {float(arr[i])!r}"
            )
        out.append(arr)
    w, f, off = out
    if (weights is not None or freq_weights is not None) and not np.any(w * f > 0):
        raise DataError("every observation has zero weight; there is nothing to fit")
    return w, f, off


def _fit(
    X: DesignMatrix,
    y: Array,
    fam: Family,
    weights: Any,
    freq_weights: Any,
    offset: Any,
    start: Any,
    tol: float,
    max_iter: int,
    *,
    has_intercept: bool,
    n_dropped: int,
    terms: Any,
    call: str,
    response_name: str,
    rows: Sequence[object] | None = None,  # the data's row labels (a pandas Index)
    options: FitOptions | None = None,
) -> GLMResults:
    n, p = X.shape
    options = options or FitOptions()
    labels = None if rows is None else np.asarray(rows)
    options.check(fam, n)
    w, f, off = _validated(n, weights, freq_weights, offset, y, response_name)
    if isinstance(fam, Binomial) and not is_constant(w, 1.0):
        y = np.where(w > 0, y, 0.0)  # R: y[weights == 0] <- 0
    fam.check_response(y, w, response_name, rows)
    start_arr = None
    if start is not None:
        start_arr = _as_vector(start, "start")
        if start_arr.shape[0] != p:
            raise DataError(
                f"start has length {start_arr.shape[0]} but the design has {p} columns ({', '.join(X.column_names)})"
            )
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise DataError(f"tol must be a positive number, got {shown(tol)}")
    if not (isinstance(max_iter, (int, np.integer)) and max_iter >= 1):
        raise DataError(f"max_iter must be a positive integer, got {shown(max_iter)}")
    inp = IRLSInputs(
        X=X,
        y=y,
        weights=w,
        freq_weights=f,
        offset=off,
        family=fam,
        start=start_arr,
        tol=tol,
        max_iter=max_iter,
    )

    reuse_freed_memory()  # temporaries of the data's size reused, not faulted in
    with warnings.catch_warnings(record=True) as caught, single_threaded_blas():
        warnings.simplefilter("always")
        theta_free = isinstance(fam, NegativeBinomial) and fam.estimate_theta
        if options.method == "irls" and not theta_free:
            # the nested null model, which the fit must not do worse than
            null_dev, null_start = null_model(inp, has_intercept)
            inp = dataclasses.replace(inp, null_start=null_start, null_deviance=null_dev)
        theta_se = None
        if isinstance(fam, NegativeBinomial):
            res, fam, est, _ = fit_negative_binomial(inp)
            inp = dataclasses.replace(inp, family=fam)
            theta_se = est.se if fam.estimate_theta else None
        elif options.method == "firth":
            from glmx.solvers.firth import firth

            res = firth(inp)
        else:
            res = irls(inp)
        # IRLS's last step computed this deviance already, by the same function
        plain = options.method == "irls" and not isinstance(fam, NegativeBinomial)
        deviance = res.deviance if plain else total_deviance(inp, res.mu)
        if options.method == "firth":
            null_dev = firth_null_deviance(inp)
        elif theta_free:
            null_dev = null_model(inp, has_intercept)[0]  # at the final theta
        _check_boundary_fits(inp, res.mu, res.converged, res.aliased, options.method)
    caught = list({str(m.message): m for m in caught}.values())  # each message once
    for wmsg in caught:
        warnings.warn_explicit(wmsg.message, wmsg.category, wmsg.filename, wmsg.lineno)

    fit = GLMFit(
        family=fam, X=X, y=y, weights=w, freq_weights=f, offset=off, coef=res.coef,
        aliased=res.aliased, cov_unscaled=res.cov_unscaled,
        working_weights=res.working_weights, eta=res.eta, mu=res.mu,
        deviance=deviance, null_deviance=null_dev, has_intercept=has_intercept,
        n_iter=res.n_iter, converged=res.converged, log=res.log, n_dropped=n_dropped,
        terms=terms, call=call, theta_se=theta_se, tol=tol, max_iter=max_iter,
        method=options.method, cov_type=options.cov_type, cluster=options.cluster,
        row_labels=labels,
        warnings=tuple(str(m.message) for m in caught),
    )  # fmt: skip
    return GLMResults(fit)


def _check_boundary_fits(
    inp: IRLSInputs, mu: Array, converged: bool, aliased: Any, method: str = "irls"
) -> None:
    """R's 'fitted probabilities numerically 0 or 1' and 'fitted rates numerically 0',
    with the binomial case explained by a separation check that names the predictors
    (not for Firth fits, whose estimates are finite under separation)."""
    fam = inp.family
    if not isinstance(fam, (Binomial, Poisson)):
        return
    # the usual case, every mean well inside the range, by two passes and no temporaries
    lowest, highest = float(np.min(mu)), float(np.max(mu))
    if isinstance(fam, Poisson) and lowest >= 10 * EPS:
        return
    if isinstance(fam, Binomial) and (converged or method == "firth"):
        if lowest >= 1e-8 and highest <= 1 - 1e-8:
            return
    pos = inp.total_weights > 0
    if isinstance(fam, Binomial) and method == "firth":
        edge = (mu[pos] > 1 - 10 * EPS) | (mu[pos] < 10 * EPS)
        if edge.any():
            warnings.warn(
                f"fitted probabilities numerically 0 or 1 occurred for {int(edge.sum())} "
                "observation(s)",
                BoundaryWarning,
                stacklevel=4,
            )
    elif isinstance(fam, Binomial):
        edge = (mu[pos] > 1 - 10 * EPS) | (mu[pos] < 10 * EPS)
        # quasi-complete separation often stops IRLS at probabilities near 1e-10 rather
        # than at R's 10 eps, so probabilities this extreme trigger the (exact) LP check
        extreme = (mu[pos] > 1 - 1e-8) | (mu[pos] < 1e-8)
        if not extreme.any() and converged:
            return
        sep = detect_separation(inp.X, inp.y, inp.total_weights, ~np.asarray(aliased))
        if sep is not None:
            kind = "complete" if sep.complete else "quasi-complete"
            warnings.warn(
                f"{kind} separation: the maximum likelihood estimates of "
                f"{', '.join(repr(c) for c in sep.columns)} are infinite "
                f"({sep.n_separated} observation(s) perfectly predicted; fitted "
                "probabilities numerically 0 or 1). Their estimates and standard errors are "
                'not meaningful; fit by Firth\'s penalized likelihood (method="firth") or drop the predictors',
                SeparationWarning,
                stacklevel=4,
            )
        elif edge.any():
            warnings.warn(
                f"fitted probabilities numerically 0 or 1 occurred for {int(edge.sum())} "
                "observation(s)",
                BoundaryWarning,
                stacklevel=4,
            )
    elif isinstance(fam, Poisson) and np.any(mu[pos] < 10 * EPS):
        warnings.warn(
            f"fitted rates numerically 0 occurred for {int((mu[pos] < 10 * EPS).sum())} observation(s)",
            BoundaryWarning,
            stacklevel=4,
        )


__all__ = ["glm", "glm_fit"]
