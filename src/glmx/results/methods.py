"""Diagnostics, model comparison and presentation methods of GLMResults.

Each method delegates to the module that holds the mathematics (``glmx.diagnostics``,
``glmx.inference``, ``glmx.results.tidy``), keeping the results class itself small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
from numpy.typing import NDArray

if TYPE_CHECKING:
    from glmx.results.glm import GLMResults

Array = NDArray[np.float64]


class DiagnosticsMixin:
    """Methods shared by GLM results: influence, collinearity, tests, tidy output, plots."""

    @property
    def _results(self) -> GLMResults:
        return cast("GLMResults", self)

    # --- influence (glmx.diagnostics.influence) ---------------------------------------
    def influence(self) -> pd.DataFrame:
        """R's ``influence.measures``: hat, cooks, rstandard, rstudent, dffits, cov_ratio,
        dfbeta_* and dfbetas_* per coefficient, and ``influential`` (R's flag)."""
        from glmx.diagnostics.influence import influence_measures

        return influence_measures(self._results)

    def hat(self) -> Array:
        """Leverages, R's ``hatvalues``."""
        from glmx.diagnostics.influence import hat_values

        return hat_values(self._results)

    def cooks_distance(self) -> Array:
        """R's ``cooks.distance``."""
        from glmx.diagnostics.influence import cooks_distance

        return cooks_distance(self._results)

    def rstandard(self, type: str = "deviance") -> Array:  # noqa: A002
        """Standardized residuals, R's ``rstandard.glm`` (type deviance or pearson)."""
        from glmx.diagnostics.influence import rstandard

        return rstandard(self._results, type)

    def rstudent(self) -> Array:
        """Studentized (leave-one-out) residuals, R's ``rstudent.glm``."""
        from glmx.diagnostics.influence import rstudent

        return rstudent(self._results)

    # --- collinearity (glmx.diagnostics.collinearity) ---------------------------------
    def vif(self) -> pd.Series:
        """Variance inflation factors by term; generalized VIF (Fox & Monette) for terms
        of several columns, as ``car::vif``."""
        from glmx.diagnostics.collinearity import vif

        return vif(self._results)

    def vif_table(self) -> pd.DataFrame:
        """GVIF, Df and GVIF^(1/(2 Df)) by term, as ``car::vif`` prints them."""
        from glmx.diagnostics.collinearity import vif_table

        return vif_table(self._results)

    def condition_number(self) -> float:
        """Condition number of the column-scaled design (Belsley)."""
        from glmx.diagnostics.collinearity import condition_number

        return condition_number(self._results)

    # --- model comparison and tests (glmx.inference.anova, glmx.inference.tests) ------
    def anova(self, test: str | None = None) -> pd.DataFrame:
        """Sequential analysis of deviance, R's ``anova.glm`` (test: 'Chisq', 'F', 'Rao'
        or 'none'; the default is Chisq for fixed-dispersion families, F otherwise)."""
        from glmx.inference.anova import anova_sequential

        return anova_sequential(self._results, test)

    def drop1(self, test: str | None = None) -> pd.DataFrame:
        """R's ``drop1``: each term dropped in turn, with AIC and a test."""
        from glmx.inference.anova import drop1

        return drop1(self._results, test)

    def goodness_of_fit(self) -> pd.DataFrame:
        """Deviance and Pearson chi-squared goodness-of-fit tests, where valid."""
        from glmx.inference.tests import goodness_of_fit

        return goodness_of_fit(self._results)

    def dispersion_test(self) -> Any:
        """Overdispersion test for poisson and binomial fits (Pearson ratio)."""
        from glmx.inference.tests import dispersion_test

        return dispersion_test(self._results)

    def link_test(self) -> Any:
        """Pregibon's link test: refit with the squared linear predictor added."""
        from glmx.inference.tests import link_test

        return link_test(self._results)

    # --- tidy output (glmx.results.tidy) ----------------------------------------------
    def tidy(
        self,
        exponentiate: bool = False,
        conf_int: bool = True,
        conf_level: float = 0.95,
        conf_method: str = "profile",
    ) -> pd.DataFrame:
        """One row per coefficient (term, estimate, std_error, statistic, p_value,
        conf_low, conf_high), as broom's ``tidy``; ``exponentiate`` gives odds or rate
        ratios and their intervals."""
        from glmx.results.tidy import tidy

        return tidy(self._results, exponentiate, conf_int, conf_level, conf_method)

    def glance(self) -> pd.DataFrame:
        """One row of fit statistics, as broom's ``glance``."""
        from glmx.results.tidy import glance

        return glance(self._results)

    # --- saved models (glmx.io.modelfile) ---------------------------------------------
    def save(self, path: str) -> None:
        """Write the model to a JSON file (no pickle): formula, family, link, the state
        needed to rebuild the design, coefficients, vcov and fit statistics."""
        from glmx.io.modelfile import save

        save(self._results, path)

    # --- plots (glmx.diagnostics.plots) -----------------------------------------------
    def plot(self, path: str | None = None, **kwargs: Any) -> Any:
        """The four diagnostic panels (residuals vs fitted, normal QQ of quantile
        residuals, scale-location, residuals vs leverage); saved to ``path`` if given.
        Returns the matplotlib Figure."""
        from glmx.diagnostics.plots import diagnostic_plots

        return diagnostic_plots(self._results, path=path, **kwargs)
