"""A GLM read from a model file (``glmx.load``): estimates, covariance, fit statistics
and the design state, without the data.

It predicts with the same code as :class:`~glmx.results.glm.GLMResults` (bit for bit
the original's predictions) and prints the same summary.  What needs the rows of the
original data (residuals, influence, profile intervals, anova) is not available; the
error says so and suggests refitting.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from glmx.design.formula import TermState, new_design
from glmx.design.frames import to_pandas
from glmx.design.newdata import missing_columns_error
from glmx.errors import DataError, GlmxError
from glmx.families.base import Family
from glmx.inference.wald import wald_confint
from glmx.results.estimates import EstimatesMixin
from glmx.results.glm import GLMResults
from glmx.results.summary import GLMSummary

if TYPE_CHECKING:
    from pathlib import Path

Array = NDArray[np.float64]


@dataclass(frozen=True)
class SavedFit:
    """The content of a model file, decoded.  ``coef`` is NaN where ``aliased``;
    ``vcov`` covers the non-aliased columns; ``residual_values`` are what the summary's
    "Deviance Residuals" block shows (five quantiles, or every residual when
    df_resid <= 5); ``variables`` are the data columns the design reads."""

    family: Family
    columns: list[str]
    coef: Array
    aliased: NDArray[np.bool_]
    vcov: Array
    terms: TermState | None
    variables: frozenset[str]
    formula: str | None
    call: str
    method: str
    cov_type: str | None
    theta_se: float | None
    dispersion: float
    deviance: float
    null_deviance: float
    pearson_chi2: float
    loglik: float
    aic: float
    bic: float
    tol: float
    df_resid: float
    df_null: float
    nobs: float
    n_dropped: int
    rank: int
    n_iter: int
    max_iter: int
    converged: bool
    has_intercept: bool
    residual_values: Array
    notes: tuple[str, ...]
    warnings: tuple[str, ...]
    glmx_version: str


class LoadedGLM(EstimatesMixin):
    """A fitted GLM read from a file: coefficients, covariance and fit statistics as
    saved, ``predict`` on new data and ``summary``, but no per-row data."""

    _fit: SavedFit
    _document: dict[str, Any]

    def __init__(self, fit: SavedFit, document: dict[str, Any]) -> None:
        object.__setattr__(self, "_fit", fit)
        object.__setattr__(self, "_document", document)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a loaded model is immutable: cannot set {name!r}")

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_") and hasattr(GLMResults, name):
            raise AttributeError(
                f"{name!r} needs the rows of the data the model was fitted to, which a "
                "model file does not hold; refit with glmx.glm on the data to get it"
            )
        raise AttributeError(f"'LoadedGLM' object has no attribute {name!r}")

    # --- estimates --------------------------------------------------------------------
    @property
    def formula(self) -> str | None:
        return self._fit.formula

    @property
    def glmx_version(self) -> str:
        """The glmx version that wrote the file."""
        return self._fit.glmx_version

    @cached_property
    def coef(self) -> pd.Series:
        return pd.Series(self._fit.coef, index=self._fit.columns, name="estimate")

    @property
    def aliased(self) -> pd.Series:
        return pd.Series(self._fit.aliased, index=self._fit.columns, name="aliased")

    @property
    def rank(self) -> int:
        return self._fit.rank

    @cached_property
    def vcov(self) -> pd.DataFrame:
        kept = [n for n, a in zip(self._fit.columns, self._fit.aliased) if not a]
        return pd.DataFrame(self._fit.vcov, index=kept, columns=kept)

    def confint(
        self, level: float = 0.95, method: Literal["profile", "wald"] = "profile"
    ) -> pd.DataFrame:
        """Wald intervals (R's ``confint.default``); profile intervals need the data."""
        if method == "wald":
            return wald_confint(self.coef, self.se, level)
        raise GlmxError(
            "profile-likelihood intervals refit the model on its data, which a model file "
            "does not hold: use confint(method='wald') or refit with glmx.glm"
        )

    # --- fit statistics ---------------------------------------------------------------
    dispersion = property(lambda self: self._fit.dispersion)
    deviance = property(lambda self: self._fit.deviance)
    null_deviance = property(lambda self: self._fit.null_deviance)
    pearson_chi2 = property(lambda self: self._fit.pearson_chi2)
    loglik = property(lambda self: self._fit.loglik)
    aic = property(lambda self: self._fit.aic)
    bic = property(lambda self: self._fit.bic)
    df_resid = property(lambda self: self._fit.df_resid)
    df_null = property(lambda self: self._fit.df_null)
    nobs = property(lambda self: self._fit.nobs)
    n_dropped = property(lambda self: self._fit.n_dropped)
    n_iter = property(lambda self: self._fit.n_iter)
    converged = property(lambda self: self._fit.converged)
    warnings = property(lambda self: self._fit.warnings)

    # --- prediction -------------------------------------------------------------------
    def predict(
        self,
        newdata: Any,
        type: Literal["response", "link"] = "response",  # noqa: A002
        se: bool = False,
        interval: Literal["confidence", "prediction"] | None = None,
        level: float = 0.95,
        offset: Any = None,
        n_sim: int = 2000,
        seed: int | None = None,
        weights: Any = None,
    ) -> Array | pd.DataFrame:
        """Predictions for ``newdata`` exactly as the original model's ``predict`` (same
        arguments; see :meth:`glmx.GLMResults.predict`).  ``newdata`` is a data frame
        with the columns the formula reads, or a matrix for a ``glm_fit`` model."""
        return GLMResults.predict(
            cast(GLMResults, self), newdata, type, se, interval, level, offset, n_sim, seed,
            weights,
        )  # fmt: skip

    def _design_for(self, newdata: Any, offset: Any) -> tuple[Any, Array]:
        """Design and offset of new rows: the saved design state, after checking that
        every name the saved formula reads is a column of ``newdata`` (so that no name
        can resolve to anything but data)."""
        f = self._fit
        if newdata is None:
            raise DataError("a loaded model holds no data: give predict() the newdata")
        if f.terms is None:
            X = np.asarray(newdata, dtype=float)
            if X.ndim != 2 or X.shape[1] != len(f.columns):
                raise DataError(
                    f"newdata must be a matrix with {len(f.columns)} columns, got shape {X.shape}"
                )
            off = np.zeros(X.shape[0]) if offset is None else np.asarray(offset, dtype=float)
            if off.shape[0] != X.shape[0]:
                raise DataError(
                    f"offset has length {off.shape[0]} but newdata has {X.shape[0]} rows"
                )
            return X, off
        df = to_pandas(newdata)
        missing = f.variables - {str(c) for c in df.columns}
        if missing:
            raise missing_columns_error(missing, f.formula)
        return new_design(f.terms, df, offset)

    # --- presentation -----------------------------------------------------------------
    def summary(self) -> LoadedSummary:
        return LoadedSummary(self)

    def save(self, path: str | Path) -> None:
        """Write the model file again (the same content as the file it was read from)."""
        from glmx.io.modelfile import save

        save(self, path)

    def __repr__(self) -> str:
        fam = self.family
        return (
            f"<LoadedGLM {fam.name}({fam.link.name}) n={self.nobs} rank={self.rank} "
            f"deviance={self.deviance:.6g} aic={self.aic:.6g}>"
        )


class _SummaryView:
    """The loaded model as :class:`GLMSummary` reads a fit: the saved deviance residuals
    stand in for the residuals, and the family is a stand-in with the printed name, so
    that the summary's data-based notes come from the file (see LoadedSummary)."""

    def __init__(self, model: LoadedGLM) -> None:
        self._model = model
        self._fit = model._fit
        fam = model.family
        self.family = SimpleNamespace(
            name=fam.name,
            link=fam.link,
            fixed_dispersion=fam.fixed_dispersion,
            is_quasi=fam.is_quasi,
            theta=getattr(fam, "theta", None),
        )

    def residuals(self, type: str = "deviance") -> Array:  # noqa: A002
        return self._fit.residual_values

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


class LoadedSummary(GLMSummary):
    """The summary of a loaded model: the same text as the original's."""

    def __init__(self, model: LoadedGLM) -> None:
        super().__init__(cast(GLMResults, _SummaryView(model)))
        self.model = model

    def __str__(self) -> str:
        lines = super().__str__().split("\n")
        notes = list(self.model._fit.notes)
        if notes:  # the saved notes go where GLMSummary puts dispersion_note's lines
            at = next(i for i, s in enumerate(lines) if s.startswith("(Dispersion parameter"))
            lines[at + 1 : at + 1] = notes
        return "\n".join(lines)


__all__ = ["LoadedGLM", "SavedFit", "LoadedSummary"]
