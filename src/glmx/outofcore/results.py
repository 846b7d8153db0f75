"""The result of an out-of-core fit: estimates and fit statistics, no per-row data.

It is a :class:`~glmx.results.loaded.LoadedGLM` (the results class that holds no data):
``coef``, ``se``, ``vcov``, ``coef_table``, Wald ``confint``, ``deviance``,
``null_deviance``, ``aic``, ``bic``, ``loglik``, ``dispersion``, ``df_resid``, ``nobs``,
``converged``, ``n_iter``, ``predict(newdata)`` and ``summary()`` in R's layout.  What
needs the rows (fitted values, residuals, hat values, profile intervals) raises a
:class:`glmx.errors.DataError` that says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pandas as pd

from glmx.errors import DataError
from glmx.results.glm import GLMResults
from glmx.results.loaded import LoadedGLM, LoadedSummary, SavedFit
from glmx.results.rformat import format_column

_NEEDS_ROWS = (
    "needs the rows of the data, which an out-of-core fit does not keep in memory; "
    "fit with glmx.glm on data that fit in memory to get it"
)


class RowsNotKeptError(DataError, AttributeError):
    """A per-row output of an out-of-core fit was asked for (an AttributeError too, so
    that ``hasattr`` and introspection keep working)."""


class ChunkedGLM(LoadedGLM):
    """A GLM fitted out of core by :func:`glmx.outofcore.glm_chunked` (see module doc).
    ``n_passes`` counts the passes over the data the fit made."""

    def __init__(self, fit: SavedFit, n_passes: int) -> None:
        super().__init__(fit, {})
        object.__setattr__(self, "n_passes", n_passes)

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_") and hasattr(GLMResults, name):
            raise RowsNotKeptError(f"{name!r} {_NEEDS_ROWS}")
        raise AttributeError(f"'ChunkedGLM' object has no attribute {name!r}")

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


__all__ = ["ChunkedGLM", "ChunkedSummary", "RowsNotKeptError"]
