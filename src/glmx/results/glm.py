"""GLMResults: the immutable fitted GLM.

Built once from the solver's estimates; every statistic is derived here (inference lives
on the results, not on a model or estimator).  Array attributes are read-only views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray

from glmx.design.formula import TermState, new_design
from glmx.design.matrix import DenseDesign, DesignMatrix, SparseDesign
from glmx.diagnostics.residuals import residuals as _residuals
from glmx.errors import DataError
from glmx.families.base import Family
from glmx.inference.wald import wald_confint
from glmx.results.estimates import EstimatesMixin
from glmx.results.methods import DiagnosticsMixin
from glmx.solvers.state import FitLog

Array = NDArray[np.float64]


def _readonly(a: Array) -> Array:
    v = np.asarray(a).view()
    v.flags.writeable = False
    return v


@dataclass(frozen=True)
class GLMFit:
    """The raw material of a fitted GLM, as the fitting code hands it to the results."""

    family: Family
    X: DesignMatrix
    y: Array
    weights: Array
    freq_weights: Array
    offset: Array
    coef: Array
    aliased: NDArray[np.bool_]
    cov_unscaled: Array
    working_weights: Array
    eta: Array
    mu: Array
    deviance: float
    null_deviance: float
    has_intercept: bool
    n_iter: int
    converged: bool
    log: FitLog
    n_dropped: int = 0
    terms: TermState | None = None
    call: str = ""
    theta_se: float | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    tol: float = 1e-10
    max_iter: int = 100
    method: str = "irls"  # or "firth"
    cov_type: str | None = None  # None: model-based; "HC0".."HC3"; "cluster"
    cluster: NDArray[Any] | None = None  # cluster labels per row, for cov_type="cluster"
    row_labels: NDArray[Any] | None = None  # the data's row labels of the rows used


class GLMResults(EstimatesMixin, DiagnosticsMixin):
    """A fitted generalized linear model.  See the GLM table of the API contract."""

    _fit: GLMFit
    _names: list[str]
    _cache: dict[object, pd.DataFrame]

    def __init__(self, fit: GLMFit) -> None:
        object.__setattr__(self, "_fit", fit)
        object.__setattr__(self, "_names", list(fit.X.column_names))
        object.__setattr__(self, "_cache", {})

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"GLMResults is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"GLMResults is immutable: cannot delete {name!r}")

    # --- estimates --------------------------------------------------------------------
    @cached_property
    def coef(self) -> pd.Series:
        """Estimates by design column; aliased columns are NaN (R's NA)."""
        return pd.Series(self._fit.coef, index=self._names, name="estimate")

    @property
    def aliased(self) -> pd.Series:
        return pd.Series(self._fit.aliased, index=self._names, name="aliased")

    @property
    def rank(self) -> int:
        return int((~self._fit.aliased).sum())

    @cached_property
    def vcov(self) -> pd.DataFrame:
        """Covariance of the non-aliased estimates: the model-based one, scaled by the
        dispersion (R's vcov), or the sandwich chosen with ``cov_type`` at fit time."""
        if self._fit.cov_type is not None:
            return self.vcov_robust(self._fit.cov_type, self._fit.cluster)
        kept = [n for n, a in zip(self._names, self._fit.aliased) if not a]
        return pd.DataFrame(self.dispersion * self._fit.cov_unscaled, index=kept, columns=kept)

    def vcov_robust(self, cov_type: str = "HC0", cluster: Any = None) -> pd.DataFrame:
        """Sandwich covariance without refitting: ``"HC0"``..``"HC3"`` (R's
        ``sandwich::vcovHC``) or ``"cluster"`` with cluster labels per row used
        (``sandwich::vcovCL``)."""
        from glmx.inference.covariance import robust_vcov

        kept = [n for n, a in zip(self._names, self._fit.aliased) if not a]
        return pd.DataFrame(robust_vcov(self, cov_type, cluster), index=kept, columns=kept)

    def confint(
        self, level: float = 0.95, method: Literal["profile", "wald"] = "profile"
    ) -> pd.DataFrame:
        """Confidence intervals: profile likelihood (``MASS::confint.glm``, the default)
        or Wald on the normal (``method="wald"``, R's ``confint.default``)."""
        if method == "wald":
            return wald_confint(self.coef, self.se, level)
        if method == "profile":
            key = ("profile", level)
            if key not in self._cache:
                from glmx.inference.profile import profile_confint

                self._cache[key] = profile_confint(self, level)
            return self._cache[key].copy()
        raise DataError(f"confint method must be 'profile' or 'wald', got {method!r}")

    # --- fit statistics ---------------------------------------------------------------
    @property
    def _total_weights(self) -> Array:
        return self._fit.weights * self._fit.freq_weights

    @cached_property
    def nobs(self) -> float:
        """Observations with non-zero prior weight, counting frequency weights (R's nobs)."""
        n = float(np.sum(self._fit.freq_weights[self._fit.weights > 0]))
        return int(n) if n.is_integer() else n

    @property
    def n_dropped(self) -> int:
        """Rows dropped for missing values."""
        return self._fit.n_dropped

    @property
    def df_resid(self) -> float:
        return self.nobs - self.rank

    @property
    def df_null(self) -> float:
        return self.nobs - int(self._fit.has_intercept)

    @property
    def deviance(self) -> float:
        return self._fit.deviance

    @property
    def null_deviance(self) -> float:
        return self._fit.null_deviance

    @cached_property
    def pearson_chi2(self) -> float:
        """Sum of squared Pearson residuals, frequency-weighted."""
        r = self.residuals("pearson")
        with np.errstate(over="ignore"):  # residuals beyond 1e154 (extreme offsets): inf
            return float(np.sum(self._fit.freq_weights * r**2))

    @cached_property
    def dispersion(self) -> float:
        """1 for binomial, poisson and negative binomial; else the Pearson estimate as R's
        ``summary.glm``: sum(W r^2) / df with the working weights W of the last IRLS step
        and the working residuals r (equal to pearson_chi2 / df at convergence)."""
        if self.family.fixed_dispersion:
            return 1.0
        if self.df_resid <= 0:
            return float("nan")
        W = self._fit.working_weights
        pos = W > 0
        r = self.residuals("working")[pos]
        with np.errstate(over="ignore"):  # residuals beyond 1e154 (extreme offsets): inf
            return float(np.sum(W[pos] * r**2)) / self.df_resid

    @cached_property
    def loglik(self) -> float:
        f = self._fit
        return f.family.loglik(f.y, f.mu, f.weights, f.freq_weights, f.deviance)

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + np.log(self.nobs) * self.n_params

    @property
    def converged(self) -> bool:
        return self._fit.converged

    @property
    def n_iter(self) -> int:
        return self._fit.n_iter

    @property
    def fit_log(self) -> FitLog:
        return self._fit.log

    @property
    def warnings(self) -> tuple[str, ...]:
        """Messages of the warnings raised during the fit."""
        return self._fit.warnings

    # --- per-observation values -------------------------------------------------------
    @property
    def fitted(self) -> Array:
        return _readonly(self._fit.mu)

    @property
    def linear_predictor(self) -> Array:
        return _readonly(self._fit.eta)

    @property
    def y(self) -> Array:
        return _readonly(self._fit.y)

    @property
    def prior_weights(self) -> Array:
        return _readonly(self._fit.weights)

    @property
    def freq_weights(self) -> Array:
        return _readonly(self._fit.freq_weights)

    def residuals(self, type: str = "deviance", seed: int | None = None) -> Array:  # noqa: A002
        """Residuals of type ``deviance``, ``pearson``, ``working``, ``response``,
        ``anscombe`` or ``quantile`` (randomized quantile residuals, Dunn & Smyth 1996,
        seeded by ``seed``)."""
        if type in ("deviance", "pearson", "working", "response"):
            f = self._fit
            return _residuals(type, f.family, f.y, f.mu, f.eta, f.weights)
        from glmx.diagnostics.residuals import extra_residuals

        return extra_residuals(self, type, seed)

    # --- prediction -------------------------------------------------------------------
    def predict(
        self,
        newdata: Any = None,
        type: Literal["response", "link"] = "response",  # noqa: A002
        se: bool = False,
        interval: Literal["confidence", "prediction"] | None = None,
        level: float = 0.95,
        offset: Any = None,
        n_sim: int = 2000,
        seed: int | None = None,
        weights: Any = None,
    ) -> Array | pd.DataFrame:
        """Predictions on the response or link scale.

        With ``se=True`` (or an interval) a DataFrame ``fit, se`` (and ``lower, upper``):
        standard errors by the delta method, se_response = |d mu/d eta| se_link; confidence
        intervals are computed on the link scale and mapped through the inverse link.
        ``interval="prediction"`` bounds a new observation: quantiles of the family's
        distribution mixed over the estimates' uncertainty by Gauss-Hermite quadrature
        (see :mod:`glmx.inference.prediction`; ``n_sim`` draws and ``seed`` serve tweedie
        fits with 1 <= p < 2 only; ``weights`` are the new rows' binomial trials or
        precision weights, default 1).
        """
        if type not in ("response", "link"):
            raise DataError(f"type must be 'response' or 'link', got {type!r}")
        if interval not in (None, "confidence", "prediction"):
            raise DataError(
                f"interval must be None, 'confidence' or 'prediction', got {interval!r}"
            )
        if interval == "prediction" and type == "link":
            raise DataError(
                "interval='prediction' bounds a new observation, on the response scale: use "
                "type='response' (interval='confidence' for the link scale)"
            )
        X, off = self._design_for(newdata, offset)
        eta = np.asarray(X @ np.where(self._fit.aliased, 0.0, self._fit.coef)).ravel() + off
        link = self.family.link
        fit = link.inverse(eta) if type == "response" else eta
        if not se and interval is None:
            return fit
        kept = ~self._fit.aliased
        Xk = X[:, kept]
        V = self.vcov.to_numpy()
        # se(eta_i)^2 = x_i' V x_i, row by row without forming X V X'
        XV = np.asarray(Xk @ V)
        quad = Xk.multiply(XV).sum(axis=1) if sp.issparse(Xk) else np.einsum("ij,ij->i", XV, Xk)
        se_eta = np.sqrt(np.asarray(quad, dtype=float).ravel())
        se_eta[np.isnan(eta)] = np.nan  # rows with missing values (na.pass)
        out = pd.DataFrame({"fit": fit})
        out["se"] = se_eta * np.abs(link.mu_eta(eta)) if type == "response" else se_eta
        if interval == "prediction":
            # quantiles of the predictive distribution (glmx.inference.prediction)
            from glmx.inference.prediction import prediction_interval

            lo, hi = prediction_interval(self, X, off, level, n_sim, seed, weights=weights)
            out["lower"], out["upper"] = lo, hi
        if interval == "confidence":
            from scipy import stats

            q = stats.norm.ppf(0.5 + level / 2.0)
            lo, hi = eta - q * se_eta, eta + q * se_eta
            if type == "response":
                lo, hi = link.inverse(lo), link.inverse(hi)
                lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
            out["lower"], out["upper"] = lo, hi
        return out

    def _design_for(self, newdata: Any, offset: Any) -> tuple[Any, Array]:
        """The design (numpy or scipy.sparse) and offset of the rows to predict."""
        f = self._fit
        if newdata is None:
            if offset is not None:
                raise DataError("offset= in predict() goes with newdata=")
            if isinstance(f.X, (DenseDesign, SparseDesign)):
                return f.X.X, f.offset  # no copy of the design
            if hasattr(f.X, "to_sparse"):  # e.g. categorical codes: sparse, not one-hot dense
                return f.X.to_sparse(), f.offset
            return f.X.rows(np.arange(f.X.shape[0])), f.offset
        if f.terms is None:
            X = np.asarray(newdata, dtype=float)
            if X.ndim != 2 or X.shape[1] != f.X.shape[1]:
                raise DataError(
                    f"newdata must be a matrix with {f.X.shape[1]} columns, got shape {X.shape}"
                )
            off = np.zeros(X.shape[0]) if offset is None else np.asarray(offset, dtype=float)
            if off.shape[0] != X.shape[0]:
                raise DataError(
                    f"offset has length {off.shape[0]} but newdata has {X.shape[0]} rows"
                )
        else:
            X, off = new_design(f.terms, newdata, offset)
        return X, off

    # --- presentation -----------------------------------------------------------------
    def summary(self) -> Any:
        from glmx.results.summary import GLMSummary

        return GLMSummary(self)

    def __repr__(self) -> str:
        fam = self.family
        return (
            f"<GLMResults {fam.name}({fam.link.name}) n={self.nobs} rank={self.rank} "
            f"deviance={self.deviance:.6g} aic={self.aic:.6g}>"
        )
