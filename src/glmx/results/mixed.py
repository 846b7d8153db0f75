"""A fitted mixed model (``glmx.glmm``): lme4's quantities under glmx's names.

The numbers come from the core fit (``glmx.mixed.record.MixedFit``); this class turns them
into labelled pandas objects, predicts, refits and prints.  Differences from lme4 that a
user may meet:

- ``loglik`` is the full marginal log-likelihood for every ``nagq`` (lme4's nAGQ > 1
  value drops the saturated model's constant), and ``deviance`` is -2 ``loglik``; lme4's
  ``deviance()`` of a GLMM is another quantity (a conditional deviance).
- LMM fixed effects get t statistics without p-values, as lme4 (compare models with
  ``glmx.anova`` instead); GLMM fixed effects get Wald z tests, as lme4.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from glmx.errors import DataError
from glmx.families.base import Family
from glmx.inference.wald import coef_table as _coef_table
from glmx.inference.wald import wald_confint

Array = NDArray[np.float64]


class MixedResults:
    """What ``glmx.glmm`` returns; see ``docs/mixed-models.md``."""

    def __init__(self, core: Any, *, call: str, data: Any, options: dict[str, Any]) -> None:
        self._core = core
        self._call = call
        self._data = data  # kept for refits (anova of REML fits), as lme4 keeps its frame
        self._options = options

    # --- fixed effects -------------------------------------------------------------------
    @cached_property
    def coef(self) -> pd.Series:
        return self._core.coef.rename("estimate")  # type: ignore[no-any-return]

    @property
    def _names(self) -> list[str]:
        return list(self._core.coef.index)

    @cached_property
    def vcov(self) -> pd.DataFrame:
        return self._core.vcov.copy()  # type: ignore[no-any-return]

    @cached_property
    def se(self) -> pd.Series:
        return pd.Series(
            np.sqrt(np.diag(self.vcov.to_numpy())), index=self._names, name="std_error"
        )

    @cached_property
    def coef_table(self) -> pd.DataFrame:
        """Estimate, standard error, statistic (t for LMMs, z for GLMMs) and p-value (Wald z
        for GLMMs; NaN for LMMs, as lme4, whose t has no agreed degrees of freedom)."""
        tab = _coef_table(self.coef, self.se, None)
        if self.is_lmm:
            tab["p_value"] = np.nan
        return tab

    def confint(self, level: float = 0.95) -> pd.DataFrame:
        """Wald intervals for the fixed effects (lme4's ``confint(method = "Wald")``)."""
        return wald_confint(self.coef, self.se, level)

    # --- variance components -------------------------------------------------------------
    @property
    def theta(self) -> Array:
        """The relative covariance factor parameters in lme4's ``getME(fit, "theta")`` order."""
        return np.array(self._core.theta, dtype=float)

    @property
    def theta_names(self) -> list[str]:
        return list(self._core.theta_names)

    @cached_property
    def varcorr(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(VarCorr(fit))``: grp, var1, var2, vcov, sdcor."""
        return self._core.varcorr.copy()  # type: ignore[no-any-return]

    @property
    def sigma(self) -> float:
        """Residual standard deviation (1 for binomial and poisson)."""
        return float(self._core.sigma)

    @cached_property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes: grouping factor -> DataFrame (rows: levels, columns: terms)."""
        return {g: frame.copy() for g, frame in self._core.ranef.items()}

    @cached_property
    def ranef_condvar(self) -> dict[str, Array]:
        """Conditional variances: grouping factor -> array (levels x terms x terms)."""
        return {g: np.array(v, dtype=float) for g, v in self._core.ranef_condvar.items()}

    @property
    def n_groups(self) -> dict[str, int]:
        return dict(self._core.n_groups)

    @property
    def singular(self) -> bool:
        """lme4's ``isSingular``: a diagonal element of a relative covariance factor below
        1e-4 (a variance at 0, or a correlation at +-1)."""
        return bool(self._core.singular)

    @cached_property
    def singular_parameters(self) -> tuple[str, ...]:
        """What sits on the boundary, by lme4's names of the variance components:
        ``"sd_x|g = 0"``, ``"cor_x.(Intercept)|g = +1"``; empty for an interior fit."""
        from glmx.mixed.checks import boundary_parameters

        if not self.singular:
            return ()
        return tuple(boundary_parameters(self.theta, self._core.reterms))

    @property
    def structure(self) -> str:
        """The blocks of the model's Cholesky factor: for each, its type (diagonal,
        block-diagonal, sparse, dense), size, stored entries and fill-in, and the work of
        one evaluation; a large dense block is where a crossed model's time goes."""
        return str(self._core.structure)

    @property
    def optimizer_info(self) -> Any:
        """What the optimizer did (lme4's ``optinfo``): ``method``, ``n_feval``,
        ``n_check`` (evaluations by the optimum's certificate), ``certified``,
        ``message``, ``attempts`` (each start tried: its label, objective, evaluations
        and the parameters at their bound where it ended) and ``boundary``; None where
        the fit has no such record."""
        return getattr(self._core, "optimizer", None)

    # --- fit statistics ------------------------------------------------------------------
    @property
    def family(self) -> Family:
        return self._core.family  # type: ignore[no-any-return]

    @property
    def link_name(self) -> str:
        return self.family.link.name  # type: ignore[no-any-return]

    @property
    def is_lmm(self) -> bool:
        return self.family.name == "gaussian" and self.family.link.name == "identity"

    @property
    def reml(self) -> bool:
        return bool(self._core.reml)

    @property
    def nagq(self) -> int:
        return int(self._core.nagq)

    @property
    def nobs(self) -> int:
        return int(self._core.nobs)

    @property
    def n_params(self) -> int:
        """Parameters counted in AIC/BIC: fixed effects, theta and sigma (LMMs), as lme4."""
        return int(self._core.df)

    @property
    def df_resid(self) -> int:
        return self.nobs - self.n_params

    @property
    def loglik(self) -> float:
        """The marginal log-likelihood (at the REML estimates for a REML fit, as lme4)."""
        return float(self._core.loglik)

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + np.log(self.nobs) * self.n_params

    @property
    def deviance(self) -> float | None:
        """-2 loglik; None for a REML fit (use ``reml_criterion``)."""
        return None if self.reml else -2.0 * self.loglik

    @property
    def reml_criterion(self) -> float | None:
        return float(self._core.reml_criterion) if self.reml else None

    @property
    def converged(self) -> bool:
        return bool(self._core.converged)

    @property
    def n_iter(self) -> int:
        """Optimizer iterations."""
        return int(self._core.n_iter)

    @property
    def n_feval(self) -> int:
        """Deviance evaluations (lme4's ``optinfo$feval``)."""
        return int(self._core.n_feval)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(self._core.warnings)

    @property
    def call(self) -> str:
        return self._call

    @property
    def formula(self) -> str:
        return str(self._options["formula"])

    # --- fitted values, residuals, prediction --------------------------------------------
    @property
    def fitted(self) -> Array:
        """Fitted means with the conditional modes (lme4's ``fitted``)."""
        return np.array(self._core.fitted, dtype=float)

    @property
    def linear_predictor(self) -> Array:
        return np.array(self._core.linear_predictor, dtype=float)

    @property
    def y(self) -> Array:
        return np.array(self._core.y, dtype=float)

    def residuals(
        self,
        type: Literal["response", "pearson", "deviance"] = "response",  # noqa: A002
    ) -> Array:
        """Response, Pearson or deviance residuals given the conditional modes."""
        mu, y = self.fitted, self.y
        w = np.asarray(self._core.prior_weights, dtype=float)
        if type == "response":
            return y - mu
        if type == "pearson":
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # inf, as R
                return (y - mu) * np.sqrt(w / self.family.variance(mu))
        if type == "deviance":
            d = w * self.family.unit_deviance(y, mu)
            return np.sign(y - mu) * np.sqrt(np.maximum(d, 0.0))
        raise DataError(f"type must be 'response', 'pearson' or 'deviance', not {type!r}")

    def predict(
        self,
        newdata: Any = None,
        type: Literal["response", "link"] = "response",  # noqa: A002
        re: bool = True,
        offset: Any = None,
    ) -> Array:
        """Predictions with (``re=True``) or without the random effects; levels not seen in
        the fit contribute zero (lme4's ``allow.new.levels = TRUE``).  ``offset`` is for a
        fit whose ``offset=`` was an array (a column or ``offset()`` term is read from
        ``newdata``)."""
        from glmx.mixed.predict import predict_eta

        if type not in ("response", "link"):
            raise DataError(f"type must be 'response' or 'link', not {type!r}")
        if newdata is None:
            eta = (
                self.linear_predictor
                if re
                else np.array(self._core.linear_predictor_fixed, dtype=float)
            )
        else:
            eta = predict_eta(self._core, newdata, re=re, offset=offset)
        return eta if type == "link" else self.family.link.inverse(eta)

    # --- refits and printing -------------------------------------------------------------
    def refit(self, **changes: Any) -> MixedResults:
        """The same model fitted again with some options changed (e.g. ``reml=False``)."""
        from glmx.mixed.api import glmm

        opts = {**self._options, **changes}
        return glmm(data=self._data, **opts)

    def summary(self) -> Any:
        """An object whose ``str()`` reads like lme4's ``summary.merMod``."""
        from glmx.results.mixed_summary import MixedSummary

        return MixedSummary(self)

    def __repr__(self) -> str:
        kind = "linear mixed model" if self.is_lmm else "generalized linear mixed model"
        crit = (
            f"REML criterion {self.reml_criterion:.4f}"
            if self.reml
            else f"logLik {self.loglik:.4f}"
        )
        groups = ", ".join(f"{g}: {k}" for g, k in self.n_groups.items())
        return f"<glmx {kind}: {self.formula}; {self.nobs} obs, groups {groups}; {crit}>"
