"""The result of an out-of-core fit: estimates and fit statistics, and the per-row
outputs on request, by one more pass over the data.

It is a :class:`~glmx.results.loaded.LoadedGLM` (the results class that holds no data):
``coef``, ``se``, ``vcov``, ``coef_table``, Wald ``confint``, ``deviance``,
``null_deviance``, ``aic``, ``bic``, ``loglik``, ``dispersion``, ``df_resid``, ``nobs``,
``converged``, ``n_iter``, ``predict(newdata)`` and ``summary()`` in R's layout.

It keeps what re-reads the data (the fit's :class:`RowSource`: the chunk source and
model plan, or the Dask graph of the partitions or row blocks), never the rows.  The
per-row outputs of :class:`~glmx.results.glm.GLMResults` that need the rows one at a
time (``fitted``, ``linear_predictor``, ``y``, ``prior_weights``, ``freq_weights`` and
``residuals(type, seed)`` of every type) are computed from the coefficients, chunk by
chunk, when asked: for a Parquet, iterator or DataFrame source by a pass made then,
which returns a numpy array of all the rows after ``na.omit`` (n values in memory); for
a Dask DataFrame or dask arrays as a lazy dask array with one task per partition or
block, read when the array is computed.  What needs all the rows at once or refits the
model (hat values and influence, profile intervals, anova, saving a model file) raises
:class:`RowsNotKeptError`, a :class:`glmx.errors.DataError` that says so; so does every
per-row output of a result built without a source (``ChunkedGLM(fit, n_passes)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import numpy as np
import pandas as pd

from glmx.design.matrix import as_design
from glmx.diagnostics.residuals import (
    EXTRA_RESIDUAL_TYPES,
    RESIDUAL_TYPES,
    extra_residuals,
    residuals,
)
from glmx.errors import DataError
from glmx.families.base import Family
from glmx.outofcore.chunkdesign import ChunkData
from glmx.results.glm import GLMResults
from glmx.results.loaded import LoadedGLM, LoadedSummary, SavedFit
from glmx.results.rformat import format_column
from glmx.solvers.state import Array

_NEEDS_ROWS = (
    "needs the rows of the data, which an out-of-core fit does not keep in memory; "
    "fit with glmx.glm on data that fit in memory to get it"
)
_BY_A_PASS = (
    " (fitted, linear_predictor, y, prior_weights, freq_weights and residuals() are "
    "computed by a pass over the data)"
)


class RowsNotKeptError(DataError, AttributeError):
    """A per-row output of an out-of-core fit was asked for (an AttributeError too, so
    that ``hasattr`` and introspection keep working)."""


class RowSource(Protocol):
    """What re-reads a fit's rows: ``map_rows(fn)`` applies ``fn(rows, start)`` to every
    chunk's model rows (``start``: the index of the chunk's first row among all the rows
    after na.omit) and joins the results in row order, a numpy vector or a lazy dask
    array."""

    def map_rows(self, fn: RowValues) -> Any: ...


@dataclass(frozen=True)
class FitScalars:
    """What quantile and Anscombe residuals read of the fit besides the rows."""

    dispersion: float
    pearson_chi2: float
    df_resid: float
    deviance: float


@dataclass(frozen=True)
class _Rows:
    """A chunk's rows as the residual code reads a fit's (``fit._fit``)."""

    family: Family
    y: Array
    mu: Array
    weights: Array


@dataclass(frozen=True)
class _ChunkFit:
    """A chunk as :func:`~glmx.diagnostics.residuals.extra_residuals` reads a fit."""

    _fit: _Rows
    dispersion: float
    pearson_chi2: float
    df_resid: float
    deviance: float


@dataclass(frozen=True)
class RowValues:
    """One per-row output on a chunk's model rows, at the fit's coefficients ``beta``
    (aliased columns 0): the map of a rows pass (a task on a Dask worker).  ``kind`` is
    a GLMResults attribute, or ``"residuals"`` with ``residual_type``; quantile
    residuals draw row i's uniform as the i-th draw of numpy's ``default_rng(seed)``,
    as the in-memory fit does for all rows at once."""

    kind: str
    family: Family
    beta: Array
    residual_type: str = "deviance"
    scalars: FitScalars | None = None
    seed: np.random.SeedSequence | None = None

    def __call__(self, data: ChunkData, start: int) -> Array:
        if self.kind == "y":
            return data.y
        if self.kind == "prior_weights":
            return data.weights
        if self.kind == "freq_weights":
            return np.ones(data.y.shape[0])
        eta = as_design(data.X).matvec(self.beta) + data.offset  # X beta + offset
        if self.kind == "linear_predictor":
            return eta
        mu = self.family.link.inverse(eta)
        if self.kind == "fitted":
            return mu
        if self.residual_type in RESIDUAL_TYPES:
            return residuals(self.residual_type, self.family, data.y, mu, eta, data.weights)
        assert self.scalars is not None
        view = _ChunkFit(_Rows(self.family, data.y, mu, data.weights), **vars(self.scalars))
        return extra_residuals(cast(GLMResults, view), self.residual_type, self._rng(start))

    def _rng(self, start: int) -> Any:
        """default_rng(seed) advanced by ``start`` draws (a float64 draw is one step)."""
        bits = np.random.PCG64(self.seed)
        bits.advance(int(start))
        return np.random.Generator(bits)


class ChunkedGLM(LoadedGLM):
    """A GLM fitted out of core by :func:`glmx.outofcore.glm_chunked` or ``glm_fit`` on
    dask arrays (see module doc).  ``n_passes`` counts the passes over the data the fit
    made; ``rows`` re-reads the data for the per-row outputs (None: they are refused).

    The per-row outputs have GLMResults' names and meaning, over the rows used (after
    na.omit, zero-weight rows included, in the data's order).  Each access makes its own
    pass (nothing is cached; ``hasattr`` makes it too): for a Parquet, iterator or
    DataFrame source it reads the data then and materializes the n values as a numpy
    array (8 n bytes); for Dask data it returns a lazy dask array with a block per
    partition or row block, read when computed.  For a DataFrame or list of DataFrames
    the result keeps a reference to them."""

    _rows: RowSource | None

    def __init__(self, fit: SavedFit, n_passes: int, rows: RowSource | None = None) -> None:
        super().__init__(fit, {})
        object.__setattr__(self, "n_passes", n_passes)
        object.__setattr__(self, "_rows", rows)

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_") and hasattr(GLMResults, name):
            raise RowsNotKeptError(f"{name!r} {_NEEDS_ROWS}{self._available()}")
        raise AttributeError(f"'ChunkedGLM' object has no attribute {name!r}")

    def _available(self) -> str:
        return _BY_A_PASS if self.__dict__.get("_rows") is not None else ""

    # --- per-row outputs, by a pass over the data ---------------------------------------
    @property
    def fitted(self) -> Any:
        """Fitted means g^{-1}(X beta + offset), per row used (a pass over the data)."""
        return self._per_row("fitted")

    @property
    def linear_predictor(self) -> Any:
        """X beta + offset, per row used (a pass over the data)."""
        return self._per_row("linear_predictor")

    @property
    def y(self) -> Any:
        """The response as fitted (binomial: proportions, 0 where the weight is 0)."""
        return self._per_row("y")

    @property
    def prior_weights(self) -> Any:
        """R's prior weights (binomial trials included), per row used."""
        return self._per_row("prior_weights")

    @property
    def freq_weights(self) -> Any:
        """Frequency weights: 1 for every row (an out-of-core fit takes none)."""
        return self._per_row("freq_weights")

    def residuals(self, type: str = "deviance", seed: int | None = None) -> Any:  # noqa: A002
        """Residuals of type ``deviance``, ``pearson``, ``working``, ``response``,
        ``anscombe`` or ``quantile`` (randomized quantile residuals, seeded by ``seed``:
        the in-memory fit's values for the same seed), as :meth:`GLMResults.residuals`,
        by a pass over the data (see the class doc)."""
        known = (*RESIDUAL_TYPES, *EXTRA_RESIDUAL_TYPES)
        if type not in known:
            raise DataError(f"unknown residual type {type!r}; choose one of {', '.join(known)}")
        return self._per_row("residuals", type, seed)

    def _per_row(self, kind: str, residual_type: str = "deviance", seed: Any = None) -> Any:
        rows = self._rows
        if rows is None:
            raise RowsNotKeptError(f"{kind!r} {_NEEDS_ROWS}")
        fit = self._fit
        fn = RowValues(
            kind, fit.family, np.where(fit.aliased, 0.0, fit.coef), residual_type,
            FitScalars(fit.dispersion, fit.pearson_chi2, fit.df_resid, fit.deviance),
            np.random.SeedSequence(seed) if residual_type == "quantile" else None,
        )  # fmt: skip
        if residual_type not in RESIDUAL_TYPES:
            # what the family refuses (quantile residuals of a quasi family, say) is
            # refused now, on no rows, not when a lazy array is computed
            p = len(fit.columns)
            fn(ChunkData(np.zeros((0, p)), *(np.zeros(0),) * 3, False), 0)
        return rows.map_rows(fn)

    # --- what stays refused -------------------------------------------------------------
    def confint(
        self, level: float = 0.95, method: Literal["profile", "wald"] = "profile"
    ) -> pd.DataFrame:
        """Wald intervals (R's ``confint.default``), whatever ``method`` says: profile
        intervals refit the model many times, which is not done out of core."""
        return super().confint(level, "wald")

    def summary(self) -> ChunkedSummary:
        return ChunkedSummary(self)

    def save(self, path: str | Path) -> None:
        raise DataError(f"saving a model file {_NEEDS_ROWS} (its residual summary)")

    def __repr__(self) -> str:
        fam = self.family
        return (
            f"<ChunkedGLM {fam.name}({fam.link.name}) n={self.nobs} rank={self.rank} "
            f"deviance={self.deviance:.6g} aic={self.aic:.6g} passes={self.n_passes}>"
        )


class ChunkedSummary(LoadedSummary):
    """R's ``summary.glm`` text; the deviance residuals block shows their minimum and
    maximum (their quartiles would take more passes over the data)."""

    def _residual_lines(self) -> list[str]:
        lo, hi = self.model._fit.residual_values
        vals = format_column([lo, hi], 4)
        width = max(len(v) for v in [*vals, "Min", "Max"])
        return [
            "".join(h.rjust(width) + "  " for h in ("Min", "Max")),
            "".join(v.rjust(width) + "  " for v in vals),
        ]


__all__ = [
    "ChunkedGLM",
    "ChunkedSummary",
    "FitScalars",
    "RowSource",
    "RowValues",
    "RowsNotKeptError",
]
