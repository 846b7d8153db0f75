"""Diagnostics, model comparison and presentation methods of GLMResults.

Each method delegates to the module that holds the mathematics (``glmx.diagnostics``,
``glmx.inference``, ``glmx.results.tidy``), keeping the results class itself small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

if TYPE_CHECKING:
    from glmx.results.glm import GLMResults

Array = NDArray[np.float64]


class DiagnosticsMixin:
    """Methods shared by GLM results: influence, collinearity, tests, tidy output, plots."""

    # --- influence (glmx.diagnostics.influence) ---------------------------------------
    def influence(self: GLMResults) -> pd.DataFrame:
        """R's ``influence.measures``: hat, cooks, rstandard, rstudent, dffits, cov_ratio,
        dfbeta_* and dfbetas_* per coefficient, and ``influential`` (R's flag)."""
        from glmx.diagnostics.influence import influence_measures

        return influence_measures(self)

    def hat(self: GLMResults) -> Array:
        """Leverages, R's ``hatvalues``."""
        from glmx.diagnostics.influence import hat_values

        return hat_values(self)

    def cooks_distance(self: GLMResults) -> Array:
        """R's ``cooks.distance``."""
        from glmx.diagnostics.influence import cooks_distance

        return cooks_distance(self)

    def rstandard(self: GLMResults, type: str = "deviance") -> Array:  # noqa: A002
        """Standardized residuals, R's ``rstandard.glm`` (type deviance or pearson)."""
        from glmx.diagnostics.influence import rstandard

        return rstandard(self, type)

    def rstudent(self: GLMResults) -> Array:
        """Studentized (leave-one-out) residuals, R's ``rstudent.glm``."""
        from glmx.diagnostics.influence import rstudent

        return rstudent(self)

    # --- collinearity (glmx.diagnostics.collinearity) ---------------------------------
    def vif(self: GLMResults) -> pd.Series:
        """Variance inflation factors by term; generalized VIF (Fox & Monette) for terms
        of several columns, as ``car::vif``."""
        from glmx.diagnostics.collinearity import vif

        return vif(self)

    def vif_table(self: GLMResults) -> pd.DataFrame:
        """GVIF, Df and GVIF^(1/(2 Df)) by term, as ``car::vif`` prints them."""
        from glmx.diagnostics.collinearity import vif_table

        return vif_table(self)

    def condition_number(self: GLMResults) -> float:
        """Condition number of the column-scaled design (Belsley)."""
        from glmx.diagnostics.collinearity import condition_number

        return condition_number(self)

    # --- model comparison and tests (glmx.inference.anova, glmx.inference.tests) ------
    def anova(self: GLMResults, test: str | None = None) -> pd.DataFrame:
        """Sequential analysis of deviance, R's ``anova.glm`` (test: 'Chisq', 'F', 'Rao'
        or 'none'; the default is Chisq for fixed-dispersion families, F otherwise)."""
        from glmx.inference.anova import anova_sequential

        return anova_sequential(self, test)

    def drop1(self: GLMResults, test: str | None = None) -> pd.DataFrame:
        """R's ``drop1``: each term dropped in turn, with AIC and a test."""
        from glmx.inference.anova import drop1

        return drop1(self, test)

    def goodness_of_fit(self: GLMResults) -> pd.DataFrame:
        """Deviance and Pearson chi-squared goodness-of-fit tests, where valid."""
        from glmx.inference.tests import goodness_of_fit

        return goodness_of_fit(self)

    def dispersion_test(self: GLMResults) -> Any:
        """Overdispersion test for poisson and binomial fits (Pearson ratio)."""
        from glmx.inference.tests import dispersion_test

        return dispersion_test(self)

    def link_test(self: GLMResults) -> Any:
        """Pregibon's link test: refit with the squared linear predictor added."""
        from glmx.inference.tests import link_test

        return link_test(self)

    # --- tidy output (glmx.results.tidy) ----------------------------------------------
    def tidy(
        self: GLMResults,
        exponentiate: bool = False,
        conf_int: bool = True,
        conf_level: float = 0.95,
        conf_method: str = "profile",
    ) -> pd.DataFrame:
        """One row per coefficient (term, estimate, std_error, statistic, p_value,
        conf_low, conf_high), as broom's ``tidy``; ``exponentiate`` gives odds or rate
        ratios and their intervals."""
        from glmx.results.tidy import tidy

        return tidy(self, exponentiate, conf_int, conf_level, conf_method)

    def glance(self: GLMResults) -> pd.DataFrame:
        """One row of fit statistics, as broom's ``glance``."""
        from glmx.results.tidy import glance

        return glance(self)

    # --- plots (glmx.diagnostics.plots) -----------------------------------------------
    def plot(self: GLMResults, path: str | None = None, **kwargs: Any) -> Any:
        """The four diagnostic panels (residuals vs fitted, normal QQ of quantile
        residuals, scale-location, residuals vs leverage); saved to ``path`` if given.
        Returns the matplotlib Figure."""
        from glmx.diagnostics.plots import diagnostic_plots

        return diagnostic_plots(self, path=path, **kwargs)
