"""What a fitted GLM and a model loaded from a file share: the family, the estimates'
standard errors and tests, theta.  A class using this mixin provides ``_fit`` (with
``family``, ``cov_type`` and ``theta_se``), ``coef``, ``vcov``, ``rank`` and ``df_resid``."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from glmx.families.base import Family
from glmx.inference.wald import coef_table as _coef_table


class EstimatesMixin:
    _fit: Any
    coef: pd.Series
    vcov: pd.DataFrame

    @property
    def rank(self) -> int:  # provided by the class
        raise NotImplementedError

    @property
    def df_resid(self) -> float:  # provided by the class
        raise NotImplementedError

    @property
    def family(self) -> Family:
        return self._fit.family  # type: ignore[no-any-return]

    @property
    def link(self) -> str:
        return self._fit.family.link.name  # type: ignore[no-any-return]

    @property
    def cov_type(self) -> str:
        """'model' or the sandwich estimator behind ``vcov``, ``se`` and the tests."""
        return self._fit.cov_type or "model"  # type: ignore[no-any-return]

    @cached_property
    def se(self) -> pd.Series:
        se = pd.Series(np.nan, index=self.coef.index, name="std_error")
        se[self.vcov.index] = np.sqrt(np.diag(self.vcov.to_numpy()))
        return se

    @cached_property
    def coef_table(self) -> pd.DataFrame:
        """z tests for fixed-dispersion families and robust covariances, t tests
        otherwise (R's summary.glm; lmtest::coeftest)."""
        # z for fixed dispersion, t on df_resid otherwise (summary.glm); with a sandwich
        # covariance z for every family, as lmtest::coeftest on a glm (df = Inf)
        robust = self._fit.cov_type is not None
        df = None if (self.family.fixed_dispersion or robust) else self.df_resid
        return _coef_table(self.coef, self.se, df)

    @property
    def n_params(self) -> int:
        """Parameters counted in AIC/BIC: the rank plus the family's scale parameters."""
        return self.rank + self.family.n_scale_params

    @property
    def theta(self) -> float:
        """Negative binomial theta (estimated or fixed)."""
        th = getattr(self.family, "theta", None)
        if th is None:
            raise AttributeError("theta exists for negative binomial fits only")
        return float(th)

    @property
    def theta_se(self) -> float:
        if self._fit.theta_se is None:
            raise AttributeError("theta_se exists for negative binomial fits with estimated theta")
        return float(self._fit.theta_se)
